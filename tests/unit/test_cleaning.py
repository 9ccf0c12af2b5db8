"""Text-cleaning primitives: normalisation, PII redaction, content ids, MinHash
near-duplicates and token counts — checked against plain-Python references
where one is easy to state, and on the behaviour the ingest pipeline relies on."""

from __future__ import annotations

import os
import random
import re
import unicodedata

import numpy as np
import pyarrow as pa
import pytest
import xxhash

from sluice.core.data.cleaning import arrays, tokens
from sluice.core.data.cleaning.dedup import lsh_parameters, near_duplicates, stable_ids
from sluice.core.data.cleaning.minhash import minhash_signatures
from sluice.core.data.cleaning.pii import PII_PATTERNS, count_pii, redact_pii
from sluice.core.data.cleaning.text import normalize_text
from sluice.core.data.cleaning.tokens import count_tokens

# ---------------------------------------------------------------------------------------------
# normalize_text
# ---------------------------------------------------------------------------------------------


def _norm(values, **kwargs):
    return normalize_text(pa.array(values, pa.string()), **kwargs).to_pylist()


def test_nfc_composes_and_nfkc_also_folds_compatibility_characters():
    decomposed, ligature = "Cafe\u0301", "\ufb01ne"
    assert _norm([decomposed, ligature]) == ["Caf\u00e9", "\ufb01ne"]  # NFC: é composed, ligature kept
    assert _norm([decomposed, ligature], unicode_form="NFKC") == ["Caf\u00e9", "fine"]
    assert _norm(["\uff21\uff22"], unicode_form="NFKC") == ["AB"]  # full-width letters
    assert _norm([decomposed], unicode_form="NFD") == ["Cafe\u0301"]
    assert _norm([decomposed], unicode_form=None) == [decomposed]
    with pytest.raises(ValueError, match="unicode_form"):
        normalize_text(pa.array(["x"]), unicode_form="NFX")


@pytest.mark.parametrize(("raw", "clean"), [
    ("line one\r\nline two\rline three", "line one\nline two\nline three"),
    ("zero\u200bwidth\ufeff and\u200d joiner", "zerowidth and joiner"),
    ("tabs\t\tand   spaces\u00a0\u00a0nbsp", "tabs and spaces nbsp"),
    ("a\n\n\n\n\nb", "a\n\nb"),
    ("a\n\nb\nc", "a\n\nb\nc"),  # one or two newlines are kept as they are
    ("  padded \t\n", "padded"),
    ("bell\x07 and \x1b escape", "bell and escape"),
    ("space before \n and after\n  next", "space before\nand after\nnext"),
    ("a \r\n \r\n \r\n b", "a\n\nb"),
    ("em\u2003space and\u3000ideographic", "em space and ideographic"),
    ("para\u2028graph\x85next", "para\ngraph\nnext"),
    ("- item one\n- item two", "- item one\n- item two"),
    ("", ""),
    (" \t\u200b\n ", ""),
])
def test_whitespace_clean_up(raw, clean):
    assert _norm([raw]) == [clean]


def test_nulls_stay_null_and_clean_rows_pass_through():
    values = ["clean row", None, "dirty  row", None, "also clean"]
    assert _norm(values) == ["clean row", None, "dirty row", None, "also clean"]


def test_without_collapsing_runs_are_kept_but_line_breaks_and_invisibles_fixed():
    out = _norm(["  a \t b\r\n\r\n\r\nc\u200b  "], collapse_whitespace=False)
    assert out == ["a \t b\n\n\nc"]


_ALPHABET = ["a", "b", "é", "e\u0301", "\ufb01", " ", " ", "  ", "\t", "\n", "\r", "\r\n", "\x01", "\x0b",
             "\x0c", "\x7f", "\x85", "\x9b", "\u00a0", "\u2003", "\u3000", "\u200b", "\ufeff", "\u2028", "x."]


def _reference(text: str, form: str | None) -> str:
    """The documented behaviour, stated with Python's ``re``."""
    if form:
        text = unicodedata.normalize(form, text)
    text = re.sub(r"\r\n|[\r\x0b\x0c\x85\u2028\u2029]", "\n", text)
    text = re.sub(r"[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f\u200b-\u200d\u2060\ufeff]", "", text)
    text = re.sub(r"[ \t\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]+", " ", text)
    text = re.sub(r" ?\n ?", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip(" \n")


def _random_rows(clean_share: float, n: int = 3000) -> list[str | None]:
    rng = random.Random(7)
    rows: list[str | None] = []
    for i in range(n):
        if i % 97 == 0:
            rows.append(None)
        elif rng.random() < clean_share:
            rows.append("plain clean words here")
        else:
            rows.append("".join(rng.choice(_ALPHABET) for _ in range(rng.randint(0, 14))))
    return rows


@pytest.mark.parametrize("clean_share", [0.0, 0.9])  # mostly dirty rows, and mostly clean rows
@pytest.mark.parametrize("form", ["NFC", "NFKC"])
def test_matches_a_plain_python_reference_on_random_text(clean_share, form):
    rows = _random_rows(clean_share)
    got = normalize_text(pa.array(rows, pa.string()), unicode_form=form).to_pylist()
    assert got == [None if r is None else _reference(r, form) for r in rows]


def test_without_collapsing_matches_a_plain_python_reference():
    def reference(text: str) -> str:
        text = unicodedata.normalize("NFC", text)
        text = re.sub(r"\r\n|[\r\x0b\x0c\x85\u2028\u2029]", "\n", text)
        text = re.sub(r"[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f\u200b-\u200d\u2060\ufeff]", "", text)
        return text.strip()

    rows = _random_rows(0.5)
    got = normalize_text(pa.array(rows, pa.string()), collapse_whitespace=False).to_pylist()
    assert got == [None if r is None else reference(r) for r in rows]


def test_accepts_chunked_sliced_and_large_string_arrays():
    rows = ["x  y", "a\tb", "c\r\nd", " e "]
    expected = ["x y", "a b", "c\nd", "e"]
    chunked = pa.chunked_array([rows[:2], rows[2:]])
    assert normalize_text(chunked).to_pylist() == expected
    assert normalize_text(pa.array(rows).slice(1, 2)).to_pylist() == expected[1:3]
    large = normalize_text(pa.array(rows, pa.large_string()))
    assert large.type == pa.large_string() and large.to_pylist() == expected


# ---------------------------------------------------------------------------------------------
# PII
# ---------------------------------------------------------------------------------------------

PII_POSITIVES = [
    ("email", "john.doe@example.com"),
    ("email", "a_b+tag@mail.co.uk"),
    ("email", "X.Y-Z@sub-domain.example.io"),
    ("phone", "+44 20 7946 0958"),
    ("phone", "(555) 123-4567"),
    ("phone", "555-123-4567"),
    ("phone", "+1-202-555-0143"),
    ("phone", "+1 (202) 555-0143"),
    ("phone", "555.123.4567"),
    ("phone", "1-800-555-0199"),
    ("phone", "020 7946 0958"),
    ("phone", "07700 900123"),
    ("phone", "+442079460958"),
    ("phone", "+33 1 23 45 67 89"),
    ("credit_card", "4111 1111 1111 1111"),
    ("credit_card", "4111-1111-1111-1111"),
    ("credit_card", "4111111111111111"),
    ("credit_card", "5500 0000 0000 0004"),
    ("credit_card", "3782 822463 10005"),
    ("ip_address", "192.168.1.1"),
    ("ip_address", "10.0.0.255"),
    ("ip_address", "8.8.8.8"),
    ("ip_address", "255.255.255.255"),
]

PII_NEGATIVES = [
    "The sluice opens at 06:30 and closes at 21:15.",
    "The water stands at 193 centimetres.",
    "Boats up to 25 metres, built in 1999, refitted 2024.",
    "Upgrade to version 1.2.3 or 10.4.1 now",
    "4111 1111 1111 1112",  # 16 digits, fails the Luhn check
    "0000 0000 0000 0000",  # passes Luhn, but no card starts with 0
    "999.1.1.1",
    "256.10.10.10",
    "1.2.3.4.5",
    "Dated 2024-01-15, invoice 12345, total 1,234,567.89",
    "Order #123456789 shipped",
    "pi is 3.14159 and e is 2.71828",
    "555-123-4567-89",
    "room 101, floor 3, 10 30 45",
    "user at example dot com",
]


@pytest.mark.parametrize(("kind", "value"), PII_POSITIVES)
def test_pii_is_found_and_replaced_by_its_tag(kind, value):
    result = redact_pii(pa.array([f"reach me on {value}, thanks", "nothing here"]))
    tag = f"[{kind.upper()}]"
    assert result.values.to_pylist() == [f"reach me on {tag}, thanks", "nothing here"]
    assert result.counts[kind] == 1 and sum(result.counts.values()) == 1
    assert result.rows_with_pii.tolist() == [True, False]


@pytest.mark.parametrize("text", PII_NEGATIVES)
def test_ordinary_numbers_are_not_pii(text):
    result = redact_pii(pa.array([text]))
    assert result.values.to_pylist() == [text]
    assert sum(result.counts.values()) == 0 and not result.rows_with_pii.any()


def test_builtin_patterns_mean_the_same_in_re2_and_python():
    # candidates are found with RE2 and confirmed with Python's re: both must see the same spans
    import pyarrow.compute as pc

    samples = [v for _, v in PII_POSITIVES] + PII_NEGATIVES + ["x@y", "café 192.168.0.1 é", "\u00e9+44 20 7946 0958"]
    for name, pattern in PII_PATTERNS.items():
        in_re2 = pc.match_substring_regex(pa.array(samples), pattern).to_pylist()
        in_python = [re.search(pattern, s, re.ASCII) is not None for s in samples]
        assert in_re2 == in_python, name


def test_counts_per_type_several_matches_and_nulls():
    rows = ["mail a@b.com and c.d@e.org, call 555-123-4567", None, "server 10.1.2.3", "plain"]
    result = redact_pii(pa.array(rows))
    assert result.values.to_pylist() == ["mail [EMAIL] and [EMAIL], call [PHONE]", None, "server [IP_ADDRESS]",
                                         "plain"]
    assert result.counts == {"email": 2, "credit_card": 0, "ip_address": 1, "phone": 1}
    assert result.rows_with_pii.tolist() == [True, False, True, False]
    assert count_pii(pa.array(rows)).tolist() == [3, 0, 1, 0]
    assert count_pii(result.values).tolist() == [0, 0, 0, 0]  # nothing left after redaction


def test_digits_of_an_email_are_not_a_phone_number():
    result = redact_pii(pa.array(["write to 555-123-4567@example.com"]))
    assert result.values.to_pylist() == ["write to [EMAIL]"]


def test_extra_patterns_get_their_own_tag_and_count():
    rows = ["ticket TKT-1234 from a@b.com", "TKT-9 and TKT-10", "none"]
    result = redact_pii(pa.array(rows), {"ticket_id": r"TKT-[0-9]+"})
    assert result.values.to_pylist() == ["ticket [TICKET_ID] from [EMAIL]", "[TICKET_ID] and [TICKET_ID]", "none"]
    assert result.counts["ticket_id"] == 3 and result.counts["email"] == 1
    assert count_pii(pa.array(rows), {"ticket_id": r"TKT-[0-9]+"}).tolist() == [2, 2, 0]


def test_bad_extra_pattern_is_an_error_naming_it():
    with pytest.raises(ValueError, match="broken"):
        redact_pii(pa.array(["x"]), {"broken": "(unclosed"})
    with pytest.raises(ValueError, match="anything"):
        redact_pii(pa.array(["x"]), {"anything": "a*"})  # matches the empty string


def test_pii_candidates_among_many_rows():
    rows = ["filler text without digits"] * 5000
    rows[17] = "card 4111 1111 1111 1111"
    rows[4321] = "ip 172.16.0.9 and 06:30"
    result = redact_pii(pa.array(rows))
    assert np.flatnonzero(result.rows_with_pii).tolist() == [17, 4321]
    assert result.values[4321].as_py() == "ip [IP_ADDRESS] and 06:30"


# ---------------------------------------------------------------------------------------------
# stable_ids
# ---------------------------------------------------------------------------------------------


def test_stable_ids_are_xxh3_128_of_the_utf8_and_stable():
    rows = ["hello", "héllo", "", "hello "]
    ids = stable_ids(pa.array(rows)).to_pylist()
    assert ids == [xxhash.xxh3_128_hexdigest(r.encode("utf-8")) for r in rows]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert len(set(ids)) == len(rows)
    assert stable_ids(rows).to_pylist() == ids  # a plain sequence gives the same
    assert stable_ids(pa.chunked_array([rows[:1], rows[1:]])).to_pylist() == ids
    assert stable_ids(pa.array(["x"] + rows).slice(1)).to_pylist() == ids  # offset into the buffers
    assert stable_ids(pa.array(rows, pa.large_string())).to_pylist() == ids
    # pinned value: the same on every machine and run
    assert stable_ids(["sluicegate"]).to_pylist() == [xxhash.xxh3_128_hexdigest(b"sluicegate")]


def test_stable_ids_null_in_null_out():
    assert stable_ids(pa.array(["a", None, "b"])).to_pylist()[1] is None
    assert stable_ids([]).to_pylist() == []


# ---------------------------------------------------------------------------------------------
# MinHash and near duplicates
# ---------------------------------------------------------------------------------------------

_WORDS = ("canal lock gate keeper boat water level opens closes morning evening river bridge weir town "
          "mill stone iron oak willow north south barge tow path harbour quay sluice chamber paddle").split()


def _text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(_WORDS) + str(rng.randint(0, 99)) for _ in range(n))


def _jaccard(a: str, b: str, k: int = 3) -> float:
    def shingles(t: str) -> set[tuple[str, ...]]:
        w = re.findall(r"\w+", t.lower())
        return {tuple(w[i:i + k]) for i in range(len(w) - k + 1)}
    sa, sb = shingles(a), shingles(b)
    return len(sa & sb) / len(sa | sb)


def test_signatures_shape_dtype_and_identity():
    sig = minhash_signatures(pa.array(["the same text here", "the same text here", "other words entirely"]))
    assert sig.shape == (3, 64) and sig.dtype == np.uint32
    assert (sig[0] == sig[1]).all()
    assert (sig[0] == sig[2]).mean() < 0.2
    assert minhash_signatures(pa.array(["a b c"]), num_perm=16).shape == (1, 16)


def test_tokens_are_lower_case_words():
    sig = minhash_signatures(pa.array(["Hello, World! How are you?", "hello world how are you",
                                       "CAFÉ naïve—text here", "café naïve text here"]))
    assert (sig[0] == sig[1]).all()
    assert (sig[2] == sig[3]).all()


def test_empty_and_short_documents():
    sig = minhash_signatures(pa.array(["", None, "...!?", "hello", "hello", "world", "hello world",
                                       "world hello"]))
    top = np.iinfo(np.uint32).max
    assert (sig[:3] == top).all()  # no words: all max
    assert (sig[3] == sig[4]).all() and (sig[3] != top).all()
    assert (sig[3] == sig[5]).mean() < 0.2
    assert (sig[6] == sig[7]).mean() < 0.2  # one shingle of all the words, in order


def test_signatures_do_not_depend_on_the_batch_or_call():
    rng = random.Random(3)
    rows = [_text(rng, rng.randint(0, 12)) for _ in range(40000)]  # several internal chunks and groups
    rows[100] = rows[101] = "UPPER lower Mixed"
    batch = minhash_signatures(pa.array(rows))
    for i in (0, 99, 100, 101, 32767, 32768, 39999):
        alone = minhash_signatures(pa.array([rows[i]]))
        assert (alone[0] == batch[i]).all(), i
    again = minhash_signatures(pa.chunked_array([rows[:7], rows[7:]]))
    assert (again == batch).all()
    assert not (minhash_signatures(pa.array(rows[:50]), seed=2) == batch[:50]).all()


def test_results_do_not_depend_on_the_number_of_threads(monkeypatch):
    # enough rows for several chunks (normalize, count_tokens), row groups (minhash) and threaded bands
    def row(i: int) -> str:
        g = i // 3  # rows 3k+1 and 3k+2 differ from row 3k in their last word only
        return (f" gate {g}  lock\t{g * 7919 % 100_003} boat {g * 104_729 % 99_991} quay {g * 15_485_863 % 99_989}"
                f" weir {g * 32_452_843 % 99_971} opens {i % 3} ")

    rows = pa.array([row(i) for i in range(140_001)])
    results = []
    for threads in (1, 3):
        monkeypatch.setattr(arrays, "THREADS", threads)
        text = normalize_text(rows)
        sig = minhash_signatures(text)
        results.append((text, count_tokens(text), sig, near_duplicates(sig, 0.7)))
    (text1, tokens1, sig1, dup1), (text3, tokens3, sig3, dup3) = results
    assert text1.equals(text3) and text1[4].as_py() == " ".join(row(4).split())
    assert (tokens1 == tokens3).all() and (tokens1 == 12).all()
    assert (sig1 == sig3).all()
    assert not (sig1 == np.iinfo(np.uint32).max).all(axis=1).any()
    assert (sig1[-1] == minhash_signatures(text[-1:])[0]).all()
    assert (dup1 == dup3).all()
    assert (dup1[::3] == -1).all() and (dup1[1::3] >= 0).mean() > 0.9


def test_estimated_jaccard_tracks_the_true_one():
    rng = random.Random(11)
    errors = []
    for _ in range(60):
        base = _text(rng, 60).split()
        other = list(base)
        for i in rng.sample(range(60), rng.randint(1, 12)):
            other[i] = "changed" + str(rng.randint(0, 10**6))
        a, b = " ".join(base), " ".join(other)
        sig = minhash_signatures(pa.array([a, b]), num_perm=128)
        errors.append((sig[0] == sig[1]).mean() - _jaccard(a, b))
    errors = np.array(errors)
    assert abs(errors.mean()) < 0.03  # unbiased
    assert errors.std() < 0.06  # about sqrt(J(1-J)/128) ~ 0.04


def test_one_word_edit_is_a_near_duplicate_and_unrelated_text_is_not():
    rng = random.Random(5)
    original = _text(rng, 30)
    words = original.split()
    words[14] = "replaced"
    edited = " ".join(words)
    unrelated = _text(rng, 30)
    sig = minhash_signatures(pa.array([original, unrelated, edited, original.upper()]))
    assert near_duplicates(sig, 0.7).tolist() == [-1, -1, 0, 0]


def test_lsh_parameters_favour_recall():
    assert lsh_parameters(64, 0.7) == (12, 5)
    bands, rows = lsh_parameters(128, 0.8)
    assert bands * rows <= 128
    assert 1 - (1 - 0.9**rows) ** bands > 0.99  # pairs clearly above the threshold are found
    with pytest.raises(ValueError):
        lsh_parameters(64, 0.0)


def _chain_signatures() -> np.ndarray:
    """Row 1 ≈ row 0 (58/64 equal); row 2 ≈ row 1 (50/64) but not row 0 (44/64); row 3 ≈ row 0."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 2**31, 64, dtype=np.uint32)
    sig = np.tile(base, (5, 1))
    sig[1, 0:6] += 1
    sig[2, 0:6] += 1
    sig[2, 6:20] += 1
    sig[3, 63] += 1
    sig[4] = rng.integers(0, 2**31, 64, dtype=np.uint32)  # unrelated
    return sig


def test_duplicates_point_at_the_earliest_representative():
    sig = _chain_signatures()
    # row 2 matches row 1 only, and row 1 is itself a duplicate: so row 2 stays
    assert near_duplicates(sig, 0.7).tolist() == [-1, 0, -1, 0, -1]


def test_a_bucket_pairs_every_member_not_only_its_first():
    rng = np.random.default_rng(3)
    sig = rng.integers(0, 2**31, (3, 64), dtype=np.uint32)
    assert lsh_parameters(64, 0.7) == (12, 5)
    sig[1] = sig[0]
    sig[1, 30:] = rng.integers(2**31, 2**32, 34, dtype=np.uint64).astype(np.uint32)  # row 1 ~ row 0 on bands 0-5
    sig[2] = sig[1]
    sig[2, 30:60:5] += 1  # row 2 ~ row 1 everywhere but one position of each of bands 6-11 (58/64)
    assert near_duplicates(sig, 0.7).tolist() == [-1, -1, 1]


def test_rows_not_kept_are_ignored():
    sig = _chain_signatures()
    keep = np.array([False, True, True, True, True])
    assert near_duplicates(sig, 0.7, keep=keep).tolist() == [-1, -1, 1, 1, -1]
    assert near_duplicates(sig, 0.7, keep=np.zeros(5, bool)).tolist() == [-1] * 5
    with pytest.raises(ValueError):
        near_duplicates(sig, 0.7, keep=np.ones(3, bool))


def test_documents_without_words_are_never_duplicates():
    sig = minhash_signatures(pa.array(["", "...", None, "real words in a row", "real words in a row"]))
    assert near_duplicates(sig, 0.7).tolist() == [-1, -1, -1, -1, 3]


def test_many_distinct_rows_give_no_duplicates_quickly():
    rng = np.random.default_rng(1)
    sig = rng.integers(0, 2**32, (100_000, 64), dtype=np.uint64).astype(np.uint32)
    sig[99_999] = sig[12_345]
    sig[50_000] = sig[7]
    sig[50_000, :10] = 0  # 54/64 equal
    result = near_duplicates(sig, 0.7)
    assert np.flatnonzero(result >= 0).tolist() == [50_000, 99_999]
    assert result[50_000] == 7 and result[99_999] == 12_345


# ---------------------------------------------------------------------------------------------
# count_tokens
# ---------------------------------------------------------------------------------------------

_TOKEN_ALPHABET = ["word", "x", "é", " ", "  ", "\t", "\n", "\r\n", "\x1c", "\u00a0", "\u2003", "\u3000",
                   "\u200b", "\u2028", "\x85", ".,"]


def test_whitespace_tokens_match_str_split():
    rng = random.Random(9)
    rows = ["".join(rng.choice(_TOKEN_ALPHABET) for _ in range(rng.randint(0, 12))) for _ in range(3000)]
    rows += ["", "   ", "one", " lead", "trail ", "a  b\tc\nd"]
    got = count_tokens(pa.array(rows))
    assert got.dtype == np.int32
    assert got.tolist() == [len(r.split()) for r in rows]


def test_whitespace_tokens_with_nulls_slices_and_chunks():
    arr = pa.array(["skip me", "two words", None, "three words here"])
    assert count_tokens(arr).tolist() == [2, 2, 0, 3]
    assert count_tokens(arr.slice(1)).tolist() == [2, 0, 3]
    assert count_tokens(pa.chunked_array([arr[:2], arr[2:]])).tolist() == [2, 2, 0, 3]


def test_hugging_face_tokenizer_from_a_local_directory(tmp_path):
    os.environ["HF_HUB_OFFLINE"] = "1"
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(["the sluice opens at dawn", "the keeper closes the gate"],
                            trainers.WordLevelTrainer(special_tokens=["[UNK]", "[CLS]", "[SEP]"]))
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[
        ("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", cls_token="[CLS]",
                            sep_token="[SEP]").save_pretrained(tmp_path)

    rows = pa.array(["the sluice opens", "an unknown word, here!", None, ""] * 1500)  # several batches
    counts = count_tokens(rows, tokenizer=str(tmp_path))
    assert counts.dtype == np.int32
    assert counts[:4].tolist() == [3, 6, 0, 0]  # "," and "!" are tokens of their own
    with_special = PreTrainedTokenizerFast.from_pretrained(tmp_path)("the sluice opens")["input_ids"]
    assert len(with_special) == 5  # [CLS] and [SEP] are added by default, and not counted above
    assert counts.tolist() == counts[:4].tolist() * 1500
    assert tokens._hf_tokenizer.cache_info().currsize >= 1  # loaded once, then cached


def test_many_copies_of_one_text_are_handled_by_their_first_occurrence():
    rng = np.random.default_rng(2)
    sig = rng.integers(0, 2**32, (20_000, 64), dtype=np.uint64).astype(np.uint32)
    base = sig[100].copy()
    sig[5] = base
    sig[5, :8] += 1  # an earlier near copy (56/64): the representative of them all
    copies = np.arange(200, 20_000, 2)
    sig[copies] = base
    sig[100] = base
    keep = np.ones(len(sig), bool)
    keep[202] = False
    result = near_duplicates(sig, 0.7, keep=keep)
    assert result[5] == -1 and result[100] == 5
    assert (result[copies[copies != 202]] == 5).all() and result[202] == -1
    assert (result[np.setdiff1d(np.arange(1, 200, 2), [5])] == -1).all()
    sig[5] = rng.integers(0, 2**32, 64, dtype=np.uint64).astype(np.uint32)  # now the first copy leads
    result = near_duplicates(sig, 0.7, keep=keep)
    assert result[100] == -1 and (result[copies[copies != 202]] == 100).all()
