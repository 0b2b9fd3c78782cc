"""Manifest: what a subset holds (statistics over its rows, tokens, files) and what it was built from
(recipe, parameters, label bindings, fingerprints of the input tables, software)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from pipeline.core import provenance, storage
from pipeline.core.label_tables import SOURCE_TABLES
from pipeline.core.tables import teacher_models
from pipeline.core.workdir import Workdir
from pipeline.stages.curate.config import SEPARATOR, CurateConfig
from pipeline.stages.curate.recipes import RECIPES_DIR, Recipe
from pipeline.stages.curate.writers import Written


def parquet_metadata(workdir: Workdir, table: str) -> dict[str, str]:
    """Key-value metadata of a table's first Parquet file (e.g. which tokenizer counted n_tokens)."""
    files = workdir.files(table)
    if not files:
        return {}
    meta = storage.read_parquet_metadata(files[0]).schema.to_arrow_schema().metadata or {}
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in meta.items() if b"ARROW" not in k}


def snapshot(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """How current the subset is (NLM's terms ask derived data to say so): the PMC inventory snapshots its
    articles were read at, newest first, with article counts. Legacy inputs (bulk packages, loose files)
    carry none: `newest` is then None and the card says the snapshot is unknown."""
    cols = {r[0] for r in con.sql("DESCRIBE SELECT * FROM articles").fetchall()}
    if "snapshot" not in cols:
        return {"newest": None, "articles": {}}
    rows = con.sql(
        """SELECT snapshot, count(*) FROM articles WHERE snapshot IS NOT NULL
             AND pmcid IN (SELECT DISTINCT article_id FROM meta) GROUP BY 1 ORDER BY 1 DESC"""
    ).fetchall()
    return {"newest": rows[0][0] if rows else None, "articles": {str(k): int(n) for k, n in rows}}


def stats(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """Counts over the output rows (each copy counted), from `meta` weighted by repeat."""

    def dist(expr: str, weight: str = "repeat") -> dict[str, int]:
        rows = con.sql(
            f"SELECT CAST({expr} AS VARCHAR) AS k, sum({weight}) FROM meta GROUP BY k ORDER BY k NULLS LAST"
        ).fetchall()
        return {("null" if k is None else k): int(v) for k, v in rows}

    rows, paragraphs, articles, documents, unlabelled = con.sql(
        """SELECT coalesce(sum(repeat), 0), count(*), count(DISTINCT article_id),
                  (SELECT coalesce(sum(r), 0) FROM (SELECT any_value(repeat) AS r FROM meta GROUP BY article_id)),
                  coalesce(sum(repeat) FILTER (WHERE document_type IS NULL), 0)
           FROM meta"""
    ).fetchall()[0]
    per_article = "SELECT article_id, any_value({col}) AS v, any_value(repeat) AS r FROM meta GROUP BY article_id"

    def article_dist(col: str) -> dict[str, int]:
        q = f"SELECT CAST(v AS VARCHAR) AS k, count(*), sum(r) FROM ({per_article.format(col=col)}) GROUP BY k ORDER BY k"
        return {("null" if k is None else k): {"articles": int(n), "documents": int(d)} for k, n, d in con.sql(q).fetchall()}

    return {
        "snapshot": snapshot(con),
        "rows": int(rows),
        "unique_paragraphs": int(paragraphs),
        "articles": int(articles),
        "documents": int(documents),
        "unlabelled_rows": int(unlabelled),
        "copies": {
            str(k): int(v)
            for k, v in con.sql(
                "SELECT r, count(*) FROM (SELECT any_value(repeat) AS r FROM meta GROUP BY article_id) GROUP BY r ORDER BY r"
            ).fetchall()
        },
        "labels": {
            "document_type": dist("document_type"),
            "domain": dist("domain"),
            "educational_score_rounded": dist("CAST(round(educational_score) AS INTEGER)"),
            "educational_score_mean": con.sql(
                "SELECT sum(educational_score * repeat) / nullif(sum(repeat), 0) FROM meta"
            ).fetchall()[0][0],
        },
        "language": dist("language"),
        "license": article_dist("license"),
        "commercial": article_dist("commercial"),
    }


def build_manifest(
    name: str, recipe: Recipe, values: dict[str, Any], bindings: dict[str, Any], config: CurateConfig,
    stats: dict[str, Any], tokens: dict[str, Any], written: Written, staging: Path, wd: Workdir,
    timings: dict[str, float],
) -> dict[str, Any]:
    """The subset's manifest.json, as a dict. File paths are relative to the subset's folder `staging`,
    input paths to the work directory ("W/..."); a recipe outside W is named by its file name (its text
    and hash are recorded): no local path gets published with a subset."""
    snap = stats.pop("snapshot", None)
    prov = provenance.collect(wd, config.labels, pmc_snapshot=(snap or {}).get("newest"), recipe_sha256=recipe.sha256)
    manifest: dict[str, Any] = {
        **({"warning": prov["stand_in"]} if prov["stand_in"] else {}),  # the first line a reader sees
        "name": name,
        "created_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "provenance": prov,
        "recipe": {"name": recipe.name, "path": _recipe_path(recipe, wd), "sha256": recipe.sha256, "text": recipe.text,
                   "description": recipe.description},  # fmt: skip
        "parameters": values,
        "label_bindings": {k: v for k, v in bindings.items() if k not in values},
        "snapshot": snap,
        "labels_source": config.labels,
        # Who made the labels: the teacher models of W/annotations (the student learnt from them); none for
        # imported labels (their teacher is the release's, named by import-labels).
        "teachers": teacher_models(wd) if config.labels != "imported" else {},
        "label_tables": list(SOURCE_TABLES[config.labels]),  # merged: imported where present, labels elsewhere
        "commercial_only": config.commercial_only,
        "stats": stats,
        "tokens": tokens,
        "files": {
            "data": [{"path": str(f.relative_to(staging)), "bytes": f.stat().st_size} for f in written.data],
            "export": [{"path": str(f.relative_to(staging)), "bytes": f.stat().st_size} for f in written.export],
            "biomed_enriched": [{"path": str(f.relative_to(staging)), "bytes": f.stat().st_size}
                                for f in written.biomed_enriched],
        },
        "export": {"format": config.export_format, "compression": config.compression,
                   "shard_mb": config.shard_mb,
                   "extension": {"zstd": "jsonl.zst", "gzip": "jsonl.gz"}[config.compression],
                   "separator": SEPARATOR},  # fmt: skip
        # Names, sizes and versions (mtime locally, ETag / generation remotely): one listing, no reads.
        "inputs": {t: {"path": provenance.relative(wd.table(t), wd), **storage.fingerprint(wd.files(t), wd.table(t))}
                   for t in ("articles", "paragraphs", *SOURCE_TABLES[config.labels])},  # fmt: skip
        "software": {"duckdb": duckdb.__version__, "pyarrow": pa.__version__},
    }
    manifest["timings"] = timings
    return manifest


def _recipe_path(recipe: Recipe, wd: Workdir) -> str:
    """"builtin:NAME" for a recipe shipped with pmc-curate, else the path relative to W (or the file name)."""
    if recipe.path.parent.resolve() == RECIPES_DIR.resolve():
        return f"builtin:{recipe.path.name}"
    return provenance.relative(recipe.path, wd)
