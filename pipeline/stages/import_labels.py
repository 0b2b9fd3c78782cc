"""`pmc-curate import-labels`: published Biomed-Enriched labels -> W/labels_imported, joined by (PMID, path).

    pmc-curate import-labels FILES... --format biomed-enriched --workdir W

FILES are Parquet files, folders or globs in the published schema, local or on s3:// / gs://. Each
row is matched to one of our paragraphs by (PMID, path); its vectors are put in our class order
(the published order is confirmed on the data first, pipeline.interop.biomed_enriched); it becomes
one row of W/labels_imported in our Label schema, model_id naming the source. Every other row is a
reject in W/rejects/import-labels-*.parquet with its reason. All in DuckDB SQL, spilling to disk.

`curate --labels imported|merged` and `report --labels imported|merged` then read them. When the work
directory has its own labels (propagated) or annotations (teacher), the import reports its agreement
with them, by head, into W/reports/import-labels.{md,json}.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from pipeline.core import agreement, storage
from pipeline.core import labels as label_schema
from pipeline.core.errors import ConfigError, RejectReason
from pipeline.core.label_tables import PROBABILITY_SUM_TOLERANCE, check_labels_table
from pipeline.core.options import option
from pipeline.core.tables import connect, sql_string
from pipeline.core.workdir import Workdir
from pipeline.interop import biomed_enriched as BE

log = logging.getLogger(__name__)

STAGE = "import-labels"
TABLE = "labels_imported"
# Rows compared with the work directory's own labels (a hash-ordered sample beyond this).
COMPARE_ROWS = 200_000


def _input_files(specs: list[str]) -> list[str]:
    files = sorted({str(f) for spec in specs for f in storage.expand(spec) if str(f).endswith(".parquet")})
    if not files:
        raise ConfigError(f"import-labels: no .parquet files in {', '.join(specs)}")
    return files


def _check_columns(con: duckdb.DuckDBPyConnection) -> set[str]:
    types = {n: str(t).upper() for n, t, *_ in con.sql("DESCRIBE SELECT * FROM be_raw").fetchall()}
    missing = [c for c in BE.REQUIRED if c not in types]
    problems = []
    if missing:
        problems.append(f"missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    for c in ("path", "domain", "document_type"):
        if c in types and types[c] != "VARCHAR":
            problems.append(f"column {c} is {types[c]}, expected text")
    for c in ("domain_scores", "document_type_scores"):
        if c in types and not types[c].endswith("[]"):
            problems.append(f"column {c} is {types[c]}, expected a list of numbers")
    score = types.get("educational_score")
    if score is not None and (score in ("VARCHAR", "BOOLEAN") or score.endswith("[]")):
        problems.append(f"column educational_score is {score}, expected a number")
    if problems:
        raise ConfigError(
            "import-labels --format biomed-enriched: the files are not in the published schema: "
            + "; ".join(problems) + f". Expected the columns {', '.join(BE.COLUMNS)} "
            f"(at least {', '.join(BE.REQUIRED)})"
        )
    return set(types)


def _vector_ok(col: str, n: int) -> str:
    return f"({col} IS NULL OR (len({col}) = {n} AND list_count({col}) = {n} AND list_min({col}) >= 0 AND list_max({col}) <= 1 AND list_sum({col}) > 0))"


def _normalised(col: str) -> str:
    """A probability vector summing to 1 (vectors off by more than the tolerance are rescaled)."""
    return (f"CASE WHEN {col} IS NULL OR abs(list_sum({col}) - 1) <= {PROBABILITY_SUM_TOLERANCE} THEN {col} "
            f"ELSE list_transform({col}, lambda x: x / list_sum({col})) END")  # fmt: skip


def _rules(n_t: int, n_d: int) -> list[tuple[str, RejectReason, str]]:
    """(condition, reason, detail) in the order they are tried: a row is rejected for the first that holds."""
    types, domains = (", ".join(sql_string(c) for c in label_schema.HEADS_BY_NAME[h].classes) for h in ("document_type", "domain"))
    lo, hi = label_schema.SCORE_MIN, label_schema.SCORE_MAX
    R = RejectReason
    return [
        ("k.pmid IS NULL OR k.path IS NULL", R.IMPORT_NO_KEY, "'no PMID (article_id) or no path: the row cannot be joined'"),
        ("n_key > 1", R.IMPORT_DUPLICATE, "'PMID ' || k.pmid || ' path ' || k.path || ' has ' || n_key || ' rows; which is right is unknown'"),
        ("n_id > 1", R.IMPORT_DUPLICATE, "'id ' || k.be_id || ' has ' || n_id || ' rows'"),
        (f"document_type IS NULL OR document_type NOT IN ({types})", R.IMPORT_UNKNOWN_LABEL,
         f"""'document_type ' || coalesce('''' || document_type || '''', 'NULL') || ' is not one of {types.replace("'", "''")}'"""),
        (f"domain IS NULL OR domain NOT IN ({domains})", R.IMPORT_UNKNOWN_LABEL,
         f"""'domain ' || coalesce('''' || domain || '''', 'NULL') || ' is not one of {domains.replace("'", "''")}'"""),
        (f"educational_score IS NULL OR NOT (educational_score BETWEEN {lo} AND {hi})", R.IMPORT_BAD_SCORE,
         f"'educational_score ' || coalesce(CAST(educational_score AS VARCHAR), 'NULL') || ' is outside [{lo}, {hi}]'"),
        (f"NOT {_vector_ok('ts', n_t)}", R.IMPORT_BAD_VECTOR,
         f"'document_type_scores ' || CAST(ts AS VARCHAR) || ': expected {n_t} probabilities'"),
        (f"NOT {_vector_ok('ds', n_d)}", R.IMPORT_BAD_VECTOR, f"'domain_scores ' || CAST(ds AS VARCHAR) || ': expected {n_d} probabilities'"),
        ("pm.n IS NULL", R.IMPORT_NO_ARTICLE, "'no article of this work directory has PMID ' || k.pmid"),
        ("pm.n > 1", R.IMPORT_AMBIGUOUS_PMID, "pm.n || ' articles of this work directory have PMID ' || k.pmid"),
        ("o.id IS NULL", R.IMPORT_NO_PARAGRAPH, "'no paragraph at ' || k.path || ' in the article with PMID ' || k.pmid"
         " || ' (shorter than --min-tokens, outside our body walk, or another version of the article)'"),
        ("o.be_addressable IS FALSE", R.IMPORT_NOT_ADDRESSABLE, "'the published tool resolves ' || k.path"
         " || ' to another element than our paragraph ' || o.id || ' (see docs/interop.md)'"),
    ]  # fmt: skip


def _classify_sql(has_id: bool, has_addressable: bool, orders: dict[str, tuple[str, ...]]) -> str:
    """One row per input row: the matched paragraph, or the reject reason and detail (the first rule that holds)."""
    be_id = "CAST(id AS VARCHAR)" if has_id else "CAST(NULL AS VARCHAR)"
    why = "\n".join(f"        WHEN {cond} THEN ['{reason}', {detail}]"
                     for cond, reason, detail in _rules(len(orders["document_type"]), len(orders["domain"])))
    return f"""
    CREATE TEMP TABLE classified AS
    WITH b AS (
        SELECT filename AS _file, {be_id} AS be_id, NULLIF(trim(CAST(article_id AS VARCHAR)), '') AS pmid,
               path, document_type, domain, TRY_CAST(educational_score AS DOUBLE) AS educational_score,
               TRY_CAST(document_type_scores AS DOUBLE[]) AS ts, TRY_CAST(domain_scores AS DOUBLE[]) AS ds
        FROM be_raw),
    k AS (
        SELECT *, count(*) OVER (PARTITION BY pmid, path) AS n_key,
               CASE WHEN be_id IS NULL THEN 1 ELSE count(*) OVER (PARTITION BY be_id) END AS n_id
        FROM b),
    pm AS (SELECT pmid, count(DISTINCT pmcid) AS n FROM articles WHERE pmid IS NOT NULL GROUP BY pmid),
    ours AS (SELECT p.id, p.article_id, p.path, a.pmid, {"p.be_addressable" if has_addressable else "NULL"} AS be_addressable
             FROM paragraphs AS p JOIN articles AS a ON a.pmcid = p.article_id WHERE a.pmid IS NOT NULL),
    w AS (
      SELECT k.*, o.id AS our_id, o.article_id AS pmcid, o.be_addressable,
        CASE
{why}
        END AS _why
      FROM k LEFT JOIN pm ON pm.pmid = k.pmid
      LEFT JOIN ours AS o ON o.pmid = k.pmid AND o.path = k.path AND pm.n = 1)
    SELECT * EXCLUDE (_why), _why[1] AS reason, _why[2] AS detail FROM w"""


def _write_outputs(con: duckdb.DuckDBPyConnection, wd: Workdir, orders: dict[str, tuple[str, ...]], model_id: str) -> None:
    ts = BE.permute_sql(_normalised("ts"), orders["document_type"], BE.ours("document_type"))
    ds = BE.permute_sql(_normalised("ds"), orders["domain"], BE.ours("domain"))
    with storage.local_staging(wd.table(TABLE), dir=wd.local_cache / "staging") as staging:
        con.execute(
            f"""COPY (SELECT our_id AS id, pmcid AS article_id, document_type, domain, educational_score,
                        {ts} AS document_type_scores, {ds} AS domain_scores, $model AS model_id,
                        FALSE AS truncated, CAST(NULL AS VARCHAR) AS input_hash
                      FROM classified WHERE reason IS NULL ORDER BY our_id)
                TO '{staging / "part-00000.parquet"}' (FORMAT parquet, COMPRESSION zstd)""",
            {"model": model_id},
        )
    with tempfile.TemporaryDirectory(dir=wd.local_cache) as tmp, \
            storage.replacing([wd.rejects], [f"{STAGE}-"]) as (rejects,):  # this stage's rejects, replaced whole
        out = Path(tmp) / "rejects.parquet"
        con.execute(
            f"""COPY (SELECT _file AS source, '{STAGE}' AS stage, reason, detail,
                        coalesce(be_id, pmid || '/' || path) AS record_id, CAST(NULL AS VARCHAR) AS raw
                      FROM classified WHERE reason IS NOT NULL ORDER BY source, record_id)
                TO '{out}' (FORMAT parquet, COMPRESSION zstd)"""
        )
        (rejects / f"{STAGE}-00000.parquet").write_from(out)


def _compare(con: duckdb.DuckDBPyConnection, wd: Workdir) -> dict[str, Any]:
    """Agreement of the imported labels (view labels_imported) with the work directory's own, by head, on
    common paragraphs."""
    out: dict[str, Any] = {}
    heads = ", ".join(label_schema.LABEL_COLUMNS)
    for table in ("labels", "annotations"):
        if not wd.has_table(table):
            continue
        con.execute(f"CREATE OR REPLACE VIEW own AS SELECT * FROM read_parquet({sql_string(wd.glob(table))}, union_by_name = true)")
        rows = con.sql(
            f"""SELECT {", ".join(f"o.{h}" for h in label_schema.LABEL_COLUMNS)}, {", ".join(f"i.{h}" for h in label_schema.LABEL_COLUMNS)}
                FROM labels_imported AS i JOIN own AS o ON o.id = i.id ORDER BY hash(i.id) LIMIT {COMPARE_ROWS}"""
        ).fetchall()
        n = len(label_schema.LABEL_COLUMNS)
        own = [dict(zip(label_schema.LABEL_COLUMNS, r[:n], strict=True)) for r in rows]
        imp = [dict(zip(label_schema.LABEL_COLUMNS, r[n:], strict=True)) for r in rows]
        if rows:
            out[table] = agreement.agreement_report(own, imp)
        log.info("import-labels: %d paragraphs labelled both by %s and the import (%s)", len(rows), table, heads)
    return out


def import_labels(
    files: list[str], workdir: str | storage.Location | Path, *, fmt: str = BE.NAME, source: str = BE.DEFAULT_SOURCE,
    orders: dict[str, tuple[str, ...]] | None = None, assume_order: bool = False, threads: int | None = None,
    memory_limit: str = "2GB",
) -> dict[str, Any]:
    """Import published labels into W/labels_imported (and rejects); return the summary written to the report."""
    t0 = time.perf_counter()
    if fmt != BE.NAME:
        raise ConfigError(f"--format {fmt!r}: only {BE.NAME} is supported")
    wd = Workdir.of(workdir)
    storage.check_access(wd.root)
    for t in ("articles", "paragraphs"):
        if not wd.has_table(t):
            raise ConfigError(f"import-labels needs the {t} table: no Parquet files in {wd.table(t)} (run parse first)")
    inputs = _input_files(files)
    orders = {**BE.ORDERS, **(orders or {})}
    con = connect(wd, tables=("articles", "paragraphs"), threads=threads)
    try:
        temp = wd.local_cache / "duckdb-tmp"
        temp.mkdir(parents=True, exist_ok=True)
        con.execute("SET memory_limit = $m", {"m": memory_limit})
        con.execute("SET temp_directory = $t", {"t": str(temp)})
        listed = ", ".join(sql_string(f) for f in inputs)
        con.execute(f"CREATE VIEW be_raw AS SELECT * FROM read_parquet([{listed}], union_by_name = true, filename = true)")
        cols = _check_columns(con)
        checks = {h: BE.establish_order(con, "be_raw", h, orders[h], assume_order) for h in ("domain", "document_type")}
        has_addr = "be_addressable" in {r[0] for r in con.sql("DESCRIBE SELECT * FROM paragraphs").fetchall()}
        if not has_addr:
            log.warning("%s has no be_addressable column (parsed by an older version): paths are joined unchecked; "
                        "parse again to know which paths the published tool resolves", wd.paragraphs)  # fmt: skip
        con.execute(_classify_sql("id" in cols, has_addr, orders))
        model_id = f"{BE.NAME}:{source}"
        _write_outputs(con, wd, orders, model_id)
        counts = dict(con.sql("SELECT coalesce(reason, 'imported'), count(*) FROM classified GROUP BY 1 ORDER BY 2 DESC, 1").fetchall())
        renormalised = con.sql(
            f"SELECT count(*) FROM classified WHERE reason IS NULL AND (abs(list_sum(ts) - 1) > {PROBABILITY_SUM_TOLERANCE} "
            f"OR abs(list_sum(ds) - 1) > {PROBABILITY_SUM_TOLERANCE})"
        ).fetchall()[0][0]
        n_rows = sum(counts.values())
        if counts.get("imported"):  # the table we wrote passes the check every reader applies
            con.execute(f"CREATE VIEW labels_imported AS SELECT * FROM read_parquet({sql_string(wd.glob(TABLE))})")
            check_labels_table(con, "labels_imported", table=str(wd.table(TABLE)))
        comparison = _compare(con, wd) if counts.get("imported") else {}
    finally:
        con.close()
    summary = {
        "format": fmt, "source": source, "model_id": model_id, "files": inputs, "rows": n_rows,
        "imported": counts.pop("imported", 0), "rejected": dict(counts), "renormalised_vectors": renormalised,
        "orders": {h: c.as_dict() for h, c in checks.items()}, "be_addressable_checked": has_addr,
        "agreement": comparison, "seconds": round(time.perf_counter() - t0, 3),
    }  # fmt: skip
    wd.reports.mkdir()
    (wd.reports / "import-labels.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    (wd.reports / "import-labels.md").write_text(render(summary), encoding="utf-8")
    return summary


def render(summary: dict[str, Any]) -> str:
    """The import's page: counts, rejects by reason, the vector orders and the agreement by head."""
    lines = [f"# Imported labels: {summary['source']}", "",
             f"{summary['rows']:,} rows in {len(summary['files'])} files; **{summary['imported']:,} imported** "
             f"into `labels_imported` as model_id `{summary['model_id']}`.", "",
             "| rejected because | rows |", "|---|---|"]  # fmt: skip
    lines += [f"| {r} | {n:,} |" for r, n in summary["rejected"].items()] or ["| (none) | 0 |"]
    lines += ["", "| vector | order | rows checked | argmax = label | confirmed classes |", "|---|---|---|---|---|"]
    for head, o in summary["orders"].items():
        agree = "assumed" if o["assumed"] else ("-" if o["agreement"] is None else f"{o['agreement']:.3f}")
        lines.append(f"| {BE.scores_column(head)} | {', '.join(o['order'])} | {o['rows']:,} | {agree} | "
                     f"{', '.join(o['confirmed']) or '-'} |")  # fmt: skip
    for table, rep in summary["agreement"].items():
        lines += ["", f"## Agreement with this work directory's {table} (n={rep['n']:,})", "",
                  "| head | figure |", "|---|---|"]  # fmt: skip
        for h in label_schema.HEADS:
            r = rep[h.name]
            f = agreement.fmt
            figs = (f"kappa {f(r['cohen_kappa'])}, macro-F1 {f(r['macro_f1'])}, accuracy {f(r['accuracy'])}"
                    if h.kind == "classification" else f"Pearson r {f(r['pearson_r'])}, MAE {f(r['mae'])}")  # fmt: skip
            lines.append(f"| {h.name} | {figs} |")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Config:
    """`pmc-curate import-labels`: which files, in which schema, with which vector orders."""

    files: list[str] = option(positional=True, metavar="FILE", input_path=True,
                              help="Parquet files, folders or globs (local, s3:// or gs://)")
    fmt: str = option(flag="--format", choices=(BE.NAME,), help="schema of the files")
    workdir: str = option("", fixed=True, help="work directory: a local path, s3://bucket/prefix or gs://bucket/prefix")
    source: str = option(BE.DEFAULT_SOURCE, help="where the labels come from (model_id = biomed-enriched:SOURCE)")
    domain_order: str | None = option(None, help=f"order of domain_scores (default {','.join(BE.ORDERS['domain'])})")
    document_type_order: str | None = option(
        None, help=f"order of document_type_scores (default {','.join(BE.ORDERS['document_type'])})")
    assume_order: bool = option(False, help="take the vector orders unchecked")
    threads: int | None = option(None, speed_only=True, help="DuckDB threads (default: all cores)")
    memory_limit: str = option("2GB", speed_only=True, help="DuckDB memory limit (spills beyond)")


def run(config: Config, beam_argv: list[str]) -> int:
    """Entry point of `pmc-curate import-labels`."""
    orders = {h: BE.parse_order(h, spec) for h, spec in (("domain", config.domain_order),
              ("document_type", config.document_type_order)) if spec}  # fmt: skip
    s = import_labels(config.files, config.workdir, fmt=config.fmt, source=config.source, orders=orders,
                      assume_order=config.assume_order, threads=config.threads, memory_limit=config.memory_limit)  # fmt: skip
    rejected = ", ".join(f"{r} {n:,}" for r, n in s["rejected"].items()) or "none"
    print(f"import-labels: {s['imported']:,} of {s['rows']:,} rows imported -> {Workdir.of(config.workdir).table(TABLE)}; "
          f"rejected: {rejected}")  # fmt: skip
    for table, rep in s["agreement"].items():
        print(agreement.format_report(rep, f"imported vs {table}"))
    return 0
