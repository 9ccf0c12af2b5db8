"""Objects: uploads and deletions on a branch
(``/branches/{branch}/objects``), reads, stats and listings at any ref
(``/refs/{ref}/objects``). Bytes go to the blob store, entries to the
metadata store."""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ..blobs import BlobWriter
from ..errors import BadRequest, NotFound, PreconditionFailed, RangeNotSatisfiable
from ..metadata.records import ObjectEntry, ResolvedRef
from ..names import validate_new_path, validate_path
from .conventions import body_json, json_response, listing, query_amount, query_bool, require_query
from .state import ServerState

MAX_DELETE_PATHS = 1000
READ_CHUNK = 1 << 20
_USER_META = "x-lakefs-meta-"
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]*")
_NOT_IN_QUOTED_NAME = re.compile(r'[^\x20-\x7e]|["\\]')


def _object_stats(namespace: str, entry: ObjectEntry, with_metadata: bool = True) -> dict[str, Any]:
    stats: dict[str, Any] = {
        "path": entry.path,
        "path_type": "object",
        "physical_address": f"{namespace}/data/{entry.address}",
        "checksum": entry.checksum,
        "size_bytes": entry.size_bytes,
        "mtime": entry.mtime,
        "content_type": entry.content_type,
    }
    if with_metadata:
        stats["metadata"] = entry.metadata
    return stats


# -------------------------------------------------------------- writes


async def upload_object(state: ServerState, request: Request, repo: str, branch: str) -> Response:
    path = validate_new_path(require_query(request, "path"))
    store = state.store
    store.get_repository(repo)
    store.branch_head(repo, branch, missing=f"branch '{branch}' not found")
    if request.headers.get("if-none-match") == "*" and store.get_entry(
        repo, ResolvedRef(store.branch_head(repo, branch), branch), path
    ):
        raise PreconditionFailed("path already exists")
    content_type = _content_type(request.headers.get("content-type"))
    metadata = {k[len(_USER_META):]: v for k, v in request.headers.items() if k.startswith(_USER_META)}
    writer = state.blobs.writer()
    try:
        if content_type.startswith("multipart/form-data"):
            content_type = _content_type(await _receive_multipart(request, writer))
        else:
            async for chunk in request.stream():
                writer.write(chunk)
    except BaseException:
        writer.abort()
        raise
    blob = writer.finish()
    # The branch may have been deleted while the body streamed in.
    store.branch_head(repo, branch, missing=f"branch '{branch}' not found")
    entry = ObjectEntry(path, blob.address, blob.checksum, blob.size, int(time.time()), content_type, metadata)
    store.stage_object(repo, branch, entry)
    return json_response(_object_stats(state.namespace(repo), entry), 201)


def _content_type(value: str | None) -> str:
    """The object's content type, sent back as a header on every read: it
    must be one that a header can carry."""
    if not value:
        return "application/octet-stream"
    if not _PRINTABLE_ASCII.fullmatch(value):
        raise BadRequest("header Content-Type has an error: only printable ASCII is allowed")
    return value


async def _receive_multipart(request: Request, writer: BlobWriter) -> str:
    """The generated client uploads as multipart with a ``content`` field
    (lakeFS accepts both); returns that part's content type."""
    async with request.form(max_part_size=1 << 20) as form:
        part = form.get("content")
        if part is None or isinstance(part, str):
            raise BadRequest("multipart upload: missing file field 'content'")
        while chunk := await part.read(READ_CHUNK):
            writer.write(chunk)
        return part.content_type or ""


async def delete_object(state: ServerState, request: Request, repo: str, branch: str) -> Response:
    path = validate_path(require_query(request, "path"))
    state.store.delete_objects(repo, branch, [path])
    return Response(status_code=204)


async def delete_objects(state: ServerState, request: Request, repo: str, branch: str) -> Response:
    body = await body_json(request, "PathList")
    paths = body.get("paths")
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise BadRequest('request body has an error: doesn\'t match schema #/components/schemas/PathList: '
                         'Error at "/paths": property "paths" is missing')
    if len(paths) > MAX_DELETE_PATHS:
        raise BadRequest(f"request size exceeded, max paths is set to {MAX_DELETE_PATHS}")
    try:
        state.store.delete_objects(repo, branch, [p for p in paths if p])
    except NotFound:
        pass  # lakeFS ignores not-found in batch deletes, a missing branch included
    return json_response({"errors": []})


# -------------------------------------------------------------- reads


def _entry(state: ServerState, request: Request, repo: str, ref: str) -> ObjectEntry:
    """The object named by the ``path`` query parameter at ``ref``."""
    path = validate_path(require_query(request, "path"))
    entry = state.store.get_entry(repo, state.store.resolve(repo, ref), path)
    if entry is None:
        raise NotFound("not found")
    return entry


def _content_disposition(path: str) -> str:
    """Always an attachment: object content never renders on the web view's
    origin. The name as RFC 6266/5987 give it: an ASCII stand-in, and the
    exact UTF-8 name for clients that read ``filename*``."""
    name = path.rsplit("/", 1)[-1]
    if not name:
        return "attachment"
    fallback = _NOT_IN_QUOTED_NAME.sub("_", name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def _object_headers(entry: ObjectEntry) -> dict[str, str]:
    return {
        "ETag": f'"{entry.checksum}"',
        "Last-Modified": email.utils.formatdate(entry.mtime, usegmt=True),
        "Content-Type": entry.content_type,
        "Accept-Ranges": "bytes",
        "Cache-Control": "no-store, must-revalidate",
        "Content-Disposition": _content_disposition(entry.path),
    }


def _parse_range(header: str, size: int) -> tuple[int, int]:
    """``bytes=a-b`` / ``bytes=a-`` / ``bytes=-n`` → inclusive (start, end)."""
    match = re.fullmatch(r"bytes=(\d*)-(\d*)", header.strip())
    if not match or (not match.group(1) and not match.group(2)):
        raise RangeNotSatisfiable("Requested Range Not Satisfiable", -1)
    first, last = match.group(1), match.group(2)
    if not first:  # suffix: the last n bytes
        count = int(last)
        if count == 0 or size == 0:
            raise RangeNotSatisfiable("Requested Range Not Satisfiable", size)
        return max(size - count, 0), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start > size - 1 or (last and int(last) < start):
        raise RangeNotSatisfiable("Requested Range Not Satisfiable", size)
    return start, end


def _read_file(path: Path, start: int, length: int) -> Iterator[bytes]:
    with path.open("rb") as handle:
        handle.seek(start)
        while length > 0:
            chunk = handle.read(min(READ_CHUNK, length))
            if not chunk:
                return
            length -= len(chunk)
            yield chunk


async def get_object(state: ServerState, request: Request, repo: str, ref: str) -> Response:
    entry = _entry(state, request, repo, ref)
    headers = _object_headers(entry)
    start, end = 0, entry.size_bytes - 1
    status = 200
    if "range" in request.headers:
        start, end = _parse_range(request.headers["range"], entry.size_bytes)
        headers["Content-Range"] = f"bytes {start}-{end}/{entry.size_bytes}"
        status = 206
    length = max(end - start + 1, 0)
    headers["Content-Length"] = str(length)
    path = state.blobs.path_of(entry.address)
    return StreamingResponse(_read_file(path, start, length), status_code=status, headers=headers,
                             media_type=entry.content_type)


async def head_object(state: ServerState, request: Request, repo: str, ref: str) -> Response:
    entry = _entry(state, request, repo, ref)
    headers = _object_headers(entry)
    headers["Content-Length"] = str(entry.size_bytes)
    return Response(status_code=200, headers=headers)


async def stat_object(state: ServerState, request: Request, repo: str, ref: str) -> Response:
    entry = _entry(state, request, repo, ref)
    return json_response(_object_stats(state.namespace(repo), entry))


async def list_objects(state: ServerState, request: Request, repo: str, ref: str) -> Response:
    query = request.query_params
    with_metadata = query_bool(request, "user_metadata", default=True)
    results, has_more = state.store.list_objects(
        repo, state.store.resolve(repo, ref), query.get("prefix", ""), query.get("after", ""),
        query.get("delimiter", ""), query_amount(request),
    )
    items, namespace = [], state.namespace(repo)
    for item in results:
        if isinstance(item, str):
            items.append({"path": item, "path_type": "common_prefix", "physical_address": "",
                          "checksum": "", "mtime": 0})
        else:
            items.append(_object_stats(namespace, item, with_metadata and bool(item.metadata)))
    return listing(items, has_more, key="path")
