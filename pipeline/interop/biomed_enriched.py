"""The published Biomed-Enriched dataset (HF almanach/Biomed-Enriched): its schema, class orders and keys.

- Columns and types, from the dataset card's `dataset_info` (both splits, commercial and noncommercial).
- `article_id` is the PMID, `id` is `{PMID}_p{N}`; a row is joined to our paragraphs by (PMID, path),
  where `path` is valid only for paragraphs whose `be_addressable` is true (pipeline.jats.biomed_enriched).
- The probability vectors are ordered domain (biomedical, clinical, other) and type (Study, Other,
  Review, Clinical case). That order was inferred from one published example row, so an import
  confirms it on the data (`establish_order`) and refuses an order the data do not support.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa

from pipeline.core import labels as label_schema
from pipeline.core.errors import ConfigError

NAME = "biomed-enriched"
DEFAULT_SOURCE = "almanach/Biomed-Enriched"

SCHEMA = pa.schema(
    [
        ("id", pa.string()), ("article_id", pa.string()), ("path", pa.string()), ("text", pa.string()),
        ("language", pa.string()), ("section_title", pa.string()), ("domain", pa.string()),
        ("document_type", pa.string()), ("educational_score", pa.float64()),
        ("domain_scores", pa.list_(pa.float64())), ("document_type_scores", pa.list_(pa.float64())),
        ("language_score", pa.float64()), ("authors", pa.list_(pa.string())), ("article_url", pa.string()),
        ("license_url", pa.string()),
    ]
)  # fmt: skip
COLUMNS = tuple(SCHEMA.names)
# What an import needs; the rest (text, authors, ...) is ours already.
REQUIRED = ("article_id", "path", "domain", "document_type", "educational_score", "domain_scores", "document_type_scores")

# Their vector orders (see the module docstring), per head with a vector.
ORDERS: dict[str, tuple[str, ...]] = {
    "domain": (label_schema.BIOMEDICAL, label_schema.CLINICAL, label_schema.OTHER_DOMAIN),
    "document_type": (label_schema.STUDY, label_schema.OTHER_TYPE, label_schema.REVIEW, label_schema.CLINICAL_CASE),
}
# An order is established when the argmax of the vector names the row's label this often...
MIN_AGREEMENT = 0.9


def scores_column(head: str) -> str:
    return label_schema.HEADS_BY_NAME[head].scores_column or ""


def ours(head: str) -> tuple[str, ...]:
    return label_schema.HEADS_BY_NAME[head].classes


def parse_order(head: str, spec: str) -> tuple[str, ...]:
    """`--domain-order biomedical,clinical,other` -> the tuple, checked to be a permutation of our classes."""
    order = tuple(x.strip() for x in spec.split(","))
    if sorted(order) != sorted(ours(head)):
        raise ConfigError(f"--{head.replace('_', '-')}-order {spec!r}: give each of {', '.join(ours(head))} once")
    return order


def permute_sql(column: str, source: tuple[str, ...], target: tuple[str, ...]) -> str:
    """DuckDB expression turning a vector whose entries follow `source` into one following `target`
    (NULL stays NULL). Import: their order -> ours; export: ours -> theirs."""
    positions = [source.index(c) + 1 for c in target]  # DuckDB lists are 1-based
    return f"CASE WHEN {column} IS NULL THEN NULL ELSE [{', '.join(f'{column}[{i}]' for i in positions)}] END"


@dataclass(frozen=True)
class OrderCheck:
    """How the vector order of one head was established on the data being imported."""

    head: str
    order: tuple[str, ...]
    rows: int  # rows with a known label and a vector of the right length
    agreement: float | None  # share of those whose argmax (in `order`) is their label
    confirmed: tuple[str, ...]  # classes whose rows put their argmax at the class's position in `order`
    assumed: bool  # taken unchecked (--assume-order)

    def as_dict(self) -> dict[str, Any]:
        return {"order": list(self.order), "rows": self.rows, "agreement": self.agreement,
                "confirmed": list(self.confirmed), "assumed": self.assumed}  # fmt: skip


def establish_order(
    con: duckdb.DuckDBPyConnection, view: str, head: str, order: tuple[str, ...], assume: bool = False
) -> OrderCheck:
    """Check on the data that the vectors of `head` are in `order`; raise ConfigError when they are not.

    For each label value, the position of the vector's largest entry: the order holds when that position
    is the label's own in >= MIN_AGREEMENT of the rows, for every class but at most one (the last one
    follows by elimination), so one published row is not the only evidence."""
    col, n = scores_column(head), len(order)
    classes = ", ".join("'" + c.replace("'", "''") + "'" for c in order)
    counts = con.sql(
        f"""SELECT {head} AS label, list_position(v, list_max(v)) AS pos, count(*) AS n
            FROM (SELECT {head}, CAST({col} AS DOUBLE[]) AS v FROM {view})
            WHERE {head} IN ({classes}) AND len(v) = {n} AND list_count(v) = {n}
            GROUP BY ALL"""
    ).fetchall()
    rows = sum(c for _, _, c in counts)
    by_label: dict[str, dict[int, int]] = {}
    for label, pos, c in counts:
        by_label.setdefault(label, {})[int(pos)] = int(c)
    agree = sum(c for label, pos, c in counts if pos == order.index(label) + 1)
    confirmed = tuple(
        c for c in order if c in by_label
        and by_label[c].get(order.index(c) + 1, 0) >= MIN_AGREEMENT * sum(by_label[c].values())
    )  # fmt: skip
    check = OrderCheck(head, order, rows, agree / rows if rows else None, confirmed, assume)
    if assume or rows == 0 and not _has_vectors(con, view, col):
        return check
    if rows and agree >= MIN_AGREEMENT * rows and len(confirmed) >= n - 1:
        return check
    seen = {label: max(p, key=p.get) for label, p in by_label.items()}
    found = ", ".join(f"{label!r} rows peak at position {pos}" for label, pos in sorted(seen.items()))
    flag = f"--{head.replace('_', '-')}-order"
    raise ConfigError(
        f"cannot establish the order of {col}: assumed {', '.join(order)}, but "
        + (f"only {agree:,} of {rows:,} rows have their largest entry at their label's position "
           f"and {len(confirmed)} of {n} classes are confirmed ({found or 'no rows'})"
           if rows else "no row has both a known label and a full vector")
        + f"; give the order with {flag} a,b,c, or pass --assume-order to take it unchecked"
    )  # fmt: skip


def _has_vectors(con: duckdb.DuckDBPyConnection, view: str, col: str) -> bool:
    return bool(con.sql(f"SELECT count(*) FROM {view} WHERE {col} IS NOT NULL").fetchall()[0][0])
