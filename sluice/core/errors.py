"""The errors whose message is the whole story.

An :class:`ExplainedError` says what went wrong, where (file, line, field,
branch, run) and what to do; the command line shows its message alone,
without a traceback (the traceback goes to the log, or to the console with
``--debug``). Anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations


class ExplainedError(Exception):
    """A failure whose message explains it: shown without a traceback."""


def explained_error_names() -> set[str]:
    """The class names of every explained error defined so far (Prefect's log lines name the class)."""
    names, pending = set(), [ExplainedError]
    while pending:
        cls = pending.pop()
        names.add(cls.__name__)
        pending += cls.__subclasses__()
    return names
