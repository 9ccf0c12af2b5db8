"""Arrow list arrays, row by row: chats (``list<struct<role, content>>``) and
context passages (``list<string>``), as reading and cleaning handle them.

Reading builds chats from flat columns (:func:`turn_lists`); reading and
cleaning both ask per-row questions of a list's elements
(:func:`rows_with_any`, :func:`user_turn`) and rebuild a list around new
element values (:func:`rebuild_list`). Everything here works on whole
arrays, never row by row in Python.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sluice.core.data.kinds import MESSAGE, ROLES


def compact(lists: pa.Array) -> pa.Array:
    """A list array whose null slots hold no hidden child values (pyarrow
    allows them; downstream code reads children by offsets)."""
    if lists.null_count == 0:
        return lists
    lengths = pc.fill_null(pc.list_value_length(lists), 0).to_numpy(zero_copy_only=False)
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]), pa.int32())
    return pa.ListArray.from_arrays(offsets, lists.flatten(), mask=lists.is_null())


def list_parents(lists: pa.Array) -> np.ndarray:
    """For each element of the lists, the row it belongs to."""
    return pc.list_parent_indices(lists).to_numpy()


def rebuild_list(lists: pa.ListArray, values: pa.Array) -> pa.Array:
    """The same rows, holding ``values`` (one per element of ``lists``)."""
    return pa.ListArray.from_arrays(lists.offsets, values, mask=lists.is_null())


def join_lists(lists: pa.ListArray, separator: str) -> pa.Array:
    """Each row's strings joined; "" for a null row."""
    return pc.fill_null(pc.binary_join(lists, separator), "")


def rows_with_any(flags: np.ndarray, lists: pa.Array) -> np.ndarray:
    """Per row: whether any of its elements is flagged."""
    return np.bincount(list_parents(lists), weights=flags.astype(np.float64), minlength=len(lists)) > 0


def turn_lists(turns: list[tuple[str, pa.Array, bool]]) -> pa.Array:
    """Chats from flat text columns, one turn per ``(role, texts, optional)``
    in that order. An optional turn is left out where its text is null or
    empty; a row missing a required text is a null chat."""
    n = len(turns[0][1])
    missing = np.zeros(n, dtype=bool)
    for _, texts, optional in turns:
        if not optional:
            missing |= texts.is_null().to_numpy(zero_copy_only=False)
    included = []
    for _, texts, optional in turns:
        given = texts.is_valid()
        if optional:
            given = pc.and_(given, pc.not_equal(pc.utf8_length(texts), 0)).fill_null(False)
        included.append(given.to_numpy(zero_copy_only=False) & ~missing)
    offsets = np.concatenate([[0], np.cumsum(np.sum(included, axis=0, dtype=np.int64))])
    role = np.empty(offsets[-1], dtype=np.int8)  # index into ROLES
    take = np.empty(offsets[-1], dtype=np.int64)  # into the texts, concatenated
    before = np.zeros(n, dtype=np.int64)  # turns already placed in each row
    for index, (name, _, _) in enumerate(turns):
        rows = np.nonzero(included[index])[0]
        at = offsets[:-1][rows] + before[rows]
        role[at], take[at] = ROLES.index(name), index * n + rows
        before += included[index]
    roles = pa.array(ROLES, pa.string()).take(pa.array(role))
    contents = pa.concat_arrays([texts.cast(pa.string()) for _, texts, _ in turns]).take(pa.array(take, pa.int64()))
    inner = pa.StructArray.from_arrays([roles, contents], fields=list(MESSAGE))
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), inner, mask=pa.array(missing))


def user_turn(chats: pa.Array, last: bool) -> pa.Array:
    """Each chat's first (or last) user turn; "" where it has none."""
    n = len(chats)
    values = chats.values
    if len(values) == 0:
        return pa.array([""] * n, pa.string())
    is_user = pc.equal(values.field("role"), "user").fill_null(False).to_numpy(zero_copy_only=False)
    # a chat's child values are read by offsets: null chats were compacted when read
    parents = list_parents(chats)
    positions = np.arange(len(values))
    if last:
        found_at = np.full(n, -1, dtype=np.int64)
        np.maximum.at(found_at, parents[is_user], positions[is_user])
        found = found_at >= 0
    else:
        found_at = np.full(n, len(values), dtype=np.int64)
        np.minimum.at(found_at, parents[is_user], positions[is_user])
        found = found_at < len(values)
    contents = pc.fill_null(values.field("content"), "")
    taken = contents.take(pa.array(np.where(found, found_at, 0)))
    return pc.if_else(pa.array(found), taken, "")
