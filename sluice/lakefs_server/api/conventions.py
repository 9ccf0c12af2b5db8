"""How the lakeFS REST API speaks HTTP, for every endpoint: JSON and error
bodies, query parameters, request bodies and paginated listings, with the
messages lakeFS's OpenAPI validation gives."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..errors import BadRequest

API = "/api/v1"
MAX_PER_PAGE = 1000
DEFAULT_AMOUNT = 100


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
    names it in errors as lakeFS does."""
    raw = await request.body()
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"request body has an error: failed to decode request body: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest(f"request body has an error: doesn't match schema #/components/schemas/{schema}")
    return body


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
