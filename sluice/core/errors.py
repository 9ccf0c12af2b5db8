"""The errors whose message is the whole story.

An :class:`ExplainedError` says what went wrong, where (file, line, field,
branch, run) and what to do; the command line shows its message alone,
without a traceback (the traceback goes to the log, or to the console with
``--debug``), and exits with the error's ``exit_code``. Anything else that
escapes is a bug and keeps its traceback.

The two exit codes of a failed ``sluice`` command (the README's "The
``sluice`` command" lists them with examples) are defined here.
"""

from __future__ import annotations

FAILED = 1  # the command ran and failed: data rejected, training failed, nothing to roll back, a server down
USAGE = 2  # the command cannot run as set up: a bad option, config or contract file, a missing variable


class ExplainedError(Exception):
    """A failure whose message explains it: shown without a traceback."""

    exit_code: int = FAILED


class SetupError(ExplainedError):
    """What the command needs is not set up (an environment variable, a credential, a file it names): fix that
    and run it again."""

    exit_code = USAGE


def explained_error_names() -> set[str]:
    """The class names of every explained error defined so far (Prefect's log lines name the class)."""
    names, pending = set(), [ExplainedError]
    while pending:
        cls = pending.pop()
        names.add(cls.__name__)
        pending += cls.__subclasses__()
    return names
