"""The curate stage: `curate(config)` builds one subset; `add_arguments` and `run` are `pmc-curate curate`.

    pmc-curate curate --workdir W --recipe be-clinical [--param factor=20] [--commercial-only]

W is a local path, s3://bucket/prefix or gs://bucket/prefix (pipeline.storage). Everything is
written into a local staging folder and published to W/subsets/NAME at the end (a rename locally,
an upload to an object store): a failing recipe leaves nothing behind. See docs/curate.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from pipeline.core import storage
from pipeline.core.errors import ConfigError
from pipeline.core.label_tables import open_label_source, source_tables
from pipeline.core.tables import connect
from pipeline.core.workdir import Workdir
from pipeline.stages.curate.biomed_enriched import write_biomed_enriched
from pipeline.stages.curate.card import card
from pipeline.stages.curate.config import LABEL_SOURCES, CurateConfig
from pipeline.stages.curate.manifest import build_manifest, parquet_metadata
from pipeline.stages.curate.manifest import stats as subset_stats
from pipeline.stages.curate.recipes import builtin_recipes, load_recipe, resolve_params
from pipeline.stages.curate.selection import build_meta, run_recipe, setup_views
from pipeline.stages.curate.tokens import n_tokens_is_export_tokenizer, token_counts
from pipeline.stages.curate.writers import write_outputs

log = logging.getLogger("pipeline.stages.curate")

EXPORT_FORMATS = ("jsonl", "biomed-enriched")

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
    values, bindings = resolve_params(recipe, config.params)
    if config.labels not in LABEL_SOURCES:
        raise ConfigError(f"--labels must be one of {', '.join(LABEL_SOURCES)}, not {config.labels!r}")
    if config.compression not in ("zstd", "gzip"):
        raise ConfigError(f"--compression must be zstd or gzip, not {config.compression!r}")
    if config.export_format not in EXPORT_FORMATS:
        raise ConfigError(f"--export-format must be one of {', '.join(EXPORT_FORMATS)}, not {config.export_format!r}")
    if config.shard_mb <= 0:
        raise ConfigError("--shard-mb must be positive")
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
        con = connect(wd, tables=("articles", "paragraphs", *source_tables(config.labels)), threads=config.threads)
        try:
            con.execute("SET memory_limit = $m", {"m": config.memory_limit})
            con.execute("SET temp_directory = $t", {"t": str(temp_dir)})
            # Every ordered output has its own ORDER BY; not preserving scan order saves memory.
            con.execute("SET preserve_insertion_order = false")
            # The labels table is checked at the door: schema, vocabulary, ranges, one row per paragraph.
            view, checked = open_label_source(con, config.labels, wd)
            setup_views(con, view, checked, config.commercial_only)
            run_recipe(con, recipe, bindings)
            build_meta(con)
            reuse = n_tokens_is_export_tokenizer(con)
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
            tokens = token_counts(con, written, reuse, tok_name)
            timings["tokens_s"] = round(time.perf_counter() - t, 3)
            stats = subset_stats(con)
        finally:
            con.close()
        manifest = build_manifest(name, recipe, values, bindings, config, stats, tokens, written, staging, wd, timings)
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
        (staging / "README.md").write_text(card(name, recipe, manifest), encoding="utf-8")
    manifest["timings"]["total_s"] = round(time.perf_counter() - t0, 3)
    log.info("subset %s: %d rows, %d articles, %d documents, %d tokens in %.1f s -> %s", name,
             manifest["stats"]["rows"], manifest["stats"]["articles"], manifest["stats"]["documents"],
             manifest["tokens"]["text"], manifest["timings"]["total_s"], final)  # fmt: skip
    return manifest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `pmc-curate curate`; they map one-to-one onto CurateConfig."""
    parser.add_argument("--workdir", required=True,
                        help="work directory: a local path, s3://bucket/prefix or gs://bucket/prefix")  # fmt: skip
    parser.add_argument("--recipe", required=True,
                        help=f"built-in recipe ({', '.join(builtin_recipes())}) or path to a .sql file")  # fmt: skip
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="set a recipe parameter (repeatable); see the recipe's `-- param:` lines")  # fmt: skip
    parser.add_argument("--commercial-only", action="store_true", help="keep only articles whose license allows commercial use")
    parser.add_argument("--labels", choices=LABEL_SOURCES, default="labels",
                        help="labels to curate by: the student's (labels), the teacher's (annotations, during development), "
                             "import-labels' (imported), or imported where present and the student's elsewhere (merged)")  # fmt: skip
    parser.add_argument("--name", default=None, help="output folder under W/subsets (default: recipe name)")
    parser.add_argument("--shard-mb", type=float, default=CurateConfig.shard_mb, help="size bound of one output file (MB)")
    parser.add_argument("--compression", choices=("zstd", "gzip"), default="zstd", help="compression of the JSONL export")
    parser.add_argument("--no-export", dest="export", action="store_false", help="skip the export (JSONL or biomed-enriched)")
    parser.add_argument("--export-format", choices=EXPORT_FORMATS, default="jsonl",
                        help="jsonl: one document per article copy in export/; biomed-enriched: the selected paragraphs "
                             "in the published Biomed-Enriched schema in biomed-enriched/, with a pmid -> xml_path index")  # fmt: skip
    parser.add_argument("--memory-limit", default=CurateConfig.memory_limit, help="DuckDB memory limit (spills beyond)")
    parser.add_argument("--threads", type=int, default=None, help="DuckDB threads (default: all cores)")
    parser.add_argument("--temp-directory", type=Path, default=None, help="local DuckDB spill folder (default: W/cache/duckdb-tmp)")


def run(args: argparse.Namespace, beam_argv: list[str]) -> int:
    """Entry point of `pmc-curate curate`."""
    if beam_argv:
        raise ConfigError(f"curate runs in DuckDB, not Beam: unknown arguments {' '.join(beam_argv)}")
    manifest = curate(
        CurateConfig(
            workdir=args.workdir, recipe=args.recipe, params=args.param, commercial_only=args.commercial_only,
            labels=args.labels, name=args.name, shard_mb=args.shard_mb, compression=args.compression,
            export=args.export, export_format=args.export_format, memory_limit=args.memory_limit, threads=args.threads,
            temp_directory=args.temp_directory,
        )  # fmt: skip
    )
    s = manifest["stats"]
    print(
        f"{manifest['name']}: {s['rows']} rows, {s['articles']} articles, {s['documents']} documents, "
        f"{manifest['tokens']['text']} tokens -> {Workdir.of(args.workdir).subsets / manifest['name']}"
    )
    return 0
