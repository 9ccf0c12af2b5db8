"""The event bridge: lakeFS action webhooks in, Prefect events out.

lakeFS calls ``POST /lakefs`` after a merge or commit (the action file in
``deployments/lakefs-actions/``). The receiver checks the shared secret (header
``X-Sluice-Token``, from ``SLUICE_BRIDGE_TOKEN``), turns the hook's body into
a Prefect event and posts it to the Prefect server's events API, answering
2xx only once Prefect has accepted it.

What it takes in is bounded: the secret is checked (in constant time) before
a byte of the body is read, so an unauthenticated caller costs nothing; a
body over 1 MB is refused with 413 while it streams in, JSON that is malformed
or nested too deep with 400 (:mod:`sluice.shell.webhook_body`), and a hook
from a repository the bridge is not configured for with 403, recorded nowhere.

Delivery is at least once, without duplicates:

- every event's id is derived from (repository, branch, event, commit id), and
  a durable ledger (sqlite) records which were emitted, so a second delivery
  of one commit — a retried hook, the reconciler finding it too — emits
  nothing (and Prefect itself ignores an event id it has seen);
- the reconciler lists new commits on the watched branches and emits what the
  receiver missed (bridge down, hook failed). Its first pass over a
  repository only records where each branch stands: history is not replayed.
  A branch's mark moves only once its events are emitted, so neither a pass
  during a Prefect outage nor an emit that crashed after its claim (the claim
  expires after 2 minutes) loses a commit.

Event names: ``lakefs.merge.completed``, ``lakefs.commit.completed`` (and
``lakefs.<operation>.completed`` for the other post-* hooks). The resource is
``lakefs.repo.<repo>.branch.<branch>`` with labels ``lakefs.repository`` and
``lakefs.branch``; the payload carries the commit id, committer, message and
metadata.
"""

from __future__ import annotations

import fnmatch
import hmac
import logging
import os
import threading
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from sluice.core.config import BridgeConfig
from sluice.core.project import DEPLOYMENTS
from sluice.shell.bridge_ledger import EmittedLedger
from sluice.shell.webhook_body import BodyRejected, check_declared_length, parse_json, read_capped

TOKEN_VARIABLE = "SLUICE_BRIDGE_TOKEN"
TOKEN_HEADER = "X-Sluice-Token"
WEBHOOK_PATH = "/lakefs"
UNAUTHORIZED_MESSAGE = f"missing or wrong {TOKEN_HEADER} header"
# A fixed namespace: the same commit always gives the same event id, in any process.
_EVENT_NAMESPACE = uuid.UUID("5b2f3a9e-0c1d-4e57-9f0a-6c5e1d2b7a10")

log = logging.getLogger("sluice.bridge")


class WebhookError(ValueError):
    """A webhook body that cannot become an event; the message names the field."""


class BridgeEvent(BaseModel):
    """One Prefect event, as the bridge emits it."""

    id: uuid.UUID
    event: str
    occurred: datetime
    repository: str
    branch: str
    commit_id: str
    payload: dict[str, Any] = Field(default_factory=dict)

    @property
    def resource_id(self) -> str:
        return f"lakefs.repo.{self.repository}.branch.{self.branch}"

    def to_prefect(self) -> dict[str, Any]:
        """The JSON body Prefect's events API takes for this event."""
        return {
            "id": str(self.id),
            "occurred": self.occurred.isoformat(),
            "event": self.event,
            "resource": {"prefect.resource.id": self.resource_id,
                         "prefect.resource.name": f"{self.repository}@{self.branch}",
                         "lakefs.repository": self.repository, "lakefs.branch": self.branch},
            "related": [],
            "payload": self.payload,
        }


# ------------------------------------------------------------------ translation (plain functions)


def event_name(event_type: str) -> str | None:
    """``post-merge`` → ``lakefs.merge.completed``; None for pre-* hooks (they would gate, not inform)."""
    if not event_type.startswith("post-"):
        return None
    return f"lakefs.{event_type.removeprefix('post-')}.completed"


def event_id(repository: str, branch: str, name: str, commit_id: str) -> uuid.UUID:
    return uuid.uuid5(_EVENT_NAMESPACE, f"{repository}\x00{branch}\x00{name}\x00{commit_id}")


def branch_is_watched(branch: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(branch, pattern) for pattern in patterns)


def _required(body: Mapping[str, Any], field: str) -> str:
    value = body.get(field)
    if not isinstance(value, str) or not value:
        raise WebhookError(f"webhook body: field {field!r} is missing or not a non-empty string")
    return value


def event_from_webhook(body: Any) -> BridgeEvent | None:
    """The event for a lakeFS action webhook body; None for a hook type the bridge does not forward."""
    if not isinstance(body, Mapping):
        raise WebhookError(f"webhook body: expected a JSON object, got {type(body).__name__}")
    name = event_name(_required(body, "event_type"))
    if name is None:
        return None
    repository, branch, commit_id = (_required(body, f) for f in ("repository_id", "branch_id", "commit_id"))
    metadata = body.get("commit_metadata") or {}
    if not isinstance(metadata, Mapping):
        raise WebhookError("webhook body: field 'commit_metadata' must be an object")
    return _event(repository, branch, commit_id, body["event_type"], _parse_time(body.get("event_time")),
                  committer=body.get("committer", ""), commit_message=body.get("commit_message", ""),
                  metadata=dict(metadata), source_ref=body.get("source_ref", ""),
                  action_name=body.get("action_name", ""), hook_id=body.get("hook_id", ""), via="webhook")


def event_from_commit(repository: str, branch: str, commit: Any) -> BridgeEvent:
    """The event a commit found in a branch's log stands for: a merge when it has two parents."""
    return _event(repository, branch, commit.id, "post-merge" if len(commit.parents) > 1 else "post-commit",
                  datetime.fromtimestamp(commit.creation_date, UTC), committer=commit.committer,
                  commit_message=commit.message, metadata=dict(commit.metadata or {}), source_ref=commit.id,
                  action_name="", hook_id="", via="reconcile")


def _event(repository: str, branch: str, commit_id: str, event_type: str, occurred: datetime,
           **details: Any) -> BridgeEvent:
    name = event_name(event_type)
    assert name is not None, event_type
    payload = {"commit_id": commit_id, "repository": repository, "branch": branch, **details,
               "lakefs_event_type": event_type}
    return BridgeEvent(id=event_id(repository, branch, name, commit_id), event=name, occurred=occurred,
                       repository=repository, branch=branch, commit_id=commit_id, payload=payload)


def _parse_time(value: Any) -> datetime:
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise WebhookError(f"webhook body: field 'event_time' is not an RFC 3339 time: {value!r}") from None
    return datetime.now(UTC)


def token_matches(expected: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


# ------------------------------------------------------------------ Prefect


class PrefectUnavailable(RuntimeError):
    pass


class PrefectEventSink:
    """Posts events to a Prefect server's events API (``POST /api/events``), which answers only
    once it has taken them: the bridge acknowledges a webhook after that, not before."""

    def __init__(self, api_url: str | None = None, timeout: float = 10.0):
        from prefect.settings import get_current_settings

        settings = get_current_settings().api
        self.api_url = (api_url or (str(settings.url) if settings.url else "")).rstrip("/")
        if not self.api_url:
            raise PrefectUnavailable("PREFECT_API_URL is not set: the bridge emits events to a Prefect server "
                                     "(`sluice up` starts one)")
        self.headers: dict[str, str] = {}
        if settings.key is not None:
            self.headers["Authorization"] = f"Bearer {settings.key.get_secret_value()}"
        elif settings.auth_string is not None:
            import base64

            encoded = base64.b64encode(settings.auth_string.get_secret_value().encode()).decode()
            self.headers["Authorization"] = f"Basic {encoded}"
        self.timeout = timeout

    def emit(self, events: list[BridgeEvent]) -> None:
        import httpx

        try:
            response = httpx.post(f"{self.api_url}/events", json=[e.to_prefect() for e in events],
                                  headers=self.headers, timeout=self.timeout)
        except httpx.HTTPError as error:
            raise PrefectUnavailable(f"Prefect at {self.api_url} is unreachable: {error}") from error
        if response.status_code >= 300:
            raise PrefectUnavailable(f"Prefect at {self.api_url} refused the events: HTTP {response.status_code} "
                                     f"{response.text[:300]}")


# ------------------------------------------------------------------ the bridge


class Bridge:
    """Receiver logic and reconciler, independent of the HTTP framework."""

    def __init__(self, settings: BridgeConfig, token: str, sink: PrefectEventSink, ledger: EmittedLedger,
                 repository: str, default_branch: str = "main"):
        if not token:
            raise ValueError(f"{TOKEN_VARIABLE} is empty: the bridge needs a shared secret")
        self.settings, self.token, self.sink, self.ledger = settings, token, sink, ledger
        self.repository, self.default_branch = repository, default_branch
        # the only repositories whose hooks become events: a valid token does not open the others
        self.repositories = frozenset({repository})
        self.counts = {"received": 0, "emitted": 0, "duplicates": 0, "ignored": 0, "unauthorized": 0,
                       "refused": 0, "failed": 0, "reconciled": 0}

    def authorized(self, given_token: str | None) -> bool:
        """Whether the shared secret is right (constant-time); a wrong one is counted."""
        if token_matches(self.token, given_token):
            return True
        self.counts["unauthorized"] += 1
        return False

    def emit_once(self, event: BridgeEvent, via: str) -> bool:
        """Emit unless already emitted; True when emitted now. A failed emit leaves no claim behind."""
        if not self.ledger.claim(event, via):
            self.counts["duplicates"] += 1
            log.info("duplicate %s for %s@%s: already emitted", event.event, event.commit_id, event.branch)
            return False
        try:
            self.sink.emit([event])
        except BaseException:
            self.ledger.release(event)
            self.counts["failed"] += 1
            raise
        self.ledger.confirm(event)
        self.counts["emitted"] += 1
        log.info("emitted %s for %s@%s (%s, via %s)", event.event, event.repository, event.branch,
                 event.commit_id, via)
        return True

    def handle_webhook(self, body: Any, given_token: str | None) -> tuple[int, dict[str, Any]]:
        """(HTTP status, JSON answer) for one webhook delivery."""
        if not self.authorized(given_token):
            return 401, {"error": UNAUTHORIZED_MESSAGE}
        self.counts["received"] += 1
        try:
            event = event_from_webhook(body)
        except WebhookError as error:
            return 400, {"error": str(error)}
        repository = body.get("repository_id")  # a mapping: event_from_webhook checked
        if repository not in self.repositories:
            self.counts["refused"] += 1
            log.warning("refused a webhook for repository %r: not one this bridge serves", repository)
            return 403, {"error": f"webhook body: repository {repository!r} is not one this bridge serves "
                                 f"({', '.join(sorted(self.repositories))}); nothing was recorded"}
        if event is None or not branch_is_watched(event.branch, self.settings.watched_branches):
            self.counts["ignored"] += 1
            return 200, {"status": "ignored", "reason": "not a post-* hook on a watched branch"}
        try:
            emitted = self.emit_once(event, "webhook")
        except PrefectUnavailable as error:
            # non-2xx: lakeFS logs the failed post-hook; the reconciler emits the event later
            return 503, {"error": str(error)}
        return 200, {"status": "emitted" if emitted else "duplicate", "event": event.event,
                     "event_id": str(event.id)}

    def reconcile_once(self, client: Any, max_commits: int = 1000) -> list[BridgeEvent]:
        """Emit events for commits on watched branches that no webhook delivered; the events emitted now.

        A branch's watermark moves to its head only once every event found on it is emitted, now or
        before. A pass that cannot reach Prefect moves none, and an event claimed by an emit that has
        not confirmed it (still running, or crashed: the claim expires) keeps its branch's watermark,
        so the next pass looks at those commits again instead of losing them."""
        import lakefs

        repo = lakefs.Repository(self.repository, client=client)
        marks = self.ledger.watermarks(self.repository)
        first_pass = not marks
        heads = {b.id: b.get_commit().id for b in repo.branches()
                 if branch_is_watched(b.id, self.settings.watched_branches)}
        new: list[BridgeEvent] = []
        for branch, head in sorted(heads.items()):
            if not first_pass and marks.get(branch) != head:
                new += self._new_commits(repo, branch, marks.get(branch), max_commits)
        emitted: list[BridgeEvent] = []
        unsettled: set[str] = set()
        try:
            for event in sorted(new, key=lambda e: e.occurred):
                if self.emit_once(event, "reconcile"):
                    emitted.append(event)
                elif not self.ledger.is_emitted(event):
                    unsettled.add(event.branch)
        finally:
            self.counts["reconciled"] += len(emitted)
        for branch, head in sorted(heads.items()):
            if branch not in unsettled:
                self.ledger.set_watermark(self.repository, branch, head)
        return emitted

    def _new_commits(self, repo: Any, branch: str, watermark: str | None, max_commits: int) -> list[BridgeEvent]:
        """Commits on the branch's first-parent line after its watermark; for a branch seen for the first
        time, those after it left the default branch."""
        stop = {watermark} if watermark else {c.id for c in repo.branch(self.default_branch).log(
            max_amount=max_commits)}
        found = []
        for commit in repo.branch(branch).log(max_amount=max_commits, first_parent=True):
            if commit.id in stop:
                break
            if not commit.parents:  # the repository's first commit: nothing happened to data
                break
            found.append(event_from_commit(self.repository, branch, commit))
        else:
            if watermark:
                log.warning("branch %s: watermark %s not within the last %d commits (branch reset?); "
                            "emitting only what was found", branch, watermark, max_commits)
        return found


# ------------------------------------------------------------------ HTTP


def create_app(bridge: Bridge) -> FastAPI:
    app = FastAPI(title="Sluicegate event bridge", docs_url=None, redoc_url=None)

    @app.post(WEBHOOK_PATH)
    async def webhook(request: Request) -> JSONResponse:
        import anyio

        # the secret first: an unauthenticated caller gets nothing read, buffered or parsed
        token = request.headers.get(TOKEN_HEADER)
        if not bridge.authorized(token):
            return _refusal(401, {"error": UNAUTHORIZED_MESSAGE})
        try:
            check_declared_length(request.headers.get("content-length"))
            body = parse_json(await read_capped(request.stream()))
        except BodyRejected as error:
            return _refusal(error.status, {"error": str(error)})
        status, answer = await anyio.to_thread.run_sync(bridge.handle_webhook, body, token)
        return JSONResponse(answer, status_code=status)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "prefect": bridge.sink.api_url, "repository": bridge.repository,
                "watched_branches": bridge.settings.watched_branches, "counts": bridge.counts}

    return app


def _refusal(status: int, answer: dict[str, Any]) -> JSONResponse:
    """An answer given before the body was read: the connection closes after it, so the rest of the body
    is not received at all."""
    return JSONResponse(answer, status_code=status, headers={"Connection": "close"})


def reconcile_forever(bridge: Bridge, client_factory: Any, stop: threading.Event) -> None:
    """The reconciliation loop; an error in one pass is logged with its cause and the next pass retries."""
    while not stop.is_set():
        try:
            bridge.reconcile_once(client_factory())
        except Exception as error:  # noqa: BLE001 — a loop that must outlive a lakeFS or Prefect outage
            log.warning("reconciliation pass failed (retrying in %.0f s): %s: %s",
                        bridge.settings.reconcile_seconds, type(error).__name__, error)
        stop.wait(bridge.settings.reconcile_seconds)


def bridge_from_environment(settings: BridgeConfig, repository: str, default_branch: str = "main") -> Bridge:
    token = os.environ.get(TOKEN_VARIABLE, "")
    if not token:
        raise ValueError(f"{TOKEN_VARIABLE} is not set: lakeFS must send it in the {TOKEN_HEADER} header "
                         "(see deployments/lakefs-actions/sluice-bridge.yaml)")
    return Bridge(settings, token, PrefectEventSink(), EmittedLedger(settings.state_file), repository,
                  default_branch)


def serve(bridge: Bridge, host: str, port: int, ready: Any = None) -> None:
    """Run the receiver and the reconciler until interrupted."""
    import uvicorn

    from sluice.core.lake.client import lakefs_client

    stop = threading.Event()
    loop = threading.Thread(target=reconcile_forever, args=(bridge, lakefs_client, stop), daemon=True,
                            name="bridge-reconciler")
    loop.start()
    config = uvicorn.Config(create_app(bridge), host=host, port=port, log_level="warning")
    server = uvicorn.Server(config)
    if ready is not None:
        ready(server)
    try:
        server.run()
    finally:
        stop.set()


# ------------------------------------------------------------------ the lakeFS action


ACTION_TEMPLATE = DEPLOYMENTS / "lakefs-actions" / "sluice-bridge.yaml"
ACTION_PATH = "_lakefs_actions/sluice-bridge.yaml"


def render_action(bridge_url: str, default_branch: str = "main", template: Path = ACTION_TEMPLATE) -> str:
    """The action file with the receiver's URL and the default branch filled in."""
    text = template.read_text()
    return text.replace("${BRIDGE_URL}", bridge_url.rstrip("/") + WEBHOOK_PATH).replace(
        "${DEFAULT_BRANCH}", default_branch)


def install_action(client: Any, repository: str, bridge_url: str, default_branch: str = "main") -> str | None:
    """Commit the action file to the default branch; the commit id, or None when it is already there."""
    import lakefs

    text = render_action(bridge_url, default_branch)
    branch = lakefs.Repository(repository, client=client).branch(default_branch)
    current = branch.object(ACTION_PATH)
    if current.exists() and current.reader(mode="r").read() == text:
        return None
    branch.object(ACTION_PATH).upload(text.encode(), content_type="application/x-yaml")
    commit = branch.commit(message="Install the Sluicegate event bridge action",
                           metadata={"sluice.change": "lakefs-action"})
    return str(commit.get_commit().id)
