"""How the lakeFS REST API speaks HTTP, for every endpoint: JSON and error
bodies, query parameters, request bodies and paginated listings, with the
messages lakeFS's OpenAPI validation gives."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

API = "/api/v1"
MAX_PER_PAGE = 1000
DEFAULT_AMOUNT = 100
# lakeFS request bodies are small (the largest: 1,000 paths to delete); object
# uploads are not JSON and stream at any size.
MAX_JSON_BODY_BYTES = 4 << 20
MAX_JSON_DEPTH = 32


def json_response(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body, ensure_ascii=False), status_code=status, media_type="application/json",
                    headers={"X-Content-Type-Options": "nosniff"})


def error_response(status: int, message: str, **extra: Any) -> Response:
    return json_response({"message": message, **extra}, status)


def query_bool(request: Request, name: str, default: bool = False) -> bool:
    value = request.query_params.get(name)
    if value is None or value == "":
        return default
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise BadRequest(f'parameter "{name}" in query has an error: value {value}: an invalid boolean: invalid syntax')


def query_amount(request: Request) -> int:
    """The page size asked for; 0 and -1 mean the default, as in lakeFS."""
    raw = request.query_params.get("amount")
    if raw in (None, ""):
        return DEFAULT_AMOUNT
    try:
        amount = int(raw)
    except ValueError:
        raise BadRequest(f'parameter "amount" in query has an error: value {raw}: an invalid integer') from None
    if amount > MAX_PER_PAGE:
        raise BadRequest(f'parameter "amount" in query has an error: number must be at most {MAX_PER_PAGE}')
    if amount < -1:
        raise BadRequest('parameter "amount" in query has an error: number must be at least -1')
    return DEFAULT_AMOUNT if amount in (0, -1) else amount


def require_query(request: Request, name: str) -> str:
    value = request.query_params.get(name)
    if value is None:
        raise BadRequest(f'parameter "{name}" in query has an error: value is required but missing')
    if value == "":
        raise BadRequest(f'parameter "{name}" in query has an error: empty value is not allowed')
    return value


async def body_json(request: Request, schema: str) -> dict[str, Any]:
    """The request's JSON object (empty when there is no body); ``schema``
    names it in errors as lakeFS does. Only ``application/json`` is read (a
    browser cannot send it cross-site without a CORS preflight), at most
    :data:`MAX_JSON_BODY_BYTES`, nested at most :data:`MAX_JSON_DEPTH` deep."""
    content_type = request.headers.get("content-type")
    if content_type is not None and not _is_json(content_type):
        raise UnsupportedMediaType(f"request body has an error: header Content-Type has unexpected value "
                                   f"{content_type!r}: expected application/json")
    raw = await _read_capped(request)
    if not raw:
        return {}
    if content_type is None:
        raise UnsupportedMediaType("request body has an error: header Content-Type is missing: "
                                   "expected application/json")
    try:
        body = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"request body has an error: failed to decode request body: {exc}") from None
    except RecursionError:  # the decoder's own guard, far deeper than ours
        raise _too_deep() from None
    if not _nested_at_most(body, MAX_JSON_DEPTH):
        raise _too_deep()
    if not isinstance(body, dict):
        raise BadRequest(f"request body has an error: doesn't match schema #/components/schemas/{schema}")
    return body


def _too_deep() -> BadRequest:
    return BadRequest(f"request body has an error: JSON nested deeper than {MAX_JSON_DEPTH} levels")


def _is_json(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower() == "application/json"


async def _read_capped(request: Request) -> bytes:
    """The body, read in chunks and refused as soon as it passes the cap, so
    an oversized body never sits in memory."""
    too_large = PayloadTooLarge(f"request body has an error: body is larger than {MAX_JSON_BODY_BYTES} bytes")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_JSON_BODY_BYTES:
        raise too_large
    received = bytearray()
    async for chunk in request.stream():
        received += chunk
        if len(received) > MAX_JSON_BODY_BYTES:
            raise too_large
    return bytes(received)


def _nested_at_most(value: Any, limit: int) -> bool:
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            return False
        pending.extend((child, depth + 1) for child in children)
    return True


def string_map(body: dict[str, Any], key: str, schema: str) -> dict[str, str]:
    value = body.get(key) or {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise BadRequest(
            f"request body has an error: doesn't match schema #/components/schemas/{schema}: "
            f'Error at "/{key}": value must be a map of strings'
        )
    return {str(k): v for k, v in value.items()}


def pagination(has_more: bool, results: int, last: str) -> dict[str, Any]:
    return {"has_more": has_more, "next_offset": last if has_more else "", "results": results,
            "max_per_page": MAX_PER_PAGE}


def listing(results: list[dict[str, Any]], has_more: bool, key: str = "id") -> Response:
    """A lakeFS list response; ``next_offset`` is the last item's ``key``."""
    return json_response({"pagination": pagination(has_more, len(results), results[-1][key] if results else ""),
                          "results": results})
