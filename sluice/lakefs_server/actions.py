"""lakeFS actions: YAML files under ``_lakefs_actions/`` in the repository
that call webhooks on repository events.

As in lakeFS: action files are read at the ref the event names (pre-commit:
the branch, uncommitted files included; post-commit: the new commit;
pre-merge: the source commit; post-merge: the merge commit). Actions run in
parallel, the hooks of one action in order, skipping the rest after a failure
unless a hook says ``if: failure()`` or ``if: always()``. A failing pre-* hook
aborts the operation with 412; post-* hooks run in the background and a
failure is only logged and recorded. Differences from lakeFS: action files are
not cached (lakeFS caches them ~5 s), and only ``webhook`` hooks exist.

Hooks are requests the server makes on a repository writer's behalf, so they
are kept from becoming a probe of the server's network: redirects are not
followed, a timeout is at most :data:`MAX_TIMEOUT_S` (a pre-hook holds the
branch lock that long), and a failure is answered as "webhook <id> failed"
with the reason (connection refused, status code, ...) only in the server log.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx
import yaml

from .errors import APIError, PreconditionFailed

log = logging.getLogger("sluice.lakefs.actions")

ACTIONS_PREFIX = "_lakefs_actions/"
EVENT_TYPES = frozenset(
    f"{phase}-{event}"
    for phase in ("pre", "post")
    for event in ("commit", "merge", "create-branch", "delete-branch", "create-tag", "delete-tag")
) | {"prepare-commit"}
_ACTION_NAME = re.compile(r"^\w[\w\-. ]+$")
_HOOK_ID = re.compile(r"^[_a-zA-Z][\-_a-zA-Z0-9]{1,255}$")
_ENV_TEMPLATE = re.compile(r"\{\{\s*ENV\.(\w+)\s*\}\}")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
ENV_PREFIX = "LAKEFSACTION_"  # lakeFS's default actions.env.prefix
DEFAULT_TIMEOUT_S = 60.0
MAX_TIMEOUT_S = 300.0


class ActionFileError(APIError):
    """An action file that cannot be loaded (lakeFS answers 500)."""

    status = 500


@dataclass(frozen=True)
class Hook:
    id: str
    type: str
    properties: Mapping[str, Any]
    condition: str = "success"  # run if all before succeeded | failure | always
    timeout_s: float = DEFAULT_TIMEOUT_S


@dataclass(frozen=True)
class Action:
    name: str
    file: str
    on: Mapping[str, list[str] | None]
    hooks: tuple[Hook, ...]

    def matches(self, event_type: str, branch: str) -> bool:
        if event_type not in self.on:
            return False
        patterns = self.on[event_type]
        return not patterns or any(fnmatchcase(branch, pattern) for pattern in patterns)


def parse_duration(text: str | int | float | None) -> float:
    """Go duration (``30s``, ``1m30s``, ``500ms``) → seconds."""
    if text is None:
        return DEFAULT_TIMEOUT_S
    if isinstance(text, int | float):
        return float(text)
    total, position = 0.0, 0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    if position != len(text) or not text:
        raise ValueError(f"invalid duration {text!r}")
    return total


def hook_timeout(text: str | int | float | None) -> float:
    """A hook's ``timeout`` in seconds: more than 0, at most :data:`MAX_TIMEOUT_S`."""
    seconds = parse_duration(text)
    if not 0 < seconds <= MAX_TIMEOUT_S:
        raise ValueError(f"{text!r} is outside (0s, {MAX_TIMEOUT_S:.0f}s]")
    return seconds


def parse_action(file: str, content: bytes) -> Action:
    """Parse and validate one action file; errors name the file and field."""

    def fail(problem: str) -> ActionFileError:
        return ActionFileError(f"action file {file}: {problem}")

    try:
        data = yaml.safe_load(content)
    except yaml.YAMLError as exc:
        raise fail(f"not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise fail("expected a mapping with name, on and hooks")
    name = data.get("name")
    if not isinstance(name, str) or not _ACTION_NAME.match(name):
        raise fail(f"name: {name!r} is missing or invalid")
    on = data.get("on", data.get(True))  # YAML 1.1 reads a bare `on:` key as True
    if not isinstance(on, dict) or not on:
        raise fail("on: at least one event is required")
    events: dict[str, list[str] | None] = {}
    for event, spec in on.items():
        if event not in EVENT_TYPES:
            raise fail(f"on.{event}: unknown event type")
        branches = (spec or {}).get("branches") if isinstance(spec, dict) or spec is None else None
        if spec is not None and not isinstance(spec, dict):
            raise fail(f"on.{event}: expected a mapping")
        if branches is not None and (not isinstance(branches, list) or not all(isinstance(b, str) for b in branches)):
            raise fail(f"on.{event}.branches: expected a list of glob patterns")
        if branches and event.endswith("-tag"):
            raise fail(f"on.{event}.branches: not allowed on tag events")
        events[event] = branches
    raw_hooks = data.get("hooks")
    if not isinstance(raw_hooks, list) or not raw_hooks:
        raise fail("hooks: at least one hook is required")
    hooks, seen = [], set()
    for index, raw in enumerate(raw_hooks):
        if not isinstance(raw, dict):
            raise fail(f"hooks[{index}]: expected a mapping")
        hook_id = raw.get("id")
        if not isinstance(hook_id, str) or not _HOOK_ID.match(hook_id) or hook_id in seen:
            raise fail(f"hooks[{index}].id: {hook_id!r} is missing, invalid or repeated")
        seen.add(hook_id)
        if raw.get("type") != "webhook":
            raise fail(f"hooks[{index}].type: {raw.get('type')!r} is not supported here (only webhook)")
        properties = raw.get("properties") or {}
        if not isinstance(properties, dict) or not isinstance(properties.get("url"), str):
            raise fail(f"hooks[{index}].properties.url: required")
        try:
            timeout_s = hook_timeout(properties.get("timeout"))
        except ValueError as exc:
            raise fail(f"hooks[{index}].properties.timeout: {exc}") from None
        condition = str(raw.get("if", "success()")).strip().removesuffix("()")
        if condition not in ("success", "failure", "always"):
            raise fail(f"hooks[{index}].if: only success(), failure() and always() are supported")
        hooks.append(Hook(hook_id, "webhook", properties, condition, timeout_s))
    return Action(name=name, file=file, on=events, hooks=tuple(hooks))


def render_template(text: str, environ: Mapping[str, str]) -> str:
    """``{{ ENV.NAME }}`` → the variable; only names with lakeFS's
    ``LAKEFSACTION_`` prefix are readable (others render empty)."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if not name.startswith(ENV_PREFIX):
            return ""
        if name not in environ:
            raise ValueError(f"environment variable {name} is not set")
        return environ[name]

    return _ENV_TEMPLATE.sub(substitute, text)


@dataclass
class HookEvent:
    """One repository event, with the payload fields lakeFS sends."""

    event_type: str
    repository_id: str
    branch_id: str = ""
    source_ref: str = ""
    commit_id: str = ""
    commit_message: str = ""
    committer: str = ""
    commit_metadata: dict[str, str] = field(default_factory=dict)
    merge_source: str = ""
    tag_id: str = ""

    def payload(self, action: Action, hook: Hook, event_time: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "event_type": self.event_type,
            "event_time": event_time,
            "action_name": action.name,
            "hook_id": hook.id,
            "repository_id": self.repository_id,
        }
        optional = {
            "branch_id": self.branch_id, "source_ref": self.source_ref, "tag_id": self.tag_id,
            "commit_id": self.commit_id, "commit_message": self.commit_message, "committer": self.committer,
            "commit_metadata": self.commit_metadata, "merge_source": self.merge_source,
        }
        body.update({k: v for k, v in optional.items() if v})  # lakeFS omits empty fields
        return body


def _new_run_id() -> str:
    # Sorts newest first, like lakeFS's run ids.
    return f"{(1 << 62) - time.time_ns():019d}{secrets.token_hex(2)}"


def _rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class ActionRunner:
    """Runs the actions that match an event and records each run."""

    def __init__(
        self,
        load_actions: Callable[[str, Any], list[Action]],
        record_run: Callable[[str, dict], None],
        environ: Mapping[str, str] | None = None,
    ):
        self._load_actions = load_actions
        self._record_run = record_run
        self._environ = os.environ if environ is None else environ
        self._background: set[asyncio.Task] = set()
        self._client = httpx.AsyncClient(follow_redirects=False)  # a redirect could point anywhere

    async def aclose(self) -> None:
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        await self._client.aclose()

    async def run_pre(self, event: HookEvent, actions_ref: Any) -> None:
        """Run pre-* hooks now; raise 412 (as lakeFS) if any fails."""
        actions = [a for a in self._load_actions(event.repository_id, actions_ref)
                   if a.matches(event.event_type, event.branch_id)]
        if not actions:
            return
        run_id, errors = await self._run(event, actions)
        if errors:
            listing = "".join(f"\t* {e}\n" for e in errors)
            raise PreconditionFailed(
                f"{event.event_type} hook aborted, run id '{run_id}': "
                f"{len(errors)} error{'s' if len(errors) > 1 else ''} occurred:\n{listing}\n"
            )

    def run_post(self, event: HookEvent, actions_ref: Any) -> None:
        """Start post-* hooks in the background; failures are logged only."""
        task = asyncio.get_running_loop().create_task(self._run_post(event, actions_ref))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _run_post(self, event: HookEvent, actions_ref: Any) -> None:
        try:
            actions = [a for a in self._load_actions(event.repository_id, actions_ref)
                       if a.matches(event.event_type, event.branch_id)]
            if actions:
                run_id, errors = await self._run(event, actions)
                for error in errors:
                    log.warning("%s run %s: %s", event.event_type, run_id, error)
        except Exception:  # a post hook can never fail the operation; say why it did not run
            log.exception("%s hooks for %s did not run", event.event_type, event.repository_id)

    async def _run(self, event: HookEvent, actions: list[Action]) -> tuple[str, list[str]]:
        run_id, started = _new_run_id(), time.time()
        results = await asyncio.gather(
            *(self._run_action(event, index, action) for index, action in enumerate(actions))
        )
        hooks = [hook for action_hooks, _ in results for hook in action_hooks]
        errors = [error for _, action_errors in results for error in action_errors]
        self._record_run(event.repository_id, {
            "run_id": run_id, "branch": event.branch_id, "event_type": event.event_type,
            "commit_id": event.commit_id, "start_time": _rfc3339(started), "end_time": _rfc3339(time.time()),
            "status": "failed" if errors else "completed", "hooks": hooks,
        })
        return run_id, errors

    async def _run_action(self, event: HookEvent, index: int, action: Action) -> tuple[list[dict], list[str]]:
        records, errors, failed = [], [], False
        for position, hook in enumerate(action.hooks):
            hook_run_id = f"{index:04d}_{position:04d}"
            should_run = hook.condition == "always" or (hook.condition == "failure") == failed
            record = {"hook_run_id": hook_run_id, "action": action.name, "hook_id": hook.id,
                      "start_time": _rfc3339(time.time())}
            if not should_run:
                records.append({**record, "status": "skipped", "end_time": record["start_time"]})
                continue
            problem = await self._call_webhook(event, action, hook)
            records.append({**record, "status": "failed" if problem else "completed",
                            "end_time": _rfc3339(time.time())})
            if problem:
                failed = True
                # The reason stays in the log: it would tell the caller which internal ports answer.
                # The URL as written in the file: rendered, it could hold a secret from the environment.
                log.warning("%s: action %r hook %r (%s, url %s) failed: %s", event.event_type, action.name, hook.id,
                            action.file, hook.properties["url"], problem)
                errors.append(
                    f"hook run id '{hook_run_id}' failed on action '{action.name}' hook '{hook.id}': "
                    f"action failed: webhook {hook.id} failed"
                )
        return records, errors

    async def _call_webhook(self, event: HookEvent, action: Action, hook: Hook) -> str | None:
        """POST the event; the reason it failed, or None."""
        properties = hook.properties
        try:
            url = render_template(properties["url"], self._environ)
            headers = {str(k): render_template(str(v), self._environ)
                       for k, v in (properties.get("headers") or {}).items()}
            params: list[tuple[str, str]] = []
            for key, value in (properties.get("query_params") or {}).items():
                for item in value if isinstance(value, list) else [value]:
                    params.append((str(key), render_template(str(item), self._environ)))
        except ValueError as exc:
            return str(exc)
        if params:
            parts = urlsplit(url)
            query = "&".join(q for q in (parts.query, urlencode(params)) if q)
            url = urlunsplit(parts._replace(query=query))
        body = event.payload(action, hook, _rfc3339(time.time()))
        try:
            response = await self._client.post(
                url, json=body, headers=headers, timeout=hook.timeout_s
            )
        except httpx.HTTPError as exc:
            return f"webhook request failed: {type(exc).__name__}: {exc}"
        if not 200 <= response.status_code < 300:
            return f"webhook request failed (status code: {response.status_code})"
        return None
