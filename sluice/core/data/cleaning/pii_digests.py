"""Keyed digests of the PII that cleaning redacted, so a later check can tell
whether a model emits one of those originals without anyone keeping them in
clear.

Cleaning replaces each match by its tag and, per batch, records
``HMAC-SHA256(key, canonical original)`` for every original, with a salt of
its own as the key (plus, when set, the secret ``SLUICE_PII_DIGEST_KEY`` from
the environment). A batch's salt is the hash of its rows' ids (ids are taken
of the redacted text), so the same input gives the same report however it was
split into blocks or workers, and two batches never share a salt. The privacy probe finds PII-shaped strings in a
model's answers with the same patterns, digests them with each batch's salt
and looks them up.

Why a key from the environment matters: the salt is stored next to the
digests, and a phone number has few enough possibilities that anyone holding
the report could try them all. With ``SLUICE_PII_DIGEST_KEY`` set (at
ingest and at evaluation) the digests are useless without the secret.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Iterable, Mapping

from pydantic import BaseModel, ConfigDict

from sluice.core.data.cleaning.pii import redact_pii

DIGEST_KEY_VARIABLE = "SLUICE_PII_DIGEST_KEY"
_DIGITS_ONLY = ("phone", "credit_card")  # "+1 202-555-0143" and "12025550143" are the same number


class PiiDigests(BaseModel):
    """One batch's redacted originals as keyed digests (no original in clear)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    algorithm: str = "hmac-sha256"
    salt: str  # hex; the HMAC key together with the environment's secret, when ``keyed``
    keyed: bool  # SLUICE_PII_DIGEST_KEY was part of the key: the probe needs the same value
    patterns: dict[str, str] = {}  # the extra patterns of that cleaning (built-ins are always used)
    digests: list[str] = []  # sorted hex digests of the canonical originals


def canonical_pii(kind: str, text: str) -> str:
    """The form an original is digested in: digits only for numbers, lower case for e-mail."""
    if kind in _DIGITS_ONLY:
        return "".join(ch for ch in text if ch.isdigit())
    return text.strip().lower() if kind == "email" else text.strip()


def _key(salt: str, keyed: bool) -> bytes:
    if not keyed:
        return bytes.fromhex(salt)
    secret = os.environ.get(DIGEST_KEY_VARIABLE)
    if not secret:
        raise ValueError(f"these PII digests were made with {DIGEST_KEY_VARIABLE} set; set it to the same value "
                         "to check answers against them")
    return bytes.fromhex(salt) + secret.encode()


def _digest(key: bytes, kind: str, text: str) -> str:
    return hmac.new(key, f"{kind}\x1f{canonical_pii(kind, text)}".encode(), hashlib.sha256).hexdigest()


def batch_salt(ids: Iterable[str]) -> str:
    """A batch's salt: the hash of its row ids (hex, 32 digits)."""
    digest = hashlib.sha256(b"sluicegate pii salt")
    for row_id in ids:
        digest.update(row_id.encode() + b"\n")
    return digest.hexdigest()[:32]


def digest_originals(originals: Iterable[tuple[str, str]], patterns: Mapping[str, str] | None = None, *,
                     salt: str | None = None) -> PiiDigests:
    """Digests of (PII type, original) pairs under ``salt`` (default: a random one) and the environment's key
    when set."""
    salt = salt or secrets.token_hex(16)
    keyed = bool(os.environ.get(DIGEST_KEY_VARIABLE))
    key = _key(salt, keyed)
    return PiiDigests(salt=salt, keyed=keyed, patterns=dict(patterns or {}),
                      digests=sorted({_digest(key, kind, text) for kind, text in originals}))


def pii_in(text: str, patterns: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
    """PII-shaped strings in ``text``, found exactly as cleaning finds them: (type, match)."""
    return redact_pii([text], patterns, keep_originals=True).originals


def leaked_originals(text: str, known: Iterable[PiiDigests]) -> list[str]:
    """The PII types of the strings in ``text`` that are originals some batch redacted (one entry per leak)."""
    leaks = []
    for batch in known:
        if not batch.digests:
            continue
        key, digests = _key(batch.salt, batch.keyed), set(batch.digests)
        leaks += [kind for kind, found in pii_in(text, batch.patterns) if _digest(key, kind, found) in digests]
    return leaks
