"""64-bit hashes of word n-grams of normalised text, for a whole batch of texts at once.

Python-level shingling (split, join five words, hash each string) runs at ~30,000 paragraphs a second
on one core and is the real limit of MinHash in Python. Here a batch of normalised texts is joined
into one byte buffer and every n-gram hash is computed with a handful of numpy operations:

- a prefix sum G[i] = sum_{j<i} byte[j] * P^j (mod 2^64) over the buffer;
- the n-gram spanning bytes [s, e) hashes to (G[e] - G[s]) * P^-s = sum_t byte[s+t] * P^t, a
  polynomial in its own bytes only, so the same words hash alike wherever they occur (P is odd,
  hence invertible mod 2^64);
- then MurmurHash3's 64-bit finaliser spreads the bits.

All arithmetic is unsigned 64-bit wrap-around, identical on every machine and process. A polynomial
modulo 2^64 can be made to collide by adversarial strings thousands of bytes long (Thue-Morse); the
spans hashed here are at most a few hundred bytes of natural text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_P = 0x100000001B3  # the 64-bit FNV prime: odd, so it has an inverse modulo 2^64
_P_INV = pow(_P, -1, 1 << 64)
_SPACE = 32


def _powers(base: int, n: int) -> np.ndarray:
    out = np.empty(n, dtype=np.uint64)
    out[0] = 1
    k = 1
    while k < n:  # doubling: out[k:2k] = out[:k] * base^k
        m = min(k, n - k)
        np.multiply(out[:m], np.uint64(pow(base, k, 1 << 64)), out=out[k : k + m])
        k += m
    return out


class _PowerTable:
    """P^i and P^-i for i < size, grown on demand. Replaced whole, so concurrent readers are safe."""

    def __init__(self) -> None:
        self.tables = (_powers(_P, 1 << 16), _powers(_P_INV, 1 << 16))

    def get(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        pw, inv = self.tables
        if pw.size < n:
            size = 1 << max(n - 1, 1).bit_length()
            pw, inv = _powers(_P, size), _powers(_P_INV, size)
            self.tables = (pw, inv)
        return pw, inv


_TABLES = _PowerTable()


def fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser, elementwise (returns a new uint64 array)."""
    h = h.astype(np.uint64, copy=True)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xC4CEB93FE53A85ED)
    h ^= h >> np.uint64(33)
    return h


def text_hash(normalized: bytes) -> int:
    """Hash of a whole normalised text: equal to its n-gram hash when it has exactly n words."""
    if not normalized:
        raise ValueError("empty text has no hash")
    pw, _ = _TABLES.get(len(normalized))
    arr = np.frombuffer(normalized, dtype=np.uint8).astype(np.uint64)
    return int(fmix64(np.array([np.sum(arr * pw[: arr.size], dtype=np.uint64)]))[0])


@dataclass(frozen=True, eq=False)  # numpy fields: identity, not elementwise, equality
class WordSpans:
    """Word boundaries and prefix hashes of a batch of normalised texts (see `normalize_bytes`)."""

    n_texts: int
    word_counts: np.ndarray  # int64, words per text
    prefix: np.ndarray  # uint64, G[i] over the joined buffer, length buffer + 1
    word_start: np.ndarray  # int64 byte offset of each word in the buffer
    word_end: np.ndarray  # int64 byte offset one past each word
    text_of_word: np.ndarray  # int64 text index of each word
    first_word: np.ndarray  # int64 index of the first word of each word's text

    @classmethod
    def of(cls, normalized: Sequence[bytes]) -> WordSpans:
        """Index a batch; every text must be normalised (single spaces, none leading or trailing)."""
        counts = np.fromiter((t.count(b" ") + 1 if t else 0 for t in normalized), np.int64, len(normalized))
        buf = b" ".join(t for t in normalized if t)
        arr = np.frombuffer(buf, dtype=np.uint8)
        pw, _ = _TABLES.get(arr.size + 1)
        prefix = np.zeros(arr.size + 1, dtype=np.uint64)
        np.cumsum(arr.astype(np.uint64) * pw[: arr.size], out=prefix[1:])
        spaces = np.flatnonzero(arr == _SPACE)
        n_words = int(counts.sum())
        if n_words and (n_words != spaces.size + 1 or arr[0] == _SPACE or arr[-1] == _SPACE or (np.diff(spaces) == 1).any()):
            raise ValueError("texts are not normalised (double, leading or trailing spaces)")
        starts = np.empty(n_words, dtype=np.int64)
        ends = np.empty(n_words, dtype=np.int64)
        if n_words:
            starts[0], ends[-1] = 0, arr.size
            starts[1:] = spaces + 1
            ends[:-1] = spaces
        text_of_word = np.repeat(np.arange(len(normalized), dtype=np.int64), counts)
        first = (np.cumsum(counts) - counts)[text_of_word]
        return cls(len(normalized), counts, prefix, starts, ends, text_of_word, first)

    def ngram_starts(self, n: int, *, short_as_one: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Word index of the first word of every n-gram, and offsets of each text's n-grams (n_texts + 1).

        The n-grams of text i are entries offsets[i]:offsets[i + 1], in word order. A text with fewer
        than n words (but at least one) has one n-gram, all its words, when `short_as_one`, none
        otherwise; a blank text has none.
        """
        if n < 1:
            raise ValueError("n must be >= 1")
        local = np.arange(self.text_of_word.size, dtype=np.int64) - self.first_word
        count = self.word_counts[self.text_of_word]
        valid = local <= count - n
        if short_as_one:
            valid |= (count < n) & (local == 0)
        starts = np.flatnonzero(valid)
        offsets = np.zeros(self.n_texts + 1, dtype=np.int64)
        np.cumsum(np.bincount(self.text_of_word[starts], minlength=self.n_texts), out=offsets[1:])
        return starts, offsets

    def hashes_at(self, starts: np.ndarray, n: int) -> np.ndarray:
        """Hashes of the n words from each start word, cut at the end of its text."""
        last = np.minimum(starts + (n - 1), self.first_word[starts] + self.word_counts[self.text_of_word[starts]] - 1)
        return self.span_hashes(self.word_start[starts], self.word_end[last])

    def ngrams(self, n: int, *, short_as_one: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Hashes of every word n-gram, grouped by text: (uint64 hashes, int64 offsets of n_texts + 1).

        The hashes of text i are hashes[offsets[i]:offsets[i + 1]], in word order (repeats kept); see
        `ngram_starts` for short and blank texts.
        """
        starts, offsets = self.ngram_starts(n, short_as_one=short_as_one)
        return self.hashes_at(starts, n), offsets

    def ends_within_text(self, starts: np.ndarray, n: int) -> np.ndarray:
        """Whether n words from each start word stay inside its text."""
        return starts + (n - 1) < self.first_word[starts] + self.word_counts[self.text_of_word[starts]]

    def whole(self) -> np.ndarray:
        """Hash of each whole text (uint64; 0 for a blank text), equal to `text_hash`."""
        out = np.zeros(self.n_texts, dtype=np.uint64)
        rows = np.flatnonzero(self.word_counts > 0)
        first = (np.cumsum(self.word_counts) - self.word_counts)[rows]
        out[rows] = self.span_hashes(self.word_start[first], self.word_end[first + self.word_counts[rows] - 1])
        return out

    def span_hashes(self, start: np.ndarray, end: np.ndarray) -> np.ndarray:
        """Hashes of the byte spans [start, end) of the joined buffer."""
        _, inv = _TABLES.get(self.prefix.size)
        return fmix64((self.prefix[end] - self.prefix[start]) * inv[start])


def ngram_hashes(normalized: Sequence[bytes], n: int, *, short_as_one: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """`WordSpans.of(normalized).ngrams(n)`: n-gram hashes of a batch and their per-text offsets."""
    return WordSpans.of(normalized).ngrams(n, short_as_one=short_as_one)
