"""The text normalisation shared by exact dedup, near dedup and decontamination.

normalize("The <i>E. coli</i> K-12 strain, n=12!") -> "the e coli k 12 strain n 12"

1. NFKC (only for text with non-ASCII characters: ligatures, full-width forms, `²` -> `2`, `µ` -> `μ`);
2. lowercase;
3. every character that is neither a letter, a digit nor whitespace (punctuation, symbols, `_`)
   becomes a space, so `non-small-cell` and `non small cell` normalise alike and `p<0.05` keeps its
   tokens apart (`p 0 05`);
4. optionally, every run of ASCII digits becomes `0` (`digits_to_zero`). Off by default: biomedical
   paragraphs that differ only in their figures ("n = 12" vs "n = 48") are different results, and
   datatrove's number-to-0 rule would merge them;
5. whitespace runs collapse to one space, no leading or trailing space.

The result is returned as UTF-8 bytes by `normalize_bytes`, which is what the hashing code reads; it
is the fast path (ASCII punctuation is removed with `bytes.translate`, ~80,000 real paragraphs a
second on one core).
"""

from __future__ import annotations

import re
import string
import unicodedata

# ASCII punctuation (string.punctuation includes `_`) and control characters become a space; UTF-8
# multi-byte sequences never contain ASCII bytes, so translating the encoded bytes is safe.
_ASCII_OTHER = (string.punctuation + "".join(map(chr, range(32))) + "\x7f").encode()
_ASCII_TO_SPACE = bytes.maketrans(_ASCII_OTHER, b" " * len(_ASCII_OTHER))
# Non-ASCII characters that are not word characters: punctuation, symbols (en dash, curly quotes, `±`,
# `°`, `×`) and spaces (no-break, thin, zero-width). ASCII is left to the byte table above.
_NON_ASCII_NON_WORD = re.compile(r"[^\w\x00-\x7f]")
_DIGITS = re.compile(rb"[0-9]+")


def normalize_bytes(text: str, *, digits_to_zero: bool = False) -> bytes:
    """The normalised text as UTF-8 bytes: words separated by single spaces (b"" for blank text)."""
    if not text.isascii():
        text = _NON_ASCII_NON_WORD.sub(" ", unicodedata.normalize("NFKC", text).lower())
    else:
        text = text.lower()
    data = text.encode("utf-8").translate(_ASCII_TO_SPACE)
    if digits_to_zero:
        data = _DIGITS.sub(b"0", data)
    return b" ".join(data.split())


def normalize(text: str, *, digits_to_zero: bool = False) -> str:
    """The normalised text as a string (see the module docstring for the rules)."""
    return normalize_bytes(text, digits_to_zero=digits_to_zero).decode("utf-8")


def word_count(normalized: bytes) -> int:
    """Number of words in normalised bytes."""
    return normalized.count(b" ") + 1 if normalized else 0
