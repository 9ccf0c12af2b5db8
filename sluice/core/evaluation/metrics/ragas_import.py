"""Importing RAGAS 0.4.3 beside langchain-community 0.4.x (see :func:`import_ragas`)."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
import types
import warnings

_VERTEXAI_MODULE = "langchain_community.chat_models.vertexai"
_SUNSET_WARNING = r".*langchain-community.* is being sunset"


def import_ragas() -> types.ModuleType:
    """``import ragas`` (0.4.3) with langchain-community 0.4.x installed.

    ``ragas.llms.base`` imports ``ChatVertexAI`` from
    ``langchain_community.chat_models.vertexai`` only to list it among the
    LangChain classes that support n-completions (an ``isinstance`` check in
    its legacy LangChain wrapper). langchain-community 0.4 deleted that module
    (Vertex AI lives in langchain-google-vertexai now), so the import fails
    and nothing of ragas loads. Sluicegate uses only the collections metrics
    with an Instructor LLM, which never consult that list, so a stand-in
    module whose ``ChatVertexAI`` no object is an instance of changes nothing
    we use. It is installed only when the real module cannot be found: with a
    langchain-community that still has it, ragas gets the real one.

    The alternative is a pin: langchain-community 0.3.31 still ships the
    module and its declared ranges accept the installed langchain-core 1.x
    and langchain 1.x (untested here). Under such a pin this changes nothing.
    """
    os.environ.setdefault("RAGAS_DO_NOT_TRACK", "true")  # no analytics calls home; a user's setting wins
    if "ragas" not in sys.modules:
        install_vertexai_stand_in()
    with warnings.catch_warnings():
        # langchain-community announces its own sunset on import; not ours to act on.
        warnings.filterwarnings("ignore", message=_SUNSET_WARNING, category=DeprecationWarning)
        import ragas
    return ragas


def install_vertexai_stand_in() -> bool:
    """Register the stand-in for the missing module; False (and no change) when the real one exists."""
    if _VERTEXAI_MODULE in sys.modules:
        return False
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_SUNSET_WARNING, category=DeprecationWarning)
        if importlib.util.find_spec(_VERTEXAI_MODULE) is not None:
            return False
    module = types.ModuleType(_VERTEXAI_MODULE, "Sluicegate stand-in: removed in langchain-community 0.4.")
    module.__spec__ = importlib.machinery.ModuleSpec(_VERTEXAI_MODULE, loader=None)
    module.ChatVertexAI = type("ChatVertexAI", (), {"__doc__": "Stand-in: nothing is an instance of it."})
    module.SLUICEGATE_STAND_IN = True
    sys.modules[_VERTEXAI_MODULE] = module
    return True
