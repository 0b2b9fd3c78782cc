"""Normalisation, exact fingerprints and n-gram hashes: the rules, and values fixed across processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.dedup.exact import article_hash, exact_hash
from pipeline.dedup.ngrams import WordSpans, ngram_hashes, text_hash
from pipeline.dedup.normalize import normalize, normalize_bytes, word_count

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The E. coli K-12 strain, n=12!", "the e coli k 12 strain n 12"),
        ("  many\t\tspaces \n and\r\nlines  ", "many spaces and lines"),
        ("non-small-cell vs non small cell", "non small cell vs non small cell"),
        ("p<0.05; (95% CI: 1.2–3.4)", "p 0 05 95 ci 1 2 3 4"),  # en dash, ASCII punctuation
        ("“Quoted” ‘text’ ± 5 °C × 2", "quoted text 5 c 2"),  # curly quotes and symbols
        ("ﬁbrosis of the CO₂ ＡＢＣ", "fibrosis of the co2 abc"),  # NFKC: ligature, subscript, full width
        ("no\u00a0break\u2009thin\u200bzero", "no break thin zero"),  # non-ASCII spaces
        ("ctrl\x1cchar\x00nul", "ctrl char nul"),
        ("snake_case_name", "snake case name"),
        ("Ärzte in Köln über Ödeme", "ärzte in köln über ödeme"),
        ("", ""),
        ("?!...", ""),
    ],
)
def test_normalize_rules(text: str, expected: str) -> None:
    assert normalize(text) == expected


def test_digits_kept_by_default_and_zeroed_on_request() -> None:
    assert normalize("n = 48 of 120 (40.0%)") == "n 48 of 120 40 0"
    assert normalize("n = 48 of 120 (40.0%)", digits_to_zero=True) == "n 0 of 0 0 0"
    assert exact_hash("n = 12 mice") != exact_hash("n = 48 mice")
    assert exact_hash("n = 12 mice", digits_to_zero=True) == exact_hash("n = 48 mice", digits_to_zero=True)


def test_ascii_and_unicode_paths_agree_on_ascii_punctuation() -> None:
    # The same ASCII sentence with one non-ASCII character appended takes the regex path: same words.
    ascii_text = "Results (n=5): p<0.01, see Fig. 2_b & [ref]."
    assert normalize(ascii_text + " é") == normalize(ascii_text) + " é"


def test_word_count() -> None:
    assert word_count(normalize_bytes("one, two; three")) == 3
    assert word_count(b"") == 0


def test_exact_hash_ignores_case_punctuation_and_spacing() -> None:
    a = exact_hash("Patients were followed for 12 months.")
    assert a == exact_hash("patients  were followed, for 12 months")
    assert a != exact_hash("Patients were followed for 13 months.")
    assert exact_hash(" ... ") is None
    assert -(2**63) <= a < 2**63


def test_article_hash_same_body_under_two_pmcids_in_any_order() -> None:
    body = ["Introduction text here.", "Methods: we did things.", "Results were good (n=3)."]
    first = article_hash(exact_hash(p) for p in body)
    second = article_hash(exact_hash(p) for p in reversed(body))  # the stage sees paragraphs in any order
    assert first == second is not None
    assert article_hash(exact_hash(p) for p in body[:2]) != first
    assert article_hash([None, None]) is None


def test_ngram_hashes_depend_on_the_words_only() -> None:
    texts = [normalize_bytes(t) for t in ["a b c d e f g", "", "x y", "zz b c d e f g a"]]
    hashes, offsets = ngram_hashes(texts, 5)
    assert offsets.tolist() == [0, 3, 3, 4, 8]
    assert hashes[0] == text_hash(b"a b c d e")
    assert hashes[1] == hashes[5] == text_hash(b"b c d e f")  # same words at another position of the buffer
    assert hashes[3] == text_hash(b"x y")  # a short text is one shingle of all its words
    _, offsets = ngram_hashes(texts, 5, short_as_one=False)
    assert offsets.tolist() == [0, 3, 3, 3, 7]
    assert (WordSpans.of(texts).whole()[[0, 2]] == [text_hash(texts[0]), text_hash(texts[2])]).all()
    assert WordSpans.of(texts).whole()[1] == 0


def test_ngram_hashes_reject_text_that_is_not_normalised() -> None:
    with pytest.raises(ValueError, match="not normalised"):
        WordSpans.of([b"a  b"])
    with pytest.raises(ValueError, match="not normalised"):
        WordSpans.of([b"a", b" b"])


def test_ngram_hashes_same_in_any_batch() -> None:
    texts = [normalize_bytes(f"word{i} common words shared by all texts here {i}") for i in range(50)]
    alone = [ngram_hashes([t], 5)[0] for t in texts]
    together, offsets = ngram_hashes(texts, 5)
    for i, h in enumerate(alone):
        assert np.array_equal(together[offsets[i] : offsets[i + 1]], h)


# Fixed values: if any of these changes, every stored fingerprint, band key and index becomes stale.
GOLDEN_TEXT = "Spironolactone lowered daytime systolic pressure by 9.8 mmHg more than placebo."


def _values() -> dict[str, object]:
    from pipeline.dedup.lsh import band_keys
    from pipeline.dedup.minhash import signatures

    sig, _ = signatures([GOLDEN_TEXT])
    return {
        "exact": exact_hash(GOLDEN_TEXT),
        "ngram": int(ngram_hashes([normalize_bytes(GOLDEN_TEXT)], 5)[0][0]),
        "sig": [int(x) for x in sig[0][:4]],
        "band": int(band_keys(sig, 16, 8)[0][0]),
    }


def test_fingerprints_are_the_same_in_another_process() -> None:
    code = "import json, tests.test_dedup_normalize as t; print(json.dumps(t._values()))"
    env = {"PYTHONPATH": str(REPO), "PYTHONHASHSEED": "12345", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == _values()


def test_fingerprints_have_their_recorded_values() -> None:
    assert _values() == GOLDEN


GOLDEN = {
    "exact": -7006490074324390108,
    "ngram": 6504656236193870373,
    "sig": [655925825, 3357205425, 3289311473, 1604153053],
    "band": 2811222260070576661,
}
