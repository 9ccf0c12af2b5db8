"""What every API handler works on: the metadata store, the blob store, the
action runner, the access key's user and the per-branch locks.

All metadata work runs on the event loop's thread, so operations never
interleave except where they await (request bodies, hooks); commits and
merges take a per-branch lock across their hooks, as lakeFS locks a branch.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from pathlib import Path

from ..actions import ACTIONS_PREFIX, Action, ActionFileError, ActionRunner, parse_action
from ..blobs import BlobStore
from ..metadata.records import ResolvedRef
from ..metadata.store import MetadataStore
from .auth import Credentials
from .conventions import MAX_PER_PAGE


class ServerState:
    def __init__(self, data_dir: Path, credentials: Credentials):
        data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = data_dir
        self.credentials = credentials
        self.store = MetadataStore(data_dir / "metadata.sqlite3")
        self.blobs = BlobStore(data_dir)
        self.actions = ActionRunner(self._load_actions, self.store.record_action_run)
        self.branch_locks: dict[tuple[str, str], asyncio.Lock] = defaultdict(asyncio.Lock)

    def _load_actions(self, repo: str, ref: ResolvedRef) -> list[Action]:
        """The action files under ``_lakefs_actions/`` at ``ref``."""
        actions, names = [], set()
        objects, _ = self.store.list_objects(repo, ref, ACTIONS_PREFIX, "", "/", MAX_PER_PAGE)
        for entry in objects:
            path = entry if isinstance(entry, str) else entry.path
            if isinstance(entry, str):
                raise ActionFileError(f"action file {path}: is a folder, not an action file")
            action = parse_action(path, self.blobs.path_of(entry.address).read_bytes())
            if action.name in names:
                raise ActionFileError(f"action file {path}: duplicate action name {action.name!r}")
            names.add(action.name)
            actions.append(action)
        return actions

    def namespace(self, repo: str) -> str:
        return self.store.get_repository(repo).storage_namespace.rstrip("/")
