"""Label tables checked at the door: a labels (or annotations) table is validated before anyone reads it.

Curate, report and any import of a labels table call `check_labels_table` on the DuckDB view of the
table (a connection from `pipeline.storage.duckdb_connect`, so the table may be local, on s3:// or on
gs://). The check is DuckDB SQL over the table, one scan joined with the paragraphs' ids, never Python
per row:

- required columns and their types (`id`, `document_type`, `domain`, `educational_score`); what can be
  derived is derived, not required: `article_id` from W/paragraphs, the probability vectors and the
  model id as NULL when the table does not have them;
- label values in the vocabulary of `pipeline.labels` (the one label schema), the unknown values listed
  with their counts;
- scores within [SCORE_MIN, SCORE_MAX]; probability vectors of one entry per class, each in [0, 1],
  summing to 1 within PROBABILITY_SUM_TOLERANCE;
- one row per paragraph id; an `article_id` that agrees with W/paragraphs; paragraphs without a label
  and labels without a paragraph counted.

A table that fails raises ConfigError naming the table and saying what to fix. A table that passes
gives a LabelTableCheck whose `view_sql` is the SELECT the stages read labels through.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

import duckdb

from pipeline.core import labels as label_schema
from pipeline.core.errors import ConfigError
from pipeline.core.tables import sql_list

log = logging.getLogger(__name__)

# Vectors rounded to 3 decimals still sum to 1 within 4 * 0.0005; a softmax in float32 within 1e-6.
PROBABILITY_SUM_TOLERANCE = 0.01
# Which labels a stage reads (curate --labels, report --labels): the student's (propagate), the teacher's
# (annotate), imported ones (import-labels), or imported where present and the student's elsewhere.
LABEL_SOURCES = ("labels", "annotations", "imported", "merged")
# source -> the work-directory tables it reads
SOURCE_TABLES: dict[str, tuple[str, ...]] = {
    "labels": ("labels",), "annotations": ("annotations",), "imported": ("labels_imported",),
    "merged": ("labels_imported", "labels"),
}  # fmt: skip
# The schema each table kind is checked against: annotations have integer scores and no vectors.
_KINDS = ("labels", "annotations")
# Columns every labels table must have; the rest is derived or optional.
REQUIRED = ("id", *label_schema.LABEL_COLUMNS)
# How many unknown values and duplicate ids a message shows.
_SHOW = 10

_INTEGER = r"(U?(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT))"
_NUMBER = re.compile(rf"^({_INTEGER}|FLOAT|DOUBLE|REAL|DECIMAL\(\d+,\s*\d+\))$")
_VECTOR = re.compile(rf"^({_INTEGER}|FLOAT|DOUBLE|REAL|DECIMAL\(\d+,\s*\d+\))(\[\]|\[\d+\])$")


@dataclass(frozen=True)
class LabelTableCheck:
    """What the check found in a valid table, and how to read it."""

    table: str  # the table's location, as messages name it
    source: str  # "labels" (the student's) or "annotations" (the teacher's)
    rows: int
    paragraphs_without_label: int  # paragraphs of W/paragraphs with no row in the table
    labels_without_paragraph: int  # rows whose id is no paragraph of W/paragraphs (curate never selects them)
    derived: tuple[str, ...]  # columns the table lacks, derived (article_id) or read as NULL
    unknown_values: dict[str, dict[str, int]] = field(default_factory=dict)  # column -> value -> rows
    columns: frozenset[str] = frozenset()

    def view_sql(self, table: str, paragraphs: str = "paragraphs") -> str:
        """The SELECT, over the table's view `table`, that gives the columns every stage reads: id,
        article_id, document_type, domain, educational_score, document_type_scores, domain_scores, model_id."""
        cols = self.columns
        article = "l.article_id" if "article_id" in cols else "p.article_id"
        join = "" if "article_id" in cols else f" LEFT JOIN {paragraphs} AS p ON p.id = l.id"
        if self.source == "labels":
            score = "l.educational_score"
            vectors = ", ".join(
                f"l.{c}" if c in cols else f"CAST(NULL AS DOUBLE[]) AS {c}"
                for c in ("document_type_scores", "domain_scores")
            )
            model = "l.model_id" if "model_id" in cols else "CAST(NULL AS VARCHAR) AS model_id"
        else:
            score = "CAST(l.educational_score AS DOUBLE) AS educational_score"
            vectors = "CAST(NULL AS DOUBLE[]) AS document_type_scores, CAST(NULL AS DOUBLE[]) AS domain_scores"
            model = "l.teacher_model AS model_id" if "teacher_model" in cols else "CAST(NULL AS VARCHAR) AS model_id"
        return (f"SELECT l.id, {article} AS article_id, l.document_type, l.domain, {score}, {vectors}, {model} "
                f"FROM {table} AS l{join}")  # fmt: skip


def _columns(con: duckdb.DuckDBPyConnection, view: str) -> dict[str, str]:
    """Column name -> DuckDB type of a view (from the Parquet footers: no data read)."""
    return {name: str(kind).upper() for name, kind, *_ in con.sql(f"DESCRIBE SELECT * FROM {view}").fetchall()}


def _check_columns(types: dict[str, str], source: str) -> tuple[list[str], tuple[str, ...]]:
    """(problems with the columns, columns that will be derived or read as NULL)."""
    problems = []
    missing = [c for c in REQUIRED if c not in types]
    if missing:
        problems.append(
            f"missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}: a labels table needs "
            f"{', '.join(REQUIRED)} (article_id is derived from the paragraphs when absent)"
        )
    text_cols = ["id", "article_id", "document_type", "domain",
                 "model_id" if source == "labels" else "teacher_model"]  # fmt: skip
    for c in text_cols:
        if c in types and types[c] != "VARCHAR":
            hint = " (label values are the schema's names, not class indices)" if c in label_schema.LABEL_COLUMNS else ""
            problems.append(f"column {c} is {types[c]}; expected text (VARCHAR){hint}")
    if "educational_score" in types and not _NUMBER.match(types["educational_score"]):
        problems.append(f"column educational_score is {types['educational_score']}; expected a number")
    if source == "labels":
        for head in label_schema.HEADS:
            col = head.scores_column
            if col and col in types and not _VECTOR.match(types[col]):
                problems.append(f"column {col} is {types[col]}; expected a list of numbers (one probability per class)")
    optional = ("document_type_scores", "domain_scores", "model_id") if source == "labels" else ("teacher_model",)
    derived = tuple(c for c in ("article_id", *optional) if c not in types)
    return problems, derived


def _rows(n: int, one: str = "", many: str = "") -> str:
    """'1 row has' / '3 rows have' (verb optional)."""
    return f"{n:,} row{'' if n == 1 else 's'}" + (f" {one if n == 1 else many}" if one else "")


def _check_query(view: str, paragraphs: str, types: dict[str, str], source: str) -> str:
    """One scan of the table, full-joined with the paragraphs' ids: every count the check needs."""
    has_article = "article_id" in types
    aggs = [
        "count(*) FILTER (WHERE _l) AS rows",
        "count(*) FILTER (WHERE _l AND id IS NULL) AS null_ids",
        "count(DISTINCT id) AS distinct_ids",
        "count(*) FILTER (WHERE _p AND _l IS NULL) AS unlabelled",
        "count(*) FILTER (WHERE _l AND _p IS NULL) AS orphans",
        ("count(*) FILTER (WHERE _l AND _p AND article_id IS DISTINCT FROM p_article)" if has_article else "0")
        + " AS article_mismatch",
    ]
    for head in label_schema.HEADS:
        c = head.name
        aggs.append(f"count(*) FILTER (WHERE _l AND {c} IS NULL) AS {c}_null")
        if head.kind == "classification":
            aggs.append(f"histogram({c}) FILTER (WHERE _l AND {c} NOT IN ({sql_list(head.classes)})) AS {c}_unknown")
        else:
            bad = f"_l AND {c} IS NOT NULL AND NOT ({c} BETWEEN {head.minimum} AND {head.maximum})"
            aggs += [f"count(*) FILTER (WHERE {bad}) AS {c}_out", f"min({c}) FILTER (WHERE _l) AS {c}_min",
                     f"max({c}) FILTER (WHERE _l) AS {c}_max"]  # fmt: skip
    vectors = []
    if source == "labels":
        for head in label_schema.HEADS:
            col = head.scores_column
            if col is None or col not in types:
                continue
            v, n = f"CAST({col} AS DOUBLE[])", len(head.classes)
            vectors.append(f"{v} AS {col}")
            aggs += [
                f"count(*) FILTER (WHERE _l AND {col} IS NOT NULL AND len({col}) <> {n}) AS {col}_length",
                f"histogram(len({col})) FILTER (WHERE _l AND {col} IS NOT NULL AND len({col}) <> {n}) AS {col}_lengths",
                f"count(*) FILTER (WHERE _l AND {col} IS NOT NULL AND len({col}) = {n} AND NOT ("
                f"list_count({col}) = {n} AND list_min({col}) >= 0 AND list_max({col}) <= 1 "
                f"AND abs(list_sum({col}) - 1) <= {PROBABILITY_SUM_TOLERANCE})) AS {col}_sum",
            ]
    score = "educational_score" if _NUMBER.match(types.get("educational_score", "")) else "NULL"
    label_cols = ", ".join(
        [f"{'article_id' if has_article else 'CAST(NULL AS VARCHAR)'} AS article_id", "document_type", "domain",
         f"CAST({score} AS DOUBLE) AS educational_score", *vectors]  # fmt: skip
    )
    return f"""
        WITH l AS (SELECT id, {label_cols}, TRUE AS _l FROM {view}),
             p AS (SELECT id AS p_id, article_id AS p_article, TRUE AS _p FROM {paragraphs})
        SELECT {", ".join(aggs)}
        FROM l FULL JOIN p ON l.id = p.p_id"""


def _unknown_message(column: str, values: dict[str, int], classes: tuple[str, ...]) -> str:
    n = sum(values.values())
    shown = sorted(values.items(), key=lambda kv: (-kv[1], kv[0]))
    listed = ", ".join(f"{v!r} ({c:,})" for v, c in shown[:_SHOW]) + (
        f", and {len(shown) - _SHOW} more" if len(shown) > _SHOW else ""
    )
    lower = {c.lower().replace("_", " "): c for c in classes}
    hints = sorted({f"{v!r} -> {lower[v.lower().replace('_', ' ').strip()]!r}" for v in values
                    if v.lower().replace("_", " ").strip() in lower})  # fmt: skip
    return (
        f"{column}: {_rows(n, 'holds', 'hold')} values outside the label schema: "
        f"{listed}; the schema (pipeline/core/labels.py) allows {', '.join(repr(c) for c in classes)}, case-sensitive"
        + (f" (did you mean {'; '.join(hints)}?)" if hints else "")
        + "; map the values onto the schema's names"
    )


def check_labels_table(
    con: duckdb.DuckDBPyConnection,
    view: str,
    *,
    table: str,
    source: str = "labels",
    paragraphs: str = "paragraphs",
    allow_unknown_values: bool = False,
) -> LabelTableCheck:
    """Validate the labels table behind DuckDB view `view` (named `table` in messages) against the
    label schema and the paragraphs behind view `paragraphs`.

    Raises ConfigError listing every problem found and what to fix. With allow_unknown_values (the
    corpus report, which lists them on its page), label values outside the schema are only logged.
    """
    if source not in _KINDS:
        raise ConfigError(f"label table kind must be one of {', '.join(_KINDS)}, not {source!r}")
    where = f"{source} table {table}"
    types = _columns(con, view)
    problems, derived = _check_columns(types, source)
    if problems:
        raise ConfigError(_message(where, problems))
    row: dict[str, Any] = dict(
        zip(*_fetch_named(con, _check_query(view, paragraphs, types, source)), strict=True)
    )
    rows = int(row["rows"])
    unknown: dict[str, dict[str, int]] = {}
    for head in label_schema.HEADS:
        c = head.name
        if row[f"{c}_null"]:
            problems.append(f"{c}: {_rows(row[f'{c}_null'], 'has', 'have')} no value (NULL); a paragraph without a label "
                            "has no row in the table, so drop those rows or fill them in")  # fmt: skip
        if head.kind == "classification":
            values = {str(k): int(v) for k, v in (row[f"{c}_unknown"] or {}).items()}
            if values:
                unknown[c] = values
                if not allow_unknown_values:
                    problems.append(_unknown_message(c, values, head.classes))
        elif row[f"{c}_out"]:
            problems.append(
                f"{c}: {_rows(row[f'{c}_out'])} outside [{head.minimum}, {head.maximum}] (seen "
                f"{row[f'{c}_min']:g} to {row[f'{c}_max']:g}); scores are on the schema's {head.minimum}-"
                f"{head.maximum} scale, so rescale or clip them"
            )
        col = head.scores_column
        if col and f"{col}_length" in row:
            if row[f"{col}_length"]:
                lengths = ", ".join(f"{int(k)} ({int(v):,})" for k, v in sorted((row[f"{col}_lengths"] or {}).items()))
                problems.append(
                    f"{col}: {row[f'{col}_length']:,} vectors of the wrong length (lengths seen: {lengths}); "
                    f"expected {len(head.classes)}, one probability per class in the schema's order "
                    f"{', '.join(repr(x) for x in head.classes)}"
                )
            if row[f"{col}_sum"]:
                problems.append(
                    f"{col}: {row[f'{col}_sum']:,} vectors are not probabilities (an entry missing or outside "
                    f"[0, 1], or a sum off 1 by more than {PROBABILITY_SUM_TOLERANCE}); give softmax outputs"
                )
    if row["null_ids"]:
        problems.append(f"id: {_rows(row['null_ids'], 'has', 'have')} no id (NULL); every row labels one paragraph id")
    extra = rows - int(row["null_ids"]) - int(row["distinct_ids"])
    if extra:
        dupes = con.sql(
            f"SELECT id, count(*) AS n FROM {view} WHERE id IS NOT NULL GROUP BY id HAVING n > 1 "
            f"ORDER BY n DESC, id LIMIT {_SHOW}"
        ).fetchall()
        (n_dupes,) = con.sql(
            f"SELECT count(*) FROM (SELECT id FROM {view} WHERE id IS NOT NULL GROUP BY id HAVING count(*) > 1)"
        ).fetchall()[0]
        problems.append(
            f"id: {n_dupes:,} paragraph ids have more than one row ({extra:,} extra rows; e.g. "
            + ", ".join(f"{i!r} x{n}" for i, n in dupes)
            + "); keep one row per paragraph id"
        )
    if row["article_mismatch"]:
        problems.append(f"article_id: {_rows(row['article_mismatch'], 'disagrees', 'disagree')} with the paragraphs table's "
                        "article_id for the same id; fix them, or drop the column and it is derived from the paragraphs")  # fmt: skip
    if rows and row["orphans"] == rows:
        problems.append(f"none of its {rows:,} ids is a paragraph id of this work directory: "
                        "are these the labels of another corpus?")  # fmt: skip
    if problems:
        raise ConfigError(_message(where, problems))
    check = LabelTableCheck(
        table=table, source=source, rows=rows, paragraphs_without_label=int(row["unlabelled"]),
        labels_without_paragraph=int(row["orphans"]), derived=derived, unknown_values=unknown,
        columns=frozenset(types),
    )  # fmt: skip
    for c, values in unknown.items():
        log.warning("%s: %s", where, _unknown_message(c, values, label_schema.HEADS_BY_NAME[c].classes))
    log.info(
        "%s: %d rows valid; %d paragraphs without a label, %d labels without a paragraph%s", where, rows,
        check.paragraphs_without_label, check.labels_without_paragraph,
        f"; derived or NULL: {', '.join(derived)}" if derived else "",
    )  # fmt: skip
    return check


def source_tables(source: str) -> tuple[str, ...]:
    """The work-directory tables the label source `source` reads; ConfigError for an unknown source."""
    if source not in LABEL_SOURCES:
        raise ConfigError(f"--labels must be one of {', '.join(LABEL_SOURCES)}, not {source!r}")
    return SOURCE_TABLES[source]


def label_source_view(con: duckdb.DuckDBPyConnection, source: str) -> str:
    """The DuckDB view holding the labels `source` reads (unchecked; open_label_source checks it).

    "merged" is a view of its own: the tables' own views are renamed first, so that a stage can then
    define its `labels` view over "merged".
    """
    if source != "merged":
        return source_tables(source)[0]
    con.execute("ALTER VIEW labels_imported RENAME TO merged_imported")
    con.execute("ALTER VIEW labels RENAME TO merged_labels")
    con.execute(
        "CREATE VIEW merged AS SELECT * FROM merged_imported UNION ALL BY NAME "
        "SELECT l.* FROM merged_labels AS l ANTI JOIN merged_imported AS i ON i.id = l.id"
    )
    return "merged"


def open_label_source(
    con: duckdb.DuckDBPyConnection, source: str, workdir: Any, *, allow_unknown_values: bool = False
) -> tuple[str, LabelTableCheck]:
    """Check the labels `source` reads and return (the DuckDB view holding them, the check).

    The connection has one view per table of SOURCE_TABLES[source] (pipeline.tables.connect over the
    Workdir `workdir`, whose table locations the messages name). "merged" is a view of its own: every
    imported label, and the student's label of each paragraph without one.
    """
    where = " + ".join(str(workdir.table(t)) for t in source_tables(source))
    view = label_source_view(con, source)
    kind = "annotations" if source == "annotations" else "labels"
    check = check_labels_table(con, view, table=where, source=kind, allow_unknown_values=allow_unknown_values)
    return view, check


def _fetch_named(con: duckdb.DuckDBPyConnection, sql: str) -> tuple[list[str], tuple[Any, ...]]:
    rel = con.sql(sql)
    return rel.columns, rel.fetchall()[0]


def _message(where: str, problems: list[str]) -> str:
    return (
        f"{where} does not match the label schema (pipeline/core/labels.py):\n"
        + "\n".join(f"  - {p}" for p in problems)
        + "\nfix the table (or the stage that wrote it) and run again"
    )
