"""The dedup stage's steps: per batch, per bucket, per group and per connected-components round.

    paragraphs -> Features (normalise, fingerprint, MinHash, band keys, sentence hashes; batched)
      exact:    fingerprint -> group by -> groups of two or more
      near:     band key -> group by (a bucket) -> confirmed edges (components.bucket_edges on b-bit
                sketches) -> large-star / small-star rounds (two group-bys each) -> node -> smallest id
      sentence: sentence hash -> group by -> in >= N articles: its words count as boilerplate
      article:  article id -> group by with its version -> article body hash -> group by -> copies
      rank:     each membership joined with the member's keep key -> group by group -> sorted -> rank
    -> group by paragraph id -> one W/duplicates row

No step collects more than one key's values on one worker: a bucket, a group, a node's neighbours.
Every step depends on the elements' fields only, never on their order, so the output is the same
whatever the runner, the shard count or the input order.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam
import numpy as np

from pipeline.core.records import Duplicate, as_row
from pipeline.dedup.boilerplate import BoilerplateParams, is_boilerplate_group, sentence_hashes
from pipeline.dedup.components import bucket_edges, large_star, small_star
from pipeline.dedup.exact import article_hash, fingerprint
from pipeline.dedup.keep import keep_key
from pipeline.dedup.lsh import band_keys
from pipeline.dedup.minhash import MinHashParams, compact, signatures_of_normalized
from pipeline.dedup.normalize import normalize_bytes, word_count

STAGE = "dedup"
EXACT, NEAR, ARTICLE, SHARE = "exact", "near", "article", "share"


class Features(beam.DoFn):
    """A batch of paragraph dicts -> one feature dict per paragraph (signatures computed per batch)."""

    def __init__(self, near: MinHashParams | None, boilerplate: BoilerplateParams, digits_to_zero: bool) -> None:
        self.near, self.boilerplate, self.digits_to_zero = near, boilerplate, digits_to_zero

    def process(self, batch: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        texts = [p.get("text") or "" for p in batch]
        normalized = [normalize_bytes(t, digits_to_zero=self.digits_to_zero) for t in texts]
        keys = sketches = valid = None
        if self.near is not None:
            sigs, valid = signatures_of_normalized(normalized, self.near)
            keys = band_keys(sigs, self.near.bands, self.near.rows)
            sketches = compact(sigs, self.near.sketch_bits) if self.near.sketch_bits else sigs
        for i, p in enumerate(batch):
            data = normalized[i]
            near = keys is not None and valid is not None and bool(valid[i])
            yield {
                "id": p["id"], "article_id": p["article_id"], "path": p.get("path") or "",
                "n_chars": len(texts[i]), "n_words": word_count(data), "hash": fingerprint(data) if data else None,
                "bands": keys[i].tolist() if near and keys is not None else [],
                "sketch": sketches[i].tobytes() if near and sketches is not None else b"",
                "sentences": sentence_hashes(texts[i], self.boilerplate),
            }  # fmt: skip


def exact_members(kv: tuple[int, Iterable[str]]) -> Iterator[tuple[str, tuple[str, str]]]:
    """(fingerprint, ids) -> (id, (EXACT, group)) for groups of two or more."""
    ids = sorted(set(kv[1]))
    if len(ids) > 1:
        for pid in ids:
            yield pid, (EXACT, ids[0])


class BucketEdges(beam.DoFn):
    """(band key, [(id, sketch bytes)]) -> confirmed edges (member, smallest linked member)."""

    def __init__(self, params: MinHashParams) -> None:
        self.params = params

    def process(self, kv: tuple[int, Iterable[tuple[str, bytes]]]) -> Iterator[tuple[str, str]]:
        members = sorted(set(kv[1]))
        if len({m[0] for m in members}) < 2:
            return
        dtype = np.uint8 if self.params.sketch_bits else np.uint32
        sketches = np.stack([np.frombuffer(s, dtype=dtype) for _, s in members])
        yield from bucket_edges([m[0] for m in members], sketches, self.params.threshold, bits=self.params.sketch_bits)


def _undirected(edge: tuple[str, str]) -> tuple[str, str]:
    a, b = edge
    return (a, b) if a > b else (b, a)  # (larger, smaller)


def _both_ways(edge: tuple[str, str]) -> Iterator[tuple[str, str]]:
    yield edge
    yield edge[1], edge[0]


def _large(kv: tuple[str, Iterable[str]]) -> Iterator[tuple[str, str]]:
    for e in large_star(kv[0], kv[1]):
        yield _undirected(e)


def _small(kv: tuple[str, Iterable[str]]) -> Iterator[tuple[str, str]]:
    for e in small_star(kv[0], kv[1]):
        yield _undirected(e)


def _ends(edge: tuple[str, str]) -> Iterator[tuple[str, str]]:
    hi, lo = edge
    yield hi, "hi"
    yield lo, "lo"


def _not_a_star_centre(kv: tuple[str, Iterable[str]]) -> int:
    """1 when a node breaks the star-forest shape: several smaller neighbours, or both a smaller and a larger one."""
    roles = list(kv[1])
    his = roles.count("hi")
    return int(his > 1 or (his == 1 and "lo" in roles))


class Components(beam.PTransform):
    """Undirected edges -> (node, smallest node of its component), by `rounds` large-star/small-star rounds.

    Also returns the number of nodes still out of shape after the rounds (0 when the edges form stars,
    each centred on its component's smallest node: then the labels are exact).
    """

    def __init__(self, rounds: int) -> None:
        super().__init__()
        self.rounds = rounds

    def expand(self, edges: beam.PCollection) -> tuple[beam.PCollection, beam.PCollection]:
        current = edges | "Undirected" >> beam.Map(_undirected) | "Distinct" >> beam.Distinct()
        for r in range(self.rounds):
            large = (current | f"BothWays{r}" >> beam.FlatMap(_both_ways) | f"Around{r}" >> beam.GroupByKey()
                     | f"LargeStar{r}" >> beam.FlatMap(_large) | f"DistinctLarge{r}" >> beam.Distinct())  # fmt: skip
            current = (large | f"Below{r}" >> beam.GroupByKey() | f"SmallStar{r}" >> beam.FlatMap(_small)
                       | f"DistinctSmall{r}" >> beam.Distinct())  # fmt: skip
        labels = (current | "Labels" >> beam.FlatMap(lambda e: [(e[0], e[1]), (e[1], e[1])])
                  | "Smallest" >> beam.CombinePerKey(min))  # fmt: skip
        unconverged = (current | "Ends" >> beam.FlatMap(_ends) | "ByNode" >> beam.GroupByKey()
                       | "OutOfShape" >> beam.Map(_not_a_star_centre)
                       | "CountOutOfShape" >> beam.CombineGlobally(sum))  # fmt: skip
        return labels, unconverged


def article_join(kv: tuple[str, dict[str, list[Any]]]) -> Iterator[Any]:
    """(pmcid, {versions, paragraphs}) -> member rows (id, (article_id, path, version, n_chars)) and, tagged
    'body', (article body hash, (pmcid, version, characters, ids))."""
    pmcid, joined = kv
    versions = [v for v in joined["versions"] if v is not None]
    version = max(versions) if versions else None
    paragraphs = sorted(joined["paragraphs"])
    for pid, path, n_chars, _ in paragraphs:
        yield pid, (pmcid, path, version, n_chars)
    body = article_hash(h for *_, h in paragraphs)
    if body is not None:
        yield beam.pvalue.TaggedOutput("body", (body, (pmcid, version, sum(p[2] for p in paragraphs),
                                                       [p[0] for p in paragraphs])))  # fmt: skip


def article_copies(kv: tuple[int, Iterable[tuple[str, int | None, int, list[str]]]]) -> Iterator[tuple[str, tuple]]:
    """(body hash, articles) -> (paragraph id, (ARTICLE, group, rank, article_id)) for bodies published twice."""
    articles = sorted({a[0]: a for a in kv[1]}.values())
    if len(articles) < 2:
        return
    group = articles[0][0]
    ranked = sorted(articles, key=lambda a: keep_key(a[0], "", version=a[1], n_chars=a[2]))
    for rank, (pmcid, _, _, ids) in enumerate(ranked):
        for pid in ids:
            yield pid, (ARTICLE, group, rank, pmcid)


def keep_keys(kv: tuple[str, dict[str, list[Any]]]) -> Iterator[tuple[str, tuple]]:
    """(id, {member, score}) -> (id, (keep key, article_id))."""
    pid, joined = kv
    for article_id, path, version, n_chars in joined["member"]:
        scores = [s for s in joined.get("score", []) if s is not None]
        key = keep_key(article_id, path, version=version, educational_score=max(scores) if scores else None,
                       n_chars=n_chars, id=pid)  # fmt: skip
        yield pid, (key, article_id)


def group_members(kv: tuple[str, dict[str, list[Any]]]) -> Iterator[tuple[tuple[str, str], tuple]]:
    """(id, {key, groups}) -> ((kind, group), (keep key, id, article_id)) for each group of the paragraph."""
    pid, joined = kv
    for key, article_id in joined["key"][:1]:
        for kind, group in joined["groups"]:
            yield (kind, group), (key, pid, article_id)


def rank_group(kv: tuple[tuple[str, str], Iterable[tuple]]) -> Iterator[tuple[str, tuple]]:
    """((kind, group), members) -> (id, (kind, group, rank, size, articles, article_id)), rank 0 = kept."""
    (kind, group), members = kv
    ranked = sorted(members)
    n_articles = len({m[2] for m in ranked})
    for rank, (_, pid, article_id) in enumerate(ranked):
        yield pid, (kind, group, rank, len(ranked), n_articles, article_id)


class CommonSentences(beam.DoFn):
    """(sentence hash, [(id, article_id, words, paragraph words)]) -> (id, (words, paragraph words)) when the
    sentence occurs in enough articles."""

    def __init__(self, min_articles: int) -> None:
        self.min_articles = min_articles

    def process(self, kv: tuple[int, Iterable[tuple[str, str, int, int]]]) -> Iterator[tuple[str, tuple]]:
        occurrences = set(kv[1])
        if len({o[1] for o in occurrences}) >= self.min_articles:
            for pid, article_id, n, total in occurrences:
                yield pid, (n, total, article_id)


def share_of(kv: tuple[str, Iterable[tuple[int, int, str]]]) -> tuple[str, tuple]:
    pid, parts = kv
    parts = list(parts)
    total = parts[0][1]
    return pid, (SHARE, min(1.0, sum(p[0] for p in parts) / total) if total else 0.0, parts[0][2])


def duplicate_row(kv: tuple[str, Iterable[tuple]], params: BoilerplateParams) -> dict[str, Any]:
    """(id, its tagged facts) -> one Duplicate row."""
    pid, facts = kv
    by = {f[0]: f for f in sorted(facts, key=repr)}
    exact, near, article, share = by.get(EXACT), by.get(NEAR), by.get(ARTICLE), by.get(SHARE)
    main = near or exact
    article_id = next(f[-1] for f in by.values())
    bp_share = share[1] if share else 0.0
    group_bp = any(is_boilerplate_group(g[3], g[4], params) for g in (exact, near) if g)
    return as_row(Duplicate(
        id=pid, article_id=article_id,
        exact_group=exact[1] if exact else None, exact_rank=exact[2] if exact else None,
        near_group=near[1] if near else None, near_rank=near[2] if near else None,
        group_size=main[3] if main else 1, group_articles=main[4] if main else 1,
        boilerplate=group_bp or bp_share >= params.paragraph_share, boilerplate_share=round(bp_share, 4),
        article_group=article[1] if article else None, article_rank=article[2] if article else None,
    ))  # fmt: skip
