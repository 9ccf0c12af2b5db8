"""Token counts per text: :func:`count_tokens` (whitespace pieces, or a Hugging Face tokenizer)."""

from __future__ import annotations

import functools

import numpy as np
import pyarrow as pa

from sluice.core.data.cleaning.arrays import ArrayLike, as_string_array, bytes_and_offsets, parallel_map, row_chunks
from sluice.core.data.cleaning.characters import HSPACE, NEWLINE, multibyte_classes


def _whitespace_counts(arr: pa.Array) -> np.ndarray:
    """Whitespace-separated pieces per row, as ``str.split()`` counts them, over the raw bytes."""
    counts = np.zeros(len(arr), np.int32)
    data, offsets = bytes_and_offsets(arr)

    def count(bounds: tuple[int, int]) -> None:
        lo, hi = bounds
        base = offsets[lo]
        rel = offsets[lo:hi + 1] - base
        chunk = data[base:offsets[hi]]
        if chunk.size == 0:
            return
        # ASCII whitespace: \t \n \v \f \r, \x1c-\x1f and the space
        space = (chunk == 0x20) | ((chunk - np.uint8(0x09)) < 5) | ((chunk - np.uint8(0x1C)) < 4)
        lead, width, cls = multibyte_classes(chunk)
        if lead.size:  # Unicode whitespace: NEL, NBSP, U+1680, U+2000..U+200A, U+2028/9, U+202F, ...
            sel = (cls == HSPACE) | (cls == NEWLINE)
            lead, width = lead[sel], width[sel]
            space[lead] = True
            space[lead + 1] = True
            space[lead[width == 3] + 2] = True
        begins = np.empty(len(space), bool)  # a token starts where a non-space follows a space
        begins[0] = not space[0]
        np.greater(space[:-1], space[1:], out=begins[1:])
        first = rel[:-1][rel[1:] > rel[:-1]]  # ... or a row starts
        begins[first] = ~space[first]
        counts[lo:hi] = np.diff(np.searchsorted(np.flatnonzero(begins), rel))

    parallel_map(count, list(row_chunks(offsets, max_bytes=1 << 23, max_rows=1 << 16)))
    return counts


@functools.lru_cache(maxsize=4)
def _hf_tokenizer(name: str):  # type: ignore[no-untyped-def]
    from transformers import AutoTokenizer  # heavy; only when a model tokenizer is asked for

    return AutoTokenizer.from_pretrained(name)


def count_tokens(texts: ArrayLike, tokenizer: str = "whitespace") -> np.ndarray:
    """Tokens per text (int32); null → 0.

    ``"whitespace"``: the number of whitespace-separated pieces (as ``str.split()`` counts them,
    Unicode spaces included), computed with numpy over the raw bytes. Anything else is a Hugging
    Face tokenizer id or local directory, loaded once per process (``AutoTokenizer.from_pretrained``)
    and applied in batches without special tokens.
    """
    arr = as_string_array(texts)
    if len(arr) == 0:
        return np.zeros(0, np.int32)
    if tokenizer == "whitespace":
        return _whitespace_counts(arr)
    tok = _hf_tokenizer(tokenizer)
    counts = np.zeros(len(arr), np.int32)
    batch = 2048
    for lo in range(0, len(arr), batch):
        rows = [t or "" for t in arr.slice(lo, batch).to_pylist()]
        ids = tok(rows, add_special_tokens=False, return_attention_mask=False, return_token_type_ids=False,
                  verbose=False)["input_ids"]
        counts[lo:lo + len(rows)] = [len(x) for x in ids]
    return counts
