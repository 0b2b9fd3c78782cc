"""`pmc-curate sample`: pick N paragraphs for the teacher, deterministically and stratified.

Selection order is the hash `md5(f"{seed}:{id}")` (first 16 hex digits, `sample_key`): a pure
function of the paragraph id and the seed, so the same sample comes out whatever the file order,
shard count or runner, and growing N only adds paragraphs (the first N of a larger sample are the
sample of size N within each stratum's quota).

Stratified (default): each paragraph gets one stratum from cheap signals (article type, language,
section title); every stratum present gets a floor of `floor_share * N / n_strata` paragraphs (or all
it has), taken in hash order; the rest of N is filled in global hash order from everything not yet
taken, so common kinds keep roughly their corpus share. Rare kinds (clinical cases, non-English,
letters and editorials, back matter) are therefore present even in a small sample.

Why DuckDB and not Beam: a sample is a global top-k per stratum. DuckDB computes it out of core in
one pass over the needed Parquet columns on one machine (the 133M-paragraph corpus is a few minutes);
a Beam version (Top.PerKey over the same key) would select the identical set, because the key
depends on nothing but (seed, id).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from pipeline.core import storage
from pipeline.core.errors import ConfigError
from pipeline.core.options import option
from pipeline.core.records import SampledParagraph, arrow_schema, column_names
from pipeline.core.tables import connect, sql_list
from pipeline.core.workdir import Workdir

log = logging.getLogger(__name__)

STRATEGIES = ("stratified", "uniform", "uncertainty")

# Stratum rules, first match wins. Regexes are DuckDB RE2, matched case-insensitively.
CASE_SECTION_RE = r"case (presentation|report|description|history|summary|details|study|\d)|presentation of (the )?case|patient (\d|description|information)|clinical (presentation|findings|case)"
ADMIN_SECTION_RE = r"acknowledg|funding|conflicts? of interest|competing interest|author.{0,3} contribution|data availability|ethic|abbreviation|supplementary|consent|disclosure"
CASE_REPORT_TYPES = ("case-report", "case-reports", "case report")
REVIEW_TYPES = ("review-article", "systematic-review", "review")
SHORT_TYPES = (
    "letter", "editorial", "brief-report", "correction", "commentary", "abstract", "reply", "news",
    "obituary", "retraction", "addendum", "discussion", "book-review", "meeting-report", "rapid-communication",
    "expression-of-concern", "article-commentary", "product-review", "announcement",
)  # fmt: skip
STRATA = ("case_section", "case_report", "non_english", "admin_section", "review", "short_type", "research")


@dataclass
class SampleConfig:
    """Settings of the sample stage; CLI flags map one-to-one onto these fields."""

    size: int = option(help="number of paragraphs to sample")
    seed: int = option(0, help="hash seed (a different seed is a different sample)")
    strategy: str = option("stratified", choices=STRATEGIES,
                           help="stratified: floors for rare kinds; uniform: hash order; uncertainty: where the "
                                "student is least sure (needs a trained student)")
    # Half the sample is spread evenly over strata, the rest follows the corpus.
    floor_share: float = option(0.5, help="share of the sample spread evenly over strata (stratified)")
    pool_factor: int = option(10, help="uncertainty: score this many candidates per wanted paragraph")
    workdir: str = option("", fixed=True, help="work directory with a paragraphs table")


Config = SampleConfig


def _candidates_sql(has_articles: bool) -> str:
    """Every paragraph with its article context, sample key and stratum."""
    join = "LEFT JOIN articles a ON a.pmcid = p.article_id" if has_articles else ""
    title = "a.title" if has_articles else "CAST(NULL AS VARCHAR)"
    atype = "lower(a.article_type)" if has_articles else "CAST(NULL AS VARCHAR)"
    return f"""
    SELECT p.id, p.article_id, p.path, {title} AS title, {atype} AS article_type, p.language,
           p.section_title, p.text, CAST(p.n_tokens AS BIGINT) AS n_tokens,
           CASE
             WHEN regexp_matches(coalesce(p.section_title, ''), '{CASE_SECTION_RE}', 'i') THEN 'case_section'
             WHEN {atype} IN ({sql_list(CASE_REPORT_TYPES)}) THEN 'case_report'
             WHEN p.language IS NOT NULL AND p.language NOT IN ('en', 'eng', 'und') THEN 'non_english'
             WHEN regexp_matches(coalesce(p.section_title, ''), '{ADMIN_SECTION_RE}', 'i') THEN 'admin_section'
             WHEN {atype} IN ({sql_list(REVIEW_TYPES)}) THEN 'review'
             WHEN {atype} IN ({sql_list(SHORT_TYPES)}) THEN 'short_type'
             ELSE 'research'
           END AS stratum,
           substr(md5(CAST($seed AS VARCHAR) || ':' || p.id), 1, 16) AS sample_key
    FROM paragraphs p {join}
    """


def sample_key(seed: int, paragraph_id: str) -> str:
    """The selection key DuckDB computes, in Python (documentation and tests)."""
    import hashlib

    return hashlib.md5(f"{seed}:{paragraph_id}".encode()).hexdigest()[:16]


def quotas(counts: dict[str, int], size: int, floor_share: float) -> dict[str, int]:
    """Per-stratum floors: floor_share*size split evenly over present strata, capped by availability."""
    present = [s for s, n in counts.items() if n > 0]
    if not present:
        return {}
    floor = math.ceil(size * floor_share / len(present))
    q = {s: min(counts[s], floor) for s in present}
    # Never more than size in floors (tiny samples with many strata): trim in STRATA order's reverse.
    excess = sum(q.values()) - size
    for s in sorted(q, key=lambda s: -STRATA.index(s) if s in STRATA else 0):
        if excess <= 0:
            break
        cut = min(excess, q[s])
        q[s] -= cut
        excess -= cut
    return q


def select(workdir: Workdir, config: SampleConfig) -> tuple[pa.Table, dict[str, Any]]:
    """The sample as an Arrow table in the SampledParagraph schema, plus a summary."""
    if config.size <= 0:
        raise ConfigError("--size must be positive")
    if config.strategy not in STRATEGIES:
        raise ConfigError(f"unknown --strategy {config.strategy!r}; choose one of {STRATEGIES}")
    if not workdir.has_table("paragraphs"):
        raise ConfigError(f"no paragraphs table in {workdir.root}; run `pmc-curate parse --workdir {workdir.root}` first")
    con = connect(workdir, tables=("articles", "paragraphs", "annotations"))
    try:
        con.execute(f"CREATE TEMP VIEW cand AS {_candidates_sql(workdir.has_table('articles'))}".replace("$seed", str(int(config.seed))))
        counts = dict(con.sql("SELECT stratum, count(*) FROM cand GROUP BY stratum").fetchall())
        summary: dict[str, Any] = {"strategy": config.strategy, "seed": config.seed, "size": config.size, "available": counts}
        cols = ", ".join(c for c in column_names(SampledParagraph) if c not in ("seed", "strategy"))
        if config.strategy == "uniform":
            table = con.sql(f"SELECT {cols} FROM cand ORDER BY sample_key, id LIMIT {int(config.size)}").to_arrow_table()
        elif config.strategy == "stratified":
            q = quotas(counts, config.size, config.floor_share)
            summary["floors"] = q
            con.register("quota", pa.table({"stratum": list(q), "quota": list(q.values())}))
            con.execute(
                "CREATE TEMP TABLE ranked AS SELECT c.id, c.stratum, c.sample_key, "
                "row_number() OVER (PARTITION BY c.stratum ORDER BY c.sample_key, c.id) <= coalesce(q.quota, 0) AS in_floor "
                "FROM cand c LEFT JOIN quota q USING (stratum)"
            )
            n_floor = con.sql("SELECT count(*) FROM ranked WHERE in_floor").fetchall()[0][0]
            rest = max(0, config.size - n_floor)
            table = con.sql(
                f"""WITH chosen AS (
                      SELECT id FROM ranked WHERE in_floor
                      UNION ALL
                      (SELECT id FROM ranked WHERE NOT in_floor ORDER BY sample_key, id LIMIT {int(rest)}))
                    SELECT {cols} FROM cand JOIN chosen USING (id) ORDER BY sample_key, id"""
            ).to_arrow_table()
        else:
            table = _select_uncertain(con, workdir, config, cols, summary)
    finally:
        con.close()
    n = table.num_rows
    table = table.append_column("seed", pa.array([config.seed] * n, pa.int64()))
    table = table.append_column("strategy", pa.array([config.strategy] * n, pa.string()))
    table = table.select(column_names(SampledParagraph)).cast(arrow_schema(SampledParagraph))
    summary["selected"] = dict(sorted(_count(table.column("stratum").to_pylist()).items()))
    summary["rows"] = n
    return table, summary


def _select_uncertain(con: Any, workdir: Workdir, config: SampleConfig, cols: str, summary: dict[str, Any]) -> pa.Table:
    """Active learning hook: the paragraphs the student is least sure about, among a hash-ordered pool."""
    from classifiers import uncertainty

    exclude = "WHERE id NOT IN (SELECT id FROM annotations)" if workdir.has_table("annotations") else ""
    pool = con.sql(
        f"SELECT {cols} FROM cand {exclude} ORDER BY sample_key, id LIMIT {int(config.size * config.pool_factor)}"
    ).to_arrow_table()
    scores: dict[str, float] = uncertainty.uncertainty_scores(workdir, pool.column("id").to_pylist())
    order = sorted(
        range(pool.num_rows),
        key=lambda i: (-scores.get(pool.column("id")[i].as_py(), 0.0), pool.column("sample_key")[i].as_py()),
    )[: config.size]
    summary["pool"] = pool.num_rows
    return pool.take(sorted(order, key=lambda i: pool.column("sample_key")[i].as_py()))


def _count(values: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


def write_sample(workdir: Workdir, table: pa.Table, summary: dict[str, Any]) -> str:
    """Replace W/sample with the new sample (a new folder swapped in whole: storage.publish)."""
    meta = {b"pmc_curate.sample": json.dumps(summary).encode()}
    with workdir.rewriting(("sample",)) as out:
        storage.write_parquet(table.replace_schema_metadata({**(table.schema.metadata or {}), **meta}),
                              out.sample / "part-00000.parquet")  # fmt: skip
    return str(workdir.sample / "part-00000.parquet")


def run(config: SampleConfig, beam_argv: list[str]) -> int:
    """Select and write the sample; print what was picked per stratum."""
    workdir = Workdir.of(config.workdir)
    storage.check_access(workdir.root)  # a missing bucket, a dead endpoint or a 403 stops here, before any work
    table, summary = select(workdir, config)
    path = write_sample(workdir, table, summary)
    print(f"sampled {summary['rows']} paragraphs ({config.strategy}, seed {config.seed}) -> {path}")
    for stratum in STRATA:
        avail = summary["available"].get(stratum, 0)
        if avail:
            print(f"  {stratum:<14} {summary['selected'].get(stratum, 0):>7} of {avail}")
    return 0
