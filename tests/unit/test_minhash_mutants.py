"""MinHash signatures, pinned to their values.

The docstring of ``minhash_signatures`` promises that a text's signature depends only on the text
and the parameters: the same in any batch, chunk, process, machine or numpy version. Mutation
testing (tools/mutation.py, scope "dedup") showed that no test would notice a changed hash (a
shift, a multiplier, a mask, the long-row path), since any good hash keeps the statistical
properties the other tests check. These values pin the hash itself; change them only together
with a deliberate change of the signatures' definition.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pytest

from sluice.core.data.cleaning.minhash import minhash_signatures

# words of 1 to 26 bytes (hashed 8 bytes at a time), multi-byte letters, upper case to fold
VOCABULARY = ["a", "weir", "lockkeeper", "towpathbridges", "Überschwemmungsgebiet", "ÉCLUSE", "水門", "x_y_z9",
              "abcdefghijklmnopqrstuvwxyz", "ok"]


def _text(words: int, step: int) -> str:
    return " ".join(VOCABULARY[(i * step + 3) % len(VOCABULARY)] for i in range(words))


# rows without words, shorter than a shingle, ordinary, and with more than 512 and 16384 shingles
# (rows that long are hashed one at a time, in slices of shingles)
ROWS = ["", "one", "Two Words", "the sluice gate opens at dawn", _text(40, 7), _text(600, 3), _text(17_000, 7),
        None, "...", _text(3, 1)]


@pytest.mark.parametrize(("params", "digest"), [
    ({}, "c571805e45c6cbf7"),
    ({"num_perm": 3, "shingle_words": 1, "seed": 9}, "57cb484825768132"),
    ({"num_perm": 16, "shingle_words": 9, "seed": 2}, "d1776f4520b3e635"),  # more words per shingle than multipliers
    ({"num_perm": 8, "shingle_words": 2}, "9656d8b2733ab74f"),
], ids=["defaults", "words", "nine-word-shingles", "pairs"])
def test_signatures_keep_their_values(params: dict, digest: str) -> None:
    signatures = minhash_signatures(pa.array(ROWS), **params)
    assert hashlib.sha256(signatures.tobytes()).hexdigest()[:16] == digest


def test_short_signatures_by_value() -> None:
    texts = ["the sluice gate opens at dawn", "abcdefghijklmnop", "abcdefghijklmnopqrstuvwx"]  # words of 16, 24 bytes
    assert minhash_signatures(pa.array(texts), num_perm=4).tolist() == [
        [324581641, 245559716, 1079860821, 1486587997], [1182540334, 829643390, 1012777622, 1881079622],
        [3119894825, 721873665, 2751321077, 1325260701]]


def test_a_chunk_without_words_or_with_one_word_changes_nothing() -> None:
    alone = minhash_signatures(pa.array(["gate lock weir", "one"]))
    # 32,768 rows make a chunk of their own: here one without a single word, before the others
    after_empty_chunk = minhash_signatures(pa.array([""] * (1 << 15) + ["gate lock weir"]))
    assert (after_empty_chunk[-1] == alone[0]).all()
    assert (minhash_signatures(pa.array(["one"]))[0] == alone[1]).all()  # a batch of a single word


def test_parameters_are_checked() -> None:
    with pytest.raises(ValueError, match="^num_perm must be at least 1$"):
        minhash_signatures(pa.array(["a"]), num_perm=0)
    with pytest.raises(ValueError, match="^shingle_words must be at least 1$"):
        minhash_signatures(pa.array(["a"]), shingle_words=0)
    assert minhash_signatures(pa.array([], pa.string())).shape == (0, 64)
    assert (minhash_signatures(pa.array(["a b"]), num_perm=1, shingle_words=1) != np.uint32(0xFFFFFFFF)).all()


@pytest.mark.parametrize("length", [8, 9, 16, 17])
def test_every_byte_of_a_word_counts(length: int) -> None:
    # words are hashed 8 bytes at a time: the last byte of each length must still count
    word = "abcdefghijklmnopq"[:length]
    changed = word[:-1] + "z"
    signatures = minhash_signatures(pa.array([f"the {word} gate", f"the {changed} gate"]))
    assert not (signatures[0] == signatures[1]).all()


def test_a_batch_of_only_empty_texts_has_no_shingles() -> None:
    assert (minhash_signatures(pa.array(["", None, ""])) == np.uint32(0xFFFFFFFF)).all()
