"""What a valid name is on the embedded lakeFS-compatible server: repository,
branch and tag ids, storage namespaces and object paths.

These are lakeFS's own rules (its OpenAPI spec and ``pkg/graveler/validate.go``),
kept here rather than borrowed from the rest of Sluicegate: the server stands
in for the lakeFS product and must not change when the project's rules do.
"""

from __future__ import annotations

import re

from .errors import BadRequest

REPOSITORY_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{2,62}$")
BRANCH_NAME = re.compile(r"^\w[-\w]*$")
STORAGE_NAMESPACE = re.compile(r"^(s3|gs|https?|mem|local|transient)://.*$")
MAX_PATH_BYTES = 1024

_TAG_FORBIDDEN = re.compile(r"\.\.|/|@\{|[\^:?*\[\\]")


def is_valid_tag(tag: str) -> bool:
    """git check-ref-format-like rules, as lakeFS applies to tag ids."""
    return (
        bool(tag) and tag != "@" and not tag.endswith((".", ".lock")) and not _TAG_FORBIDDEN.search(tag)
        and all(ord(c) > 0x20 for c in tag)
    )


def validate_path(path: str | None) -> str:
    """An object path is any non-empty key of at most ``MAX_PATH_BYTES``
    bytes; it never names a file (see :mod:`.blobs`)."""
    if not path:
        raise BadRequest("argument path: missing path: required value: validation error")
    if len(path.encode()) > MAX_PATH_BYTES:
        raise BadRequest(
            f"argument path: invalid value: validation error: {len(path.encode())} is above maximum length "
            f"({MAX_PATH_BYTES})"
        )
    return path


_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")


def validate_new_path(path: str | None) -> str:
    """A path an object is written at: :func:`validate_path`, and no control
    characters (NUL, CR, LF, …), which no HTTP header, file name or terminal
    can carry back to whoever reads the object."""
    path = validate_path(path)
    if found := _CONTROL_CHARACTER.search(path):
        raise BadRequest(f"argument path: invalid value: validation error: control character "
                         f"U+{ord(found.group()):04X} at position {found.start()} is not allowed in an object path")
    return path
