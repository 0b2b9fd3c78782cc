"""Report: one Markdown page with PNG plots describing the labelled corpus of a work directory.

    pmc-curate report --workdir W [--labels labels|annotations|imported|merged]

Writes W/reports/index.md, W/reports/*.png and W/reports/stats.json: label distributions, score
histogram, type x domain, per-license and per-year counts, the paper's heterogeneity statistics
(share of articles mixing types and domains, score range within an article) beside the paper's
numbers, and the subsets already built under W/subsets. All aggregation runs in DuckDB, so the
report of a 146M-paragraph corpus costs a few group-bys, not a load into memory. W is a local path,
s3://bucket/prefix or gs://bucket/prefix: the page and plots are built in a local temporary folder
and published file by file (pipeline.storage).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from pipeline.core import findings, provenance, storage
from pipeline.core import labels as label_schema
from pipeline.core.errors import ConfigError
from pipeline.core.label_tables import LABEL_SOURCES, open_label_source, source_tables
from pipeline.core.options import option
from pipeline.core.plots import corpus_plots
from pipeline.core.tables import connect, describe_teachers, teacher_models
from pipeline.core.workdir import Workdir

log = logging.getLogger(__name__)

# Biomed-Enriched (arXiv 2506.20331), label statistics over the released corpus (FACTS.md section 1).
PAPER = {
    "educational_score_mean": 3.48,
    "educational_score_median": 4.0,
    "articles_mixing_types": 0.916,
    "articles_mixing_domains": 0.553,
    "mean_score_range_within_article": 2.6,
}
MIN_ARTICLES = 30  # below this many mixed-able articles, the heterogeneity shares are not compared


def compute_stats(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """Every number of the report, from the views paragraphs, labels and articles."""

    def rows(q: str) -> list[tuple]:
        return con.sql(q).fetchall()

    con.execute(
        """CREATE TEMP VIEW lp AS
        SELECT l.id, l.article_id, l.document_type, l.domain, CAST(l.educational_score AS DOUBLE) AS educational_score
        FROM labels AS l"""
    )
    n_par, n_art = rows("SELECT (SELECT count(*) FROM paragraphs), (SELECT count(*) FROM articles)")[0]
    n_lab = rows("SELECT count(*) FROM lp")[0][0]
    out: dict[str, Any] = {"paragraphs": n_par, "articles": n_art, "labelled_paragraphs": n_lab}
    out["document_type"] = dict(rows("SELECT document_type, count(*) FROM lp GROUP BY 1 ORDER BY 2 DESC, 1"))
    out["domain"] = dict(rows("SELECT domain, count(*) FROM lp GROUP BY 1 ORDER BY 2 DESC, 1"))
    out["unknown_label_values"] = {
        "document_type": sorted(str(k) for k in out["document_type"] if k not in label_schema.DOCUMENT_TYPES),
        "domain": sorted(str(k) for k in out["domain"] if k not in label_schema.DOMAINS),
    }
    mean, median, median_rounded = rows(
        "SELECT avg(educational_score), median(educational_score), median(round(educational_score)) FROM lp"
    )[0]
    out["educational_score_mean"] = mean
    out["educational_score_median"] = median
    out["educational_score_median_rounded"] = median_rounded
    out["type_x_domain"] = [
        {"document_type": t, "domain": d, "paragraphs": n}
        for t, d, n in rows("SELECT document_type, domain, count(*) FROM lp GROUP BY 1, 2 ORDER BY 1, 2")
    ]
    out["license"] = [
        {"license": lic, "commercial": com, "articles": a, "paragraphs": p}
        for lic, com, a, p in rows(
            """SELECT a.license, a.commercial, count(*), sum(coalesce(p.n, 0))
               FROM articles AS a LEFT JOIN (SELECT article_id, count(*) AS n FROM paragraphs GROUP BY 1) AS p
                 ON p.article_id = a.pmcid
               GROUP BY 1, 2 ORDER BY 3 DESC, 1 NULLS LAST, 2"""
        )
    ]
    cols = {r[0] for r in con.sql("DESCRIBE SELECT * FROM articles").fetchall()}
    out["pmc_snapshot"] = rows("SELECT max(snapshot) FROM articles")[0][0] if "snapshot" in cols else None
    out["year"] = [{"year": y, "articles": n} for y, n in rows("SELECT year, count(*) FROM articles GROUP BY 1 ORDER BY 1")]
    # Heterogeneity over articles with at least two labelled paragraphs (one paragraph cannot mix).
    het = rows(
        """SELECT count(*),
                  avg(CAST(n_types > 1 AS DOUBLE)), avg(CAST(n_domains > 1 AS DOUBLE)), avg(score_range)
           FROM (SELECT article_id, count(DISTINCT document_type) AS n_types, count(DISTINCT domain) AS n_domains,
                        max(educational_score) - min(educational_score) AS score_range
                 FROM lp GROUP BY article_id HAVING count(*) >= 2)"""
    )[0]
    out["heterogeneity"] = {
        "articles_considered": het[0],
        "articles_mixing_types": het[1],
        "articles_mixing_domains": het[2],
        "mean_score_range_within_article": het[3],
    }
    out["score_histogram"] = [
        {"bin": b, "paragraphs": n}
        for b, n in rows("SELECT floor(educational_score * 4) / 4 AS b, count(*) FROM lp GROUP BY 1 ORDER BY 1")
    ]
    return out


def _fmt(v: Any, pct: bool = False) -> str:
    if v is None:
        return "n/a"
    return f"{100 * v:.1f}%" if pct else (f"{v:.2f}" if isinstance(v, float) else f"{v:,}")


def _subsets(wd: Workdir) -> list[dict[str, Any]]:
    out = []
    for m in wd.subsets.glob("*/manifest.json"):  # sorted; none when there is no W/subsets
        man = json.loads(m.read_text())
        out.append({"name": man["name"], "rows": man["stats"]["rows"], "articles": man["stats"]["articles"],
                    "documents": man["stats"]["documents"], "tokens": man["tokens"]["text"],
                    "recipe_sha256": man["recipe"]["sha256"][:12]})  # fmt: skip
    return out


_TEACHER_ROLE = {"labels": "the student's labels, trained on the annotations of", "annotations": "the annotations of",
                 "merged": "imported labels where present, elsewhere the student's, trained on the annotations of"}  # fmt: skip


def read_this_first(stats: dict[str, Any], subsets: list[dict[str, Any]], labels_source: str,
                    classifier: bool) -> list[str]:
    """The page's opening: what the figures below rest on, and where the student's own report is."""
    h = stats["heterogeneity"]
    n_lab, few = stats["labelled_paragraphs"], h["articles_considered"] < MIN_ARTICLES
    lines = ["## Read this first", "",
             f"- Labels: `{labels_source}` ({n_lab:,} labelled paragraphs of {stats['paragraphs']:,}); "
             "who made them is in the provenance lines above.",
             f"- Heterogeneity rests on {h['articles_considered']:,} articles with two or more labelled paragraphs"
             + (f": too few (under {MIN_ARTICLES}) to compare with the paper's figures." if few else "."),
             "- The student's agreement with the teacher: " + ("[classifier.md](classifier.md)." if classifier else
              "[classifier.md](classifier.md), once `pmc-curate evaluate` has run (not yet)."),
             f"- Subsets built: {len(subsets)}" + (" (" + ", ".join(f"{x['name']}: {x['rows']:,} rows" for x in subsets)
                                                  + ")." if subsets else "."),
             ""]  # fmt: skip
    return lines


def render(stats: dict[str, Any], plots: dict[str, str], subsets: list[dict[str, Any]], labels_source: str,
           provenance_lines: list[str] | tuple[str, ...] = (), classifier: bool = False,
           found: list[str] | None = None, teachers: dict[str, int] | None = None) -> str:
    """The Markdown page."""
    h = stats["heterogeneity"]
    lines = [
        "# pmc-curate corpus report",
        "",
        *provenance_lines,
        *read_this_first(stats, subsets, labels_source, classifier),
        f"Generated {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')} from `{labels_source}`: "
        f"{stats['articles']:,} articles, {stats['paragraphs']:,} paragraphs, {stats['labelled_paragraphs']:,} labelled.",
        "",
    ]
    if labels_source in _TEACHER_ROLE:
        who = f"{_TEACHER_ROLE[labels_source]} {describe_teachers(teachers)}" if teachers else "not recorded here (no W/annotations)"
        lines += [f"**Teacher:** {who}.", ""]
    lines += [
        "## Beside the paper",
        "",
        "Biomed-Enriched (Touchent et al., arXiv 2506.20331) over 133M paragraphs of PMC-OA. Heterogeneity is "
        f"computed over the {h['articles_considered']:,} articles with at least two labelled paragraphs.",
        "",
        "| statistic | this corpus | paper |",
        "|---|---|---|",
        f"| educational score, mean | {_fmt(stats['educational_score_mean'])} | {PAPER['educational_score_mean']} |",
        f"| educational score, median | {_fmt(stats['educational_score_median'])} "
        f"(rounded scores: {_fmt(stats['educational_score_median_rounded'])}) | {PAPER['educational_score_median']:g} |",
        f"| articles mixing paragraph types | {_fmt(h['articles_mixing_types'], True)} | "
        f"{_fmt(PAPER['articles_mixing_types'], True)} |",
        f"| articles mixing domains | {_fmt(h['articles_mixing_domains'], True)} | "
        f"{_fmt(PAPER['articles_mixing_domains'], True)} |",
        f"| mean score range within an article (points) | {_fmt(h['mean_score_range_within_article'])} | "
        f"{PAPER['mean_score_range_within_article']} |",
        "",
        f"![heterogeneity]({plots['heterogeneity']})",
        "",
        "## Labels",
        "",
        "| document type | paragraphs |",
        "|---|---|",
        *[f"| {k} | {v:,} |" for k, v in stats["document_type"].items()],
        "",
        "| domain | paragraphs |",
        "|---|---|",
        *[f"| {k} | {v:,} |" for k, v in stats["domain"].items()],
        "",
        f"![labels]({plots['labels']})",
        "",
    ]
    bad = stats["unknown_label_values"]
    if bad["document_type"] or bad["domain"]:
        lines += [f"**Label values outside the schema:** {bad}", ""]
    lines += [
        "## Educational score",
        "",
        f"![scores]({plots['scores']})",
        "",
        "## Document type by domain",
        "",
        f"![type x domain]({plots['type_domain']})",
        "",
        "## Licenses",
        "",
        "| license | commercial use | articles | paragraphs |",
        "|---|---|---|---|",
        *[f"| {x['license']} | {x['commercial']} | {x['articles']:,} | {x['paragraphs']:,} |" for x in stats["license"]],
        "",
        f"![licenses]({plots['licenses']})",
        "",
        "## Years",
        "",
        f"![years]({plots['years']})",
        "",
    ]
    if found:
        lines += ["## Duplicates and benchmark contamination", "", "```", *found, "```", ""]
    if subsets:
        lines += ["## Subsets built", "", "| subset | rows | articles | documents | tokens | recipe sha256 |",
                  "|---|---|---|---|---|---|"]  # fmt: skip
        lines += [f"| {s['name']} | {s['rows']:,} | {s['articles']:,} | {s['documents']:,} | {s['tokens']:,} | "
                  f"`{s['recipe_sha256']}` |" for s in subsets]  # fmt: skip
        lines.append("")
    return "\n".join(lines)


_OWN_FILES = ".corpus-report-files.json"


def _own_files(folder: storage.Location) -> set[str]:
    """Names of the files the previous corpus report wrote into `folder` (empty when none)."""
    try:
        return set(json.loads((folder / _OWN_FILES).read_text(encoding="utf-8")))
    except (FileNotFoundError, ValueError):
        return set()


def report(
    workdir: str | os.PathLike[str] | storage.Location, labels: str = "labels", threads: int | None = None
) -> Path | storage.Location:
    """Write the corpus report into W/reports/ (its own files replaced, others kept); return index.md's
    location (a Path for a local work directory)."""
    wd = Workdir.of(workdir)
    storage.check_access(wd.root)  # an unreachable store or a missing bucket fails here, before any work
    for table in ("articles", "paragraphs", *source_tables(labels)):
        if not wd.has_table(table):
            raise ConfigError(
                f"report needs the {table} table: no Parquet files in {wd.table(table)} "
                f"(run the stage that writes it first{', or pass --labels annotations' if table == 'labels' else ''})"
            )
    con = connect(wd, tables=("articles", "paragraphs", *source_tables(labels)), threads=threads)
    try:
        # Checked at the door like curate's; values outside the schema are listed on the page, not fatal.
        view, checked = open_label_source(con, labels, wd, allow_unknown_values=True)
        con.execute(f"ALTER VIEW {view} RENAME TO src_{view}")
        con.execute(f"CREATE VIEW labels AS {checked.view_sql(f'src_{view}')}")
        stats = compute_stats(con)
    finally:
        con.close()
    with tempfile.TemporaryDirectory(prefix="pmc-curate-report-") as tmp:
        staging = Path(tmp)  # local scratch, not part of the work directory
        plots = corpus_plots(stats, PAPER, staging)
        subsets = _subsets(wd)
        teachers = teacher_models(wd)
        prov = provenance.collect(wd, labels, pmc_snapshot=stats["pmc_snapshot"])
        (staging / "stats.json").write_text(json.dumps(
            {**({"warning": prov["stand_in"]} if prov["stand_in"] else {}), "provenance": prov,
             "stats": stats, "paper": PAPER, "labels_source": labels,
             "teachers": teachers, "subsets": subsets}, indent=2, default=str))
        classifier = (wd.reports / "classifier.md").is_file()
        (staging / "index.md").write_text(render(stats, plots, subsets, labels, provenance.header_lines(prov), classifier,
                                                  findings.lines(wd), teachers), encoding="utf-8")
        # W/reports/ is shared: evaluate (classifier.md) and annotate --gold write there too, so only
        # this report's own files are replaced, each atomically (a rename locally, one PUT remotely),
        # and its stale ones removed.
        previous = _own_files(wd.reports)
        wd.reports.mkdir(parents=True, exist_ok=True)
        written = sorted(p.name for p in staging.iterdir())
        for name in written:
            (wd.reports / name).write_bytes((staging / name).read_bytes())
    (wd.reports / _OWN_FILES).write_text(json.dumps(written), encoding="utf-8")
    for name in previous - set(written):
        (wd.reports / name).unlink(missing_ok=True)
    index = wd.reports / "index.md"
    return index if index.is_remote else index.local


@dataclass(frozen=True)
class Config:
    """`pmc-curate report`: which labels to report."""

    workdir: str = option("", fixed=True, help="work directory: a local path, s3://bucket/prefix or gs://bucket/prefix")
    labels: str = option("labels", choices=LABEL_SOURCES,
                         help="labels to report: the student's, the teacher's (annotations), import-labels' (imported), "
                              "or imported where present and the student's elsewhere (merged)")
    threads: int | None = option(None, speed_only=True, help="DuckDB threads (default: all cores)")

    @property
    def labels_table(self) -> tuple[str, ...]:
        """The tables the chosen labels are read from."""
        return source_tables(self.labels)


def run(config: Config, beam_argv: list[str]) -> int:
    """Entry point of `pmc-curate report`."""
    path = report(config.workdir, config.labels, config.threads)
    print(f"report: {path}")
    return 0
