"""A minimal read-only web view at lakeFS's own UI paths, so that links in run
reports (``/repositories/<repo>/commits/<id>``) open something useful on the
embedded server. Real lakeFS serves its full web UI at the same paths."""

from __future__ import annotations

from datetime import datetime, timezone
from html import escape
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from .errors import APIError
from .metadata.records import ObjectEntry, ResolvedRef
from .metadata.store import MetadataStore

_STYLE = ("body{font-family:system-ui,sans-serif;margin:2rem;max-width:70rem}table{border-collapse:collapse}"
          "td,th{padding:.25rem .75rem;border-bottom:1px solid #ddd;text-align:left}code{font-size:.9em}")


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(f"<!doctype html><meta charset=utf-8><title>{escape(title)}</title><style>{_STYLE}</style>"
                        f"<p><a href='/'>repositories</a></p><h1>{escape(title)}</h1>{body}", status_code=status)


def _when(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _commit_link(repo: str, commit_id: str) -> str:
    return f"<a href='/repositories/{quote(repo)}/commits/{commit_id}'><code>{commit_id[:12]}</code></a>"


def ui_routes(store: MetadataStore) -> list[Route]:
    def repositories(request: Request) -> Response:
        repos, _ = store.list_repositories("", "", 1000)
        rows = "".join(f"<tr><td><a href='/repositories/{quote(r.name)}'>{escape(r.name)}</a></td>"
                       f"<td>{escape(r.storage_namespace)}</td><td>{_when(r.creation_date)}</td></tr>" for r in repos)
        return _page("Repositories", f"<table><tr><th>repository<th>storage namespace<th>created{rows}</table>")

    def repository(request: Request) -> Response:
        repo = request.path_params["repo"]
        branches, _ = store.list_branches(repo, "", "", 1000)
        tags, _ = store.list_tags(repo, "", "", 1000)
        branch_rows = "".join(f"<tr><td>{escape(b)}</td><td>{_commit_link(repo, c)}</td></tr>" for b, c in branches)
        tag_rows = "".join(f"<tr><td>{escape(t)}</td><td>{_commit_link(repo, c)}</td></tr>" for t, c in tags)
        return _page(f"Repository {repo}", f"<h2>Branches</h2><table>{branch_rows}</table>"
                                           f"<h2>Tags</h2><table>{tag_rows}</table>")

    def commit(request: Request) -> Response:
        repo, commit_id = request.path_params["repo"], request.path_params["commit"]
        commit = store.resolve_commit(repo, commit_id)
        parents = ", ".join(_commit_link(repo, p) for p in commit.parents) or "none"
        metadata = "".join(f"<tr><td><code>{escape(k)}</code></td><td>{escape(v)}</td></tr>"
                           for k, v in sorted(commit.metadata.items()))
        objects: list[ObjectEntry] = list(store.iter_entries(repo, ResolvedRef(commit.id)))
        object_rows = "".join(f"<tr><td><code>{escape(o.path)}</code></td><td>{o.size_bytes:,}</td>"
                              f"<td><code>{o.checksum}</code></td></tr>" for o in objects[:2000])
        more = f"<p>… and {len(objects) - 2000:,} more</p>" if len(objects) > 2000 else ""
        return _page(
            f"Commit {commit.id[:12]} in {repo}",
            f"<p><code>{commit.id}</code></p><p>{escape(commit.message)}</p>"
            f"<p>by {escape(commit.committer or '—')} at {_when(commit.creation_date)}; parents: {parents}</p>"
            f"<h2>Metadata</h2><table>{metadata}</table>"
            f"<h2>Objects ({len(objects):,})</h2><table><tr><th>path<th>bytes<th>checksum{object_rows}</table>{more}",
        )

    def guarded(handler):  # type: ignore[no-untyped-def]
        async def endpoint(request: Request) -> Response:
            try:
                return handler(request)
            except APIError as exc:
                return _page(f"{exc.status}", f"<p>{escape(exc.message)}</p>", exc.status)

        return endpoint

    return [
        Route("/", guarded(repositories)),
        Route("/repositories/{repo}", guarded(repository)),
        Route("/repositories/{repo}/commits/{commit}", guarded(commit)),
    ]
