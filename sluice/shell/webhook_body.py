"""Reading a webhook's body without trusting it: at most ``MAX_BODY_BYTES``,
read in chunks and abandoned at the cap (never buffered whole), and JSON
nested at most ``MAX_JSON_DEPTH`` levels. A lakeFS action body is a flat
object of a few hundred bytes; anything far bigger or deeper is not one."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

MAX_BODY_BYTES = 1 << 20
MAX_JSON_DEPTH = 32


class BodyRejected(ValueError):
    """A body the bridge will not read or parse; ``status`` is the HTTP answer (400 or 413)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def check_declared_length(content_length: str | None, limit: int = MAX_BODY_BYTES) -> None:
    """Refuse a body by its Content-Length header, before reading a byte of it."""
    if content_length is None:
        return  # chunked: the cap applies while reading
    if not content_length.strip().isdigit():
        raise BodyRejected(400, f"Content-Length header is not a byte count: {content_length[:40]!r}")
    if int(content_length) > limit:
        raise BodyRejected(413, f"webhook body of {int(content_length)} bytes is over the {limit}-byte limit")


async def read_capped(chunks: AsyncIterator[bytes], limit: int = MAX_BODY_BYTES) -> bytes:
    """The body, read chunk by chunk; stops as soon as it passes ``limit`` (413)."""
    received = bytearray()
    async for chunk in chunks:
        received += chunk
        if len(received) > limit:
            raise BodyRejected(413, f"webhook body is over the {limit}-byte limit")
    return bytes(received)


def parse_json(raw: bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """The JSON value of ``raw`` (None when empty); 400 when it is not JSON or nests deeper than ``max_depth``."""
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BodyRejected(400, f"webhook body is not JSON: {error}") from None
    except RecursionError:  # the C parser stops at the interpreter's recursion limit, cleanly
        raise BodyRejected(400, f"webhook body: JSON nested deeper than {max_depth} levels") from None
    if _depth(value) > max_depth:
        raise BodyRejected(400, f"webhook body: JSON nested deeper than {max_depth} levels")
    return value


def _depth(value: Any) -> int:
    """How deeply arrays and objects nest in a parsed JSON value (iterative: no recursion to exhaust)."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        item, depth = pending.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        pending.extend((child, depth + 1) for child in children)
    return deepest
