"""What the cleaning modules share: Arrow string arrays as raw UTF-8 bytes, and a thread pool.

The cleaning steps work on the bytes and row offsets of Arrow string arrays
(:func:`bytes_and_offsets`), in row chunks of a few MB (:func:`row_chunks`) so
memory stays bounded, and build their results back into Arrow arrays
(:func:`string_array_from_pieces`, :func:`replace_rows`). The numpy-heavy
steps spread their chunks over :data:`THREADS` threads (:func:`parallel_map`);
numpy releases the GIL, and results never depend on the number of threads.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

ArrayLike = pa.Array | pa.ChunkedArray
_T = TypeVar("_T")
_R = TypeVar("_R")


def as_string_array(values: ArrayLike | Sequence[str | None]) -> pa.Array:
    """One contiguous ``string`` or ``large_string`` array (nulls kept)."""
    if isinstance(values, pa.ChunkedArray):
        arr = pa.concat_arrays(values.chunks) if values.num_chunks else pa.array([], type=values.type)
    elif isinstance(values, pa.Array):
        arr = values
    else:
        arr = pa.array(list(values), type=pa.string())
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        return arr
    if pa.types.is_null(arr.type) or pa.types.is_string_view(arr.type):
        return arr.cast(pa.string())
    raise TypeError(f"expected an array of strings, got {arr.type}")


def bool_mask(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A boolean Arrow result as a numpy bool array, nulls read as False."""
    if isinstance(values, pa.ChunkedArray):
        values = pa.concat_arrays(values.chunks) if values.num_chunks else pa.array([], pa.bool_())
    return np.asarray(values.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)


def replace_rows(arr: pa.Array, rows: np.ndarray, replacements: pa.Array) -> pa.Array:
    """``arr`` with the rows flagged in the bool mask ``rows`` taken, in order, from ``replacements``."""
    if not rows.any():
        return arr
    if rows.all():
        return replacements.cast(arr.type)
    return pc.replace_with_mask(arr, pa.array(rows), replacements.cast(arr.type))


def bytes_and_offsets(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The UTF-8 bytes of a string array and its row offsets into them (int64, n + 1).

    Null rows read as empty strings. Nothing is copied unless a null slot spans bytes (Arrow
    allows that, though its kernels do not produce it).
    """
    n = len(arr)
    if n == 0:
        return np.empty(0, np.uint8), np.zeros(1, np.int64)
    bufs = arr.buffers()
    otype = np.dtype(np.int64 if pa.types.is_large_string(arr.type) else np.int32)
    offsets = np.frombuffer(bufs[1], dtype=otype, count=n + 1, offset=arr.offset * otype.itemsize)
    offsets = offsets.astype(np.int64)
    if arr.null_count and np.diff(offsets)[~valid_rows(arr)].any():
        return bytes_and_offsets(arr.fill_null(""))
    data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None and bufs[2].size else np.empty(0, np.uint8)
    return data, offsets


def valid_rows(arr: pa.Array) -> np.ndarray:
    """Per row: not null."""
    if arr.null_count == 0:
        return np.ones(len(arr), bool)
    return bool_mask(arr.is_valid())


# Threads for the numpy-heavy steps (None: the CPUs this process may use, at most 4). numpy releases
# the GIL in its loops, and each thread works on its own rows; results never depend on this.
THREADS: int | None = None


def _available_cpus() -> int:
    try:
        return min(4, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return min(4, os.cpu_count() or 1)


def parallel_map(fn: Callable[[_T], _R], items: Sequence[_T], parallel: bool = True) -> list[_R]:
    """``[fn(x) for x in items]``, on up to :data:`THREADS` threads (one if not ``parallel``)."""
    workers = min(len(items), THREADS or _available_cpus()) if parallel else 1
    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(fn, items))
    return [fn(item) for item in items]


def row_chunks(offsets: np.ndarray, max_bytes: int = 1 << 23, max_rows: int = 1 << 15) -> Iterator[tuple[int, int]]:
    """Consecutive row ranges of at most ``max_rows`` rows and about ``max_bytes`` bytes (at least one row)."""
    n = len(offsets) - 1
    lo = 0
    while lo < n:
        hi = min(n, lo + max_rows)
        fit = int(np.searchsorted(offsets, offsets[lo] + max_bytes, side="right")) - 1
        hi = max(lo + 1, min(hi, fit))
        yield lo, hi
        lo = hi


def runs_within_rows(flag: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) of each maximal run of True in ``flag`` that stays within one row.

    ``offsets`` are the rows' byte offsets into ``flag`` (starting at 0, n + 1 of them).
    """
    size = len(flag)
    if size == 0:
        empty = np.empty(0, np.int64)
        return empty, empty
    change = np.empty(size + 1, bool)
    change[0] = flag[0]
    np.not_equal(flag[1:], flag[:-1], out=change[1:size])
    change[size] = flag[-1]
    pos = np.flatnonzero(change)
    # a run that spans a row boundary is cut there: insert an end and a start at the boundary
    inner = offsets[1:-1]
    inner = inner[(inner > 0) & (inner < size)]
    if inner.size:
        inner = inner[np.r_[True, inner[1:] != inner[:-1]]]
        inner = inner[flag[inner] & flag[inner - 1]]
        if inner.size:
            pos = np.sort(np.concatenate([pos, inner, inner]), kind="stable")  # a merge of sorted runs
    return pos[0::2], pos[1::2]


def string_array_from_pieces(pieces: list[np.ndarray], lengths: list[np.ndarray], type_: pa.DataType,
                 valid: np.ndarray | None = None) -> pa.Array:
    """A string array from per-chunk byte arrays and row lengths (``valid``: False rows are null)."""
    data = np.concatenate(pieces) if pieces else np.empty(0, np.uint8)
    row_lengths = np.concatenate(lengths) if lengths else np.empty(0, np.int64)
    large = pa.types.is_large_string(type_)
    offsets = np.zeros(len(row_lengths) + 1, np.int64 if large else np.int32)
    np.cumsum(row_lengths, out=offsets[1:])
    cls = pa.LargeStringArray if large else pa.StringArray
    if valid is None or valid.all():
        return cls.from_buffers(len(row_lengths), pa.py_buffer(offsets), pa.py_buffer(data))
    bitmap = pa.py_buffer(np.packbits(valid, bitorder="little"))
    return cls.from_buffers(len(row_lengths), pa.py_buffer(offsets), pa.py_buffer(data), bitmap,
                            int(len(valid) - valid.sum()))
