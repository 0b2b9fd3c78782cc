"""The curate stage: `curate(config)` builds one subset; `run` is `pmc-curate curate`.

    pmc-curate curate --workdir W --recipe be-clinical [--param factor=20] [--commercial-only]

W is a local path, s3://bucket/prefix or gs://bucket/prefix (pipeline.storage). Everything is
written into a local staging folder and published to W/subsets/NAME at the end (a rename locally,
an upload to an object store): a failing recipe leaves nothing behind. See docs/curate.md.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import replace
from typing import Any

import duckdb

from pipeline.core import storage
from pipeline.core.errors import ConfigError
from pipeline.core.label_tables import label_source_view, open_label_source, source_tables
from pipeline.core.tables import connect
from pipeline.core.workdir import Workdir
from pipeline.stages.curate import filters
from pipeline.stages.curate.biomed_enriched import write_biomed_enriched
from pipeline.stages.curate.budget import budget, budget_lines
from pipeline.stages.curate.card import card
from pipeline.stages.curate.config import EXPORT_FORMATS, LABEL_SOURCES, CurateConfig
from pipeline.stages.curate.manifest import build_manifest, parquet_metadata
from pipeline.stages.curate.manifest import stats as subset_stats
from pipeline.stages.curate.recipes import load_recipe, resolve_params
from pipeline.stages.curate.sandbox import sandbox
from pipeline.stages.curate.selection import build_meta, run_recipe, setup_views
from pipeline.stages.curate.tokens import load_tokenizer, n_tokens_is_export_tokenizer, token_counts
from pipeline.stages.curate.writers import write_outputs

log = logging.getLogger(__name__)

Config = CurateConfig

# What to run when a table curate needs is missing.
_HINTS = {
    "articles": "run parse first", "paragraphs": "run parse first",
    "labels": "run propagate first, or pass --labels annotations / imported",
    "annotations": "run annotate first, or pass --labels labels",
    "labels_imported": "run import-labels first, or pass --labels labels",
}  # fmt: skip


def curate(config: CurateConfig) -> dict[str, Any]:
    """Build one subset into W/subsets/NAME (atomically) and return its manifest."""
    t0 = time.perf_counter()
    recipe = load_recipe(config.recipe)
    recipe_params, filter_values = filters.split_params(recipe, config.params)
    values, bindings = resolve_params(recipe, recipe_params)
    if config.labels not in LABEL_SOURCES:
        raise ConfigError(f"--labels must be one of {', '.join(LABEL_SOURCES)}, not {config.labels!r}")
    if config.compression not in ("zstd", "gzip"):
        raise ConfigError(f"--compression must be zstd or gzip, not {config.compression!r}")
    if config.export_format not in EXPORT_FORMATS:
        raise ConfigError(f"--export-format must be one of {', '.join(EXPORT_FORMATS)}, not {config.export_format!r}")
    if config.shard_mb <= 0:
        raise ConfigError("--shard-mb must be positive")
    if config.target_tokens is not None and config.target_tokens < 1:
        raise ConfigError("--target-tokens must be a positive number of tokens")
    if config.tokenizer:
        from pipeline.stages.export import tokenizer as T

        T.load(config.tokenizer)  # an unknown tokenizer is refused before any work
    if config.count_tokenizer is not None:
        load_tokenizer(config.count_tokenizer)  # a wrong path or id fails here, before any work
    wd = Workdir.of(config.workdir)
    storage.check_access(wd.root)  # an unreachable store or a missing bucket fails here, before any work
    for table in ("articles", "paragraphs", *source_tables(config.labels)):
        if not wd.has_table(table):
            raise ConfigError(f"curate needs the {table} table: no Parquet files in {wd.table(table)} ({_HINTS[table]})")
    name = config.name or recipe.name + ("-commercial" if config.commercial_only else "")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise ConfigError(f"subset name {name!r}: use letters, digits, '.', '_' and '-'")
    final = wd.subsets / name
    # DuckDB spills to a local folder, also when the work directory is on an object store.
    temp_dir = config.temp_directory or (wd.local_cache / "duckdb-tmp")
    temp_dir.mkdir(parents=True, exist_ok=True)
    # Built locally, then swapped in (renames) or uploaded: a reader sees the old subset or the new one,
    # never a half-written one (on an object store manifest.json comes after the files it lists).
    with storage.local_staging(final, dir=wd.local_cache / "staging") as staging:
        tables = ("articles", "paragraphs", *source_tables(config.labels), *filters.TABLES)
        con = connect(wd, tables=tables, threads=config.threads)
        try:
            con.execute("SET memory_limit = $m", {"m": config.memory_limit})
            con.execute("SET temp_directory = $t", {"t": str(temp_dir)})
            # Every ordered output has its own ORDER BY; not preserving scan order saves memory.
            con.execute("SET preserve_insertion_order = false")
            # The labels table is checked at the door: schema, vocabulary, ranges, one row per paragraph.
            view, checked = open_label_source(con, config.labels, wd)
            setup_views(con, view, checked, config.commercial_only)
            filters.setup_views(con, wd)

            def recipe_views(box: duckdb.DuckDBPyConnection) -> None:
                setup_views(box, label_source_view(box, config.labels), checked, config.commercial_only)
                filters.setup_views(box, wd)

            # The recipe runs on a connection of its own that reaches only these tables (sandbox.py).
            with sandbox(wd, tables, recipe_views, threads=config.threads, memory_limit=config.memory_limit,
                         temp_directory=temp_dir) as box:
                run_recipe(con, box, recipe, bindings)
            removed = filters.apply(con, wd, filter_values)
            build_meta(con)
            # parse's n_tokens are MiniLM counts: reusable only when counting in MiniLM
            reuse = config.count_tokenizer is None and n_tokens_is_export_tokenizer(con)
            timings = {"select_s": round(time.perf_counter() - t0, 3)}
            t = time.perf_counter()
            jsonl = config.export and config.export_format == "jsonl"
            written = write_outputs(con, staging, replace(config, export=jsonl), name, count_text=not reuse)
            if config.export and config.export_format == "biomed-enriched":
                written.biomed_enriched = write_biomed_enriched(con, staging, int(config.shard_mb * 2**20), config.batch_rows)
            timings["write_s"] = round(time.perf_counter() - t, 3)
            t = time.perf_counter()
            meta = parquet_metadata(wd, "paragraphs")
            tok_name = next((v for k, v in meta.items() if "tokenizer" in k.lower()), None)
            tokens = token_counts(con, written.text_tokens, written.headings, bool(written.export), reuse, tok_name,
                                  config.count_tokenizer)
            timings["tokens_s"] = round(time.perf_counter() - t, 3)
            stats = subset_stats(con)
        finally:
            con.close()
        manifest = build_manifest(name, recipe, values, bindings, config, stats, tokens, written, staging, wd, timings)
        manifest.update(removed)
        if config.tokenizer or config.target_tokens is not None:
            t = time.perf_counter()
            manifest["budget"] = budget(staging, config.tokenizer, config.target_tokens)
            manifest["timings"]["budget_s"] = round(time.perf_counter() - t, 3)
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
        (staging / "README.md").write_text(card(name, recipe, manifest, filters.card_section(removed)), encoding="utf-8")
    manifest["timings"]["total_s"] = round(time.perf_counter() - t0, 3)
    log.info("subset %s: %d rows, %d articles, %d documents, %d tokens in %.1f s -> %s", name,
             manifest["stats"]["rows"], manifest["stats"]["articles"], manifest["stats"]["documents"],
             manifest["tokens"]["text"], manifest["timings"]["total_s"], final)  # fmt: skip
    return manifest


def run(config: CurateConfig, beam_argv: list[str]) -> int:
    """Entry point of `pmc-curate curate`."""
    manifest = curate(config)
    s = manifest["stats"]
    print(
        f"{manifest['name']}: {s['rows']} rows, {s['articles']} articles, {s['documents']} documents, "
        f"{manifest['tokens']['text']} tokens -> {Workdir.of(config.workdir).subsets / manifest['name']}"
    )
    for line in budget_lines(manifest["budget"]) if "budget" in manifest else ():
        print(line)
    return 0
