"""Benchmark contamination: which paragraphs overlap which benchmark items, and by which rule.

Rules (text normalised exactly as for exact dedup, `normalize_bytes`):

- `ngram`: the paragraph shares at least one word 13-gram with the item's question followed by its
  answer (the GPT-3 rule);
- `question`: the item's whole question, shorter than 13 words but at least `min_question_words`,
  occurs in the paragraph at word boundaries (MedMCQA questions average ~13 words, so a 13-gram rule
  alone misses most of them);
- `pmid`: a PubMedQA item names the PMID of the article it was built from; every paragraph of that
  article matches (`pmid_matches`).

The index is a compact Beam side input: one sorted uint64 array of n-gram hashes, an int32 item
number and a bool rule per entry (13 bytes), plus the item ids and the hashes of the short questions'
first `min_question_words` words. A paragraph is looked up with two passes over its words, whatever
the question lengths: its 13-grams, and its `min_question_words`-grams against the question
prefixes; only where a prefix matches are the longer spans hashed and looked up. Each lookup first
reads one bit of a filter built on the worker (16 bits per key: ~5% false positives, not pickled),
and binary-searches the sorted keys only for the few that pass. N-grams common across the corpus itself (boilerplate such as a funding
sentence a PubMedQA long answer happens to contain) are ignored: the stage counts, for each index
n-gram it meets, the paragraphs containing it (`hits` gives each paragraph's distinct hits), and
passes those over `max_corpus_df` as `ignore` to `matches` (`common_keys` picks them; `without`
removes them from an index in memory).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from pipeline.core.errors import ConfigError
from pipeline.dedup.benchmarks import BenchmarkItem
from pipeline.dedup.ngrams import WordSpans
from pipeline.dedup.normalize import normalize_bytes

RULE_NGRAM = "ngram"
RULE_QUESTION = "question"
RULE_PMID = "pmid"
_BUILD_BATCH = 4096


@dataclass(frozen=True)
class DecontamParams:
    """Decontamination settings; the stage's flags map one-to-one onto these fields."""

    ngram_words: int = 13  # the GPT-3 rule
    min_question_words: int = 5  # a 3-word question ("Function of ferritin") would match ordinary text
    max_corpus_df: int = 100  # an index n-gram found in more paragraphs of the corpus is boilerplate
    digits_to_zero: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.min_question_words <= self.ngram_words:
            raise ConfigError(f"min_question_words must be between 1 and ngram_words ({self.ngram_words}), got {self.min_question_words}")
        if self.max_corpus_df < 1:
            raise ConfigError(f"max_corpus_df must be at least 1, got {self.max_corpus_df}")


@dataclass(frozen=True)
class Match:
    """A paragraph overlaps a benchmark item: by which rule, and through how many distinct n-grams."""

    benchmark: str
    item_id: str
    rule: str
    n_ngrams: int = 1


@dataclass(frozen=True, eq=False)  # numpy fields: identity, not elementwise, equality
class ContaminationIndex:
    """The benchmark n-grams of every item, sorted for binary search. Build with `build_index`."""

    params: DecontamParams
    keys: np.ndarray  # uint64, sorted; one entry per (n-gram, item)
    entry_item: np.ndarray  # int32 item number of each entry
    entry_whole: np.ndarray  # bool: the entry is a whole question, not a 13-gram
    question_lengths: tuple[int, ...]  # word counts of the whole questions indexed
    benchmarks: tuple[str, ...]  # benchmark name of each item
    item_ids: tuple[str, ...]
    pmids: Mapping[str, tuple[int, ...]] = field(default_factory=dict)  # PMID -> item numbers
    prefix_keys: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.uint64))  # sorted, unique

    def __getstate__(self) -> dict[str, Any]:
        # the filters are rebuilt where the index is used, not shipped with the side input
        return {k: v for k, v in self.__dict__.items() if k not in ("_key_filter", "_prefix_filter")}

    @cached_property
    def _key_filter(self) -> KeyFilter:
        return KeyFilter(self.keys)

    @cached_property
    def _prefix_filter(self) -> KeyFilter:
        return KeyFilter(self.prefix_keys)

    @property
    def nbytes(self) -> int:
        """Bytes of the entry arrays (the bulk of the side input)."""
        return self.keys.nbytes + self.entry_item.nbytes + self.entry_whole.nbytes

    def describe(self) -> dict[str, object]:
        """Counts for the stage summary: entries, items per benchmark, bytes."""
        per: dict[str, int] = defaultdict(int)
        for b in self.benchmarks:
            per[b] += 1
        return {"entries": int(self.keys.size), "whole_questions": int(self.entry_whole.sum()), "items": dict(per),
                "pmids": len(self.pmids), "entry_bytes": self.nbytes}  # fmt: skip

    def hits(self, texts: Sequence[str]) -> list[np.ndarray]:
        """For each raw text, the distinct index keys it contains (sorted uint64; usually empty)."""
        p = self.params
        spans = WordSpans.of([normalize_bytes(t, digits_to_zero=p.digits_to_zero) for t in texts])
        starts, _ = spans.ngram_starts(p.ngram_words, short_as_one=False)
        hashes = spans.hashes_at(starts, p.ngram_words)
        found = _lookup(self.keys, self._key_filter, hashes)
        found_rows, found_keys = [spans.text_of_word[starts[found]]], [hashes[found]]
        if self.question_lengths:
            starts, _ = spans.ngram_starts(p.min_question_words, short_as_one=False)
            prefixes = spans.hashes_at(starts, p.min_question_words)
            candidates = starts[_lookup(self.prefix_keys, self._prefix_filter, prefixes)]
            for k in self.question_lengths:
                at = candidates[spans.ends_within_text(candidates, k)]
                hashes = spans.hashes_at(at, k)
                found = _lookup(self.keys, self._key_filter, hashes)
                found_rows.append(spans.text_of_word[at[found]])
                found_keys.append(hashes[found])
        rows, keys = np.concatenate(found_rows), np.concatenate(found_keys)
        out = [np.empty(0, dtype=np.uint64) for _ in texts]
        if rows.size:
            order = np.lexsort((keys, rows))
            rows, keys = rows[order], keys[order]
            first = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
            for r, chunk in zip(rows[first].tolist(), np.split(keys, first[1:]), strict=True):
                out[r] = np.unique(chunk)
        return out

    def matches(self, keys: np.ndarray, *, ignore: np.ndarray | None = None) -> list[Match]:
        """The items a paragraph's hit keys (from `hits`) point to, minus the `ignore`d keys."""
        if ignore is not None and ignore.size and keys.size:
            keys = keys[~np.isin(keys, ignore)]
        counts: dict[tuple[int, bool], int] = defaultdict(int)
        for k in keys:
            lo, hi = np.searchsorted(self.keys, k, side="left"), np.searchsorted(self.keys, k, side="right")
            for item, whole in zip(self.entry_item[lo:hi].tolist(), self.entry_whole[lo:hi].tolist(), strict=True):
                counts[(item, whole)] += 1
        return sorted(
            (Match(self.benchmarks[i], self.item_ids[i], RULE_QUESTION if whole else RULE_NGRAM, c) for (i, whole), c in counts.items()),
            key=lambda m: (m.benchmark, m.item_id, m.rule),
        )

    def match_batch(self, texts: Sequence[str], *, ignore: np.ndarray | None = None) -> list[list[Match]]:
        """`matches` of every text of a batch."""
        return [self.matches(k, ignore=ignore) if k.size else [] for k in self.hits(texts)]

    def pmid_matches(self, pmid: str | None) -> list[Match]:
        """The items built from the article with this PMID (PubMedQA)."""
        if not pmid:
            return []
        return [Match(self.benchmarks[i], self.item_ids[i], RULE_PMID) for i in self.pmids.get(str(pmid).strip(), ())]

    def without(self, drop: np.ndarray | Iterable[int]) -> ContaminationIndex:
        """The same index without the given keys (e.g. `common_keys` of the corpus)."""
        drop = np.asarray(list(drop) if not isinstance(drop, np.ndarray) else drop, dtype=np.uint64)
        keep = ~np.isin(self.keys, drop)
        return ContaminationIndex(self.params, self.keys[keep], self.entry_item[keep], self.entry_whole[keep],
                                  self.question_lengths, self.benchmarks, self.item_ids, self.pmids, self.prefix_keys)  # fmt: skip


class KeyFilter:
    """A one-hash Bloom filter over uint64 hash keys: bit i is set when some key's top bits equal i.

    Keys are already uniform hashes, so their top bits index the bit array directly; with 16 bits per
    key about 5% of absent keys pass, and one memory read rejects the others.
    """

    def __init__(self, keys: np.ndarray, bits_per_key: int = 16) -> None:
        log2 = max(12, int(np.ceil(np.log2(max(1, keys.size) * bits_per_key))))
        self.shift = np.uint64(64 - log2)
        self.words = np.zeros(1 << (log2 - 6), dtype=np.uint64)
        index = keys >> self.shift
        np.bitwise_or.at(self.words, (index >> np.uint64(6)).astype(np.intp), np.uint64(1) << (index & np.uint64(63)))

    def maybe(self, hashes: np.ndarray) -> np.ndarray:
        """False where a hash is certainly not a key."""
        index = hashes >> self.shift
        bits = self.words[(index >> np.uint64(6)).astype(np.intp)] >> (index & np.uint64(63))
        return (bits & np.uint64(1)).astype(bool)


def _lookup(keys: np.ndarray, key_filter: KeyFilter, hashes: np.ndarray) -> np.ndarray:
    """Positions in `hashes` of the hashes present in the sorted `keys`."""
    candidates = np.flatnonzero(key_filter.maybe(hashes))
    if candidates.size == 0 or keys.size == 0:
        return candidates[:0]
    pos = np.minimum(np.searchsorted(keys, hashes[candidates]), keys.size - 1)
    return candidates[keys[pos] == hashes[candidates]]


def common_keys(document_frequency: Mapping[int, int] | Iterable[tuple[int, int]], max_df: int) -> np.ndarray:
    """Keys found in more than `max_df` paragraphs of the corpus (sorted uint64), to ignore."""
    pairs = document_frequency.items() if isinstance(document_frequency, Mapping) else document_frequency
    return np.array(sorted(int(k) for k, df in pairs if df > max_df), dtype=np.uint64)


def build_index(items: Iterable[BenchmarkItem], params: DecontamParams | None = None) -> ContaminationIndex:
    """Index the 13-grams of question + answer, and the whole short questions, of every item."""
    p = params or DecontamParams()
    items = list(items)
    keys, item_of, whole_of, prefixes = [], [], [], []
    lengths: set[int] = set()
    for lo in range(0, len(items), _BUILD_BATCH):
        batch = items[lo : lo + _BUILD_BATCH]
        questions = [normalize_bytes(it.question, digits_to_zero=p.digits_to_zero) for it in batch]
        answers = [normalize_bytes(it.answer, digits_to_zero=p.digits_to_zero) for it in batch]
        spans = WordSpans.of([b" ".join(x for x in (q, a) if x) for q, a in zip(questions, answers, strict=True)])
        hashes, offsets = spans.ngrams(p.ngram_words, short_as_one=False)
        keys.append(hashes)
        item_of.append(lo + np.repeat(np.arange(len(batch), dtype=np.int64), np.diff(offsets)))
        whole_of.append(np.zeros(hashes.size, dtype=bool))
        q_spans = WordSpans.of(questions)
        short = np.flatnonzero((q_spans.word_counts >= p.min_question_words) & (q_spans.word_counts < p.ngram_words))
        lengths.update(q_spans.word_counts[short].tolist())
        first_words = (np.cumsum(q_spans.word_counts) - q_spans.word_counts)[short]
        prefixes.append(q_spans.hashes_at(first_words, p.min_question_words))
        keys.append(q_spans.whole()[short])
        item_of.append(lo + short)
        whole_of.append(np.ones(short.size, dtype=bool))
    all_keys = np.concatenate(keys) if keys else np.empty(0, dtype=np.uint64)
    all_items = np.concatenate(item_of).astype(np.int32) if item_of else np.empty(0, dtype=np.int32)
    all_whole = np.concatenate(whole_of) if whole_of else np.empty(0, dtype=bool)
    # one entry per (key, item, rule), sorted by key: an item repeating an n-gram counts it once
    order = np.lexsort((all_whole, all_items, all_keys))
    all_keys, all_items, all_whole = all_keys[order], all_items[order], all_whole[order]
    keep = np.ones(all_keys.size, dtype=bool)
    keep[1:] = (all_keys[1:] != all_keys[:-1]) | (all_items[1:] != all_items[:-1]) | (all_whole[1:] != all_whole[:-1])
    pmids: dict[str, list[int]] = defaultdict(list)
    for i, it in enumerate(items):
        if it.pmid:
            pmids[it.pmid].append(i)
    return ContaminationIndex(
        params=p,
        keys=all_keys[keep],
        entry_item=all_items[keep],
        entry_whole=all_whole[keep],
        question_lengths=tuple(sorted(lengths)),
        benchmarks=tuple(it.benchmark for it in items),
        item_ids=tuple(it.item_id for it in items),
        pmids={k: tuple(v) for k, v in pmids.items()},
        prefix_keys=np.unique(np.concatenate(prefixes)) if prefixes else np.empty(0, dtype=np.uint64),
    )
