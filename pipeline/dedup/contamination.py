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
number and a bool rule per entry (13 bytes), plus the item ids. Membership is a binary search of the
batch's n-gram hashes. N-grams common across the corpus itself (boilerplate such as a funding
sentence a PubMedQA long answer happens to contain) are ignored: the stage counts, for each index
n-gram it meets, the paragraphs containing it (`hits` gives each paragraph's distinct hits), and
passes those over `max_corpus_df` as `ignore` to `matches` (`common_keys` picks them; `without`
removes them from an index in memory).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

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


@dataclass(frozen=True)
class Match:
    """A paragraph overlaps a benchmark item: by which rule, and through how many distinct n-grams."""

    benchmark: str
    item_id: str
    rule: str
    n_ngrams: int = 1


@dataclass(frozen=True)
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
        normalized = [normalize_bytes(t, digits_to_zero=self.params.digits_to_zero) for t in texts]
        spans = WordSpans.of(normalized)
        found_rows, found_keys = [], []
        for n in (self.params.ngram_words, *self.question_lengths):
            hashes, offsets = spans.ngrams(n, short_as_one=False)
            if hashes.size == 0 or self.keys.size == 0:
                continue
            pos = np.searchsorted(self.keys, hashes)
            hit = np.flatnonzero(self.keys[np.minimum(pos, self.keys.size - 1)] == hashes)
            if hit.size:
                found_rows.append(np.searchsorted(offsets, hit, side="right") - 1)
                found_keys.append(hashes[hit])
        out = [np.empty(0, dtype=np.uint64) for _ in texts]
        if found_rows:
            rows, keys = np.concatenate(found_rows), np.concatenate(found_keys)
            order = np.lexsort((keys, rows))
            rows, keys = rows[order], keys[order]
            starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
            for r, chunk in zip(rows[starts].tolist(), np.split(keys, starts[1:]), strict=True):
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
                                  self.question_lengths, self.benchmarks, self.item_ids, self.pmids)  # fmt: skip


def common_keys(document_frequency: Mapping[int, int] | Iterable[tuple[int, int]], max_df: int) -> np.ndarray:
    """Keys found in more than `max_df` paragraphs of the corpus (sorted uint64), to ignore."""
    pairs = document_frequency.items() if isinstance(document_frequency, Mapping) else document_frequency
    return np.array(sorted(int(k) for k, df in pairs if df > max_df), dtype=np.uint64)


def build_index(items: Iterable[BenchmarkItem], params: DecontamParams | None = None) -> ContaminationIndex:
    """Index the 13-grams of question + answer, and the whole short questions, of every item."""
    p = params or DecontamParams()
    items = list(items)
    keys, item_of, whole_of = [], [], []
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
        keys.append(q_spans.whole()[short])
        item_of.append(lo + short)
        whole_of.append(np.ones(short.size, dtype=bool))
    all_keys = np.concatenate(keys) if keys else np.empty(0, dtype=np.uint64)
    all_items = np.concatenate(item_of).astype(np.int32) if item_of else np.empty(0, dtype=np.int32)
    all_whole = np.concatenate(whole_of) if whole_of else np.empty(0, dtype=bool)
    # one entry per (key, item, rule): an item repeating an n-gram counts it once
    table = np.unique(np.rec.fromarrays([all_keys, all_items, all_whole], names="k,i,w"))
    pmids: dict[str, list[int]] = defaultdict(list)
    for i, it in enumerate(items):
        if it.pmid:
            pmids[it.pmid].append(i)
    return ContaminationIndex(
        params=p,
        keys=np.ascontiguousarray(table["k"], dtype=np.uint64),
        entry_item=np.ascontiguousarray(table["i"], dtype=np.int32),
        entry_whole=np.ascontiguousarray(table["w"], dtype=bool),
        question_lengths=tuple(sorted(lengths)),
        benchmarks=tuple(it.benchmark for it in items),
        item_ids=tuple(it.item_id for it in items),
        pmids={k: tuple(v) for k, v in pmids.items()},
    )
