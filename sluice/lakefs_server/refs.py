"""lakeFS ref expressions.

``main``, ``v1.0`` and ``<commit id>`` name a branch, tag or commit;
``~N`` walks N first parents and ``^N`` takes the N-th parent (N defaults to
1), applied left to right (``main~1^2``); a trailing ``@`` reads only a
branch's committed state and a trailing ``$`` only its staging area. ``@`` and
``$`` must stand alone and apply only to branches.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import BadRequest

_PART = re.compile(r"(^|[~^@$])([^~^@$]*)")
INVALID_REF = "ref: invalid value: validation error"


@dataclass(frozen=True)
class RefExpression:
    name: str
    # ('~', n): n-th first-parent ancestor; ('^', n): n-th parent (1-based)
    modifiers: tuple[tuple[str, int], ...] = ()
    branch_modifier: str = ""  # '', '@' (committed only) or '$' (staging only)

    @property
    def is_plain(self) -> bool:
        return not self.modifiers and not self.branch_modifier


def parse_ref(text: str) -> RefExpression:
    if not text or any(c.isspace() for c in text):
        raise BadRequest(INVALID_REF)
    parts = [(m.group(1), m.group(2)) for m in _PART.finditer(text) if m.group(0)]
    if not parts or parts[0][0] or not parts[0][1]:
        raise BadRequest(INVALID_REF)
    name = parts[0][1]
    modifiers: list[tuple[str, int]] = []
    branch_modifier = ""
    for symbol, number in parts[1:]:
        if symbol in "@$":
            if number or len(parts) != 2:
                raise BadRequest(INVALID_REF)
            branch_modifier = symbol
            continue
        if number and not number.isdigit():
            raise BadRequest(f"could not parse modifier {symbol}{number}: {INVALID_REF}")
        modifiers.append((symbol, int(number) if number else 1))
    return RefExpression(name=name, modifiers=tuple(modifiers), branch_modifier=branch_modifier)
