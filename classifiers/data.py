"""Training data for the student: teacher annotations joined to paragraph text, split by article.

The split is a pure function of (article_id, seed): every paragraph of an article lands on the same
side, so the validation figures never reward memorising an article's vocabulary (the paper split its
39,800 held-out paragraphs from the teacher set; we make the unit of the split the article).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.core import storage
from pipeline.core.errors import ConfigError
from pipeline.core.labels import DOCUMENT_TYPES, DOMAINS, SCORE_MAX, SCORE_MIN
from pipeline.core.workdir import Workdir


@dataclass(frozen=True)
class Example:
    """One teacher-labelled paragraph, ready for the student."""

    id: str
    article_id: str
    text: str
    section_title: str | None
    document_type: int  # index into DOCUMENT_TYPES
    domain: int  # index into DOMAINS
    educational_score: float


def model_input(text: str, section_title: str | None) -> str:
    """The one string the student reads: section title, then the paragraph (as the teacher saw both).

    Defined once here so training, evaluation, propagation and uncertainty sampling cannot drift.
    """
    title = (section_title or "").strip()
    return f"{title}\n\n{text}" if title else text


def is_validation(article_id: str, seed: int, validation_fraction: float) -> bool:
    """Deterministic article-level split: hash(seed, article_id) mapped to [0, 1) below the fraction."""
    h = hashlib.sha256(f"{seed}:{article_id}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64 < validation_fraction


def split_by_article(
    examples: Sequence[Example], seed: int, validation_fraction: float, min_validation: int = 0,
    max_validation_share: float = 0.3,
) -> tuple[list[Example], list[Example]]:
    """(train, validation). Every article's paragraphs go to one side only.

    With very few articles the hash can put all of them on one side; then the article whose hash is
    smallest (resp. largest) is moved so that both sides are non-empty whenever there are >= 2 articles.
    `min_validation`: while the validation side has fewer paragraphs than this (and less than
    `max_validation_share` of all), the next article in hash order joins it: a few hundred labels then
    still give a validation set large enough to early-stop on, and many labels keep the plain fraction.
    """
    articles = sorted({e.article_id for e in examples})
    val_articles = {a for a in articles if is_validation(a, seed, validation_fraction)}
    if len(articles) >= 2 and validation_fraction > 0:
        keyed = sorted(articles, key=lambda a: hashlib.sha256(f"{seed}:{a}".encode()).digest())
        if not val_articles:
            val_articles = {keyed[0]}
        elif len(val_articles) == len(articles):
            val_articles.discard(keyed[-1])
        if min_validation > 0:
            size = {a: 0 for a in articles}
            for e in examples:
                size[e.article_id] += 1
            n_val = sum(size[a] for a in val_articles)
            cap = max_validation_share * len(examples)
            for a in keyed[:-1]:  # never the last article: training keeps at least one
                if n_val >= min_validation:
                    break
                if a not in val_articles and n_val + size[a] <= cap:
                    val_articles.add(a)
                    n_val += size[a]
    train = [e for e in examples if e.article_id not in val_articles]
    val = [e for e in examples if e.article_id in val_articles]
    return train, val


def _index(values: Iterable[str], classes: tuple[str, ...], column: str) -> list[int]:
    lookup = {c: i for i, c in enumerate(classes)}
    lookup.update({c.lower(): i for i, c in enumerate(classes)})
    out = []
    for v in values:
        i = lookup.get(v, lookup.get(str(v).lower()))
        if i is None:
            raise ConfigError(f"annotation {column}={v!r} is not in the label schema {classes}")
        out.append(i)
    return out


def load_examples(workdir: Workdir) -> list[Example]:
    """Annotations joined to their paragraphs' text and section title, ordered by id.

    Raises ConfigError when either table is missing or when no annotation matches a paragraph.
    """
    for table in ("annotations", "paragraphs"):
        if not workdir.has_table(table):
            raise ConfigError(f"no {table} table in {workdir.root}; run the stage that writes it first")
    con = storage.duckdb_connect()
    try:
        rows = con.sql(
            """
            SELECT a.id, p.article_id, p.text, p.section_title,
                   a.document_type, a.domain, a.educational_score
            FROM read_parquet($ann, union_by_name = true) a
            JOIN read_parquet($par, union_by_name = true) p USING (id)
            WHERE p.text IS NOT NULL AND length(trim(p.text)) > 0
            ORDER BY a.id
            """,
            params={"ann": workdir.glob("annotations"), "par": workdir.glob("paragraphs")},
        ).fetchall()
    finally:
        con.close()
    if not rows:
        raise ConfigError(
            f"no annotation in {workdir.annotations} matches a non-empty paragraph in {workdir.paragraphs}"
        )
    # An id annotated twice (re-runs with another prompt version) keeps its first row in id order.
    seen: set[str] = set()
    rows = [r for r in rows if not (r[0] in seen or seen.add(r[0]))]
    types = _index((r[4] for r in rows), DOCUMENT_TYPES, "document_type")
    domains = _index((r[5] for r in rows), DOMAINS, "domain")
    out = []
    for r, t, d in zip(rows, types, domains, strict=True):
        score = float(r[6])
        if not SCORE_MIN <= score <= SCORE_MAX:
            raise ConfigError(f"annotation {r[0]} has educational_score {score} outside [{SCORE_MIN}, {SCORE_MAX}]")
        out.append(Example(r[0], r[1], r[2], r[3], t, d, score))
    return out


def label_arrays(examples: Sequence[Example]) -> dict[str, np.ndarray]:
    """Column arrays of the teacher labels, keyed by head name."""
    return {
        "document_type": np.array([e.document_type for e in examples], dtype=np.int64),
        "domain": np.array([e.domain for e in examples], dtype=np.int64),
        "educational_score": np.array([e.educational_score for e in examples], dtype=np.float32),
    }
