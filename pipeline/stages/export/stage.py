"""`pmc-curate export`: a curated subset as tokenized shards a trainer reads, with its mixture and budget.

    pmc-curate export --workdir W --subset NAME --tokenizer PATH_OR_ID --format olmo|megatron|datatrove
                      [--out DIR] [--unit article|paragraph] [--materialize] [--target-tokens N] [Beam flags]

Every document (an article's kept paragraphs, or a paragraph) is tokenized once, with the end-of-document
token appended, into shards of at most --max-tokens-per-shard tokens (pipeline.shards); the recipe's
repeats become the weights of the mixture files, so each distinct document is written once
(--materialize writes the copies). The output folder (default W/exports/<subset>/<format>) holds

    <component>/<component>-<chunk>-<n>.*   the shards (x1, x10 ...: the documents repeated 1, 10 ... times)
    mixture.*                               the mixture in the format's trainer's own file(s)
    documents.parquet                       document id -> paragraph ids (the shards' .csv.gz name documents)
    manifest.json, README.md                tokenizer (name, SHA-256), format, shards, tokens, mixture, how to load

A subset whose input tables changed since curate built it is refused (plan.check_current).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from beam_runners.options import make_pipeline
from pipeline.core import storage
from pipeline.core.errors import ConfigError
from pipeline.core.workdir import Workdir
from pipeline.shards import (
    FORMATS,
    Component,
    ShardInfo,
    from_repeats,
    read_doc_index,
    scale_to_target,
    token_dtype,
)
from pipeline.shards.mixture import write_mixture_files
from pipeline.stages.export import plan as P
from pipeline.stages.export import tokenizer as T
from pipeline.stages.export.card import card
from pipeline.stages.export.config import UNITS, ExportConfig
from pipeline.stages.export.transforms import STAGE, Export

log = logging.getLogger(__name__)

Config = ExportConfig

# The files of one shard beside its document index, data first (pipeline.shards' writers)
_SHARD_SUFFIXES = {"olmo": (".npy",), "megatron": (".bin", ".idx"), "datatrove": (".ds", ".ds.index", ".ds.metadata")}
_TARGET = {"olmo": ".npy", "megatron": "", "datatrove": ".ds"}


def output_location(wd: Workdir, config: ExportConfig) -> storage.Location:
    return storage.as_location(config.out) if config.out else wd.root / "exports" / config.subset / config.format


def _check(config: ExportConfig) -> None:
    if config.format not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, not {config.format!r}")
    if config.unit not in UNITS:
        raise ConfigError(f"--unit must be one of {', '.join(UNITS)}, not {config.unit!r}")
    if not config.tokenizer:
        raise ConfigError("export needs --tokenizer (minilm, a tokenizer.json file or folder, or a cached transformers id)")
    for name in ("chunk_documents", "batch_size", "max_tokens_per_shard"):
        if getattr(config, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1")
    if config.target_tokens is not None and config.target_tokens < 1:
        raise ConfigError("--target-tokens must be a positive number of tokens")


def _shards(root: storage.Location, names: list[str], fmt: str, dtype: str, local_root: Path) -> dict[str, list[ShardInfo]]:
    """ShardInfo of every shard written, by component, from the file names and each shard's document index
    (`directory`: under `local_root`, the folder the mixture files are written in)."""
    out: dict[str, list[ShardInfo]] = {}
    for rel in names:
        component, file = rel.split("/", 1)
        name = file[: -len(".csv.gz")]
        index = root / component / file
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / file
            local.write_bytes(index.read_bytes())
            rows = read_doc_index(local)
        files = tuple(name + s for s in _SHARD_SUFFIXES[fmt]) + (file,)
        out.setdefault(component, []).append(ShardInfo(fmt, str(local_root / component), name, name + _TARGET[fmt],
                                                       files, rows[-1].end if rows else 0, len(rows), dtype))  # fmt: skip
    return out


def export(config: ExportConfig, beam_argv: list[str] | None = None) -> dict[str, Any]:
    """Write the subset's shards, mixture, documents.parquet, manifest.json and README.md; return the manifest."""
    _check(config)
    wd = Workdir.of(config.workdir)
    storage.check_access(wd.root, write=config.out is None)
    tok, info = T.load(config.tokenizer, config.eos_token)
    dtype = token_dtype(config.format, info.vocab_size, config.token_dtype).name  # refuses a vocabulary too large
    plan = P.build(wd, config.subset, config.unit)
    final = output_location(wd, config)
    # Built beside the previous export, which it replaces whole when complete (storage.publish): locally one
    # folder swapped in; on an object store the shards go to a shadow prefix, the small files are uploaded
    # there, then it is published (journal, server-side copies, the manifest last).
    with ExitStack() as stack:
        if final.is_remote:
            storage.check_access(final)
            (root,) = stack.enter_context(storage.replacing([final]))
            staging = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pmc-curate-export-")))
        else:
            staging = stack.enter_context(storage.local_staging(final))
            root = storage.as_location(str(staging))
        source = f"{config.subset}"
        assignments = list(plan.assignments(config.chunk_documents))
        with make_pipeline(beam_argv) as p:
            _ = p | "Export" >> Export(config, [str(f) for f in plan.data_files], assignments, str(root),
                                       info.vocab_size, info.eos_id, source)  # fmt: skip
        # what was written, listed where it was written (any runner): the document indexes name the shards
        names = sorted(f.relative_to(root) for f in root.glob("*/*.csv.gz"))
        shards = _shards(root, names, config.format, dtype, staging)
        manifest = _finish(config, plan, info, dtype, shards, staging, final, root)
        if final.is_remote:
            for f in staging.rglob("*"):
                if f.is_file():
                    (root / f.relative_to(staging).as_posix()).write_from(f)
    log.info("export %s: %d documents, %d tokens in %d shards -> %s", config.subset, manifest["documents"],
             manifest["tokens"], len(manifest["shards"]), final)  # fmt: skip
    return manifest


def _finish(config: ExportConfig, plan: P.Plan, info: T.TokenizerInfo, dtype: str, shards: dict[str, list[ShardInfo]],
            staging: Path, final: storage.Location, written: storage.Location) -> dict[str, Any]:  # fmt: skip
    """Mixture files, documents.parquet, manifest.json and README.md into `staging`; the files name `final`,
    where the export is published (the shards are still at `written` meanwhile)."""
    materialized = config.materialize
    comps = [Component(c.name, tuple(shards.get(c.name, ())), 1 if materialized else c.repeat) for c in plan.components]
    budget = (plan.subset_manifest.get("budget") or {})
    target = config.target_tokens or budget.get("target_tokens")
    mixture = scale_to_target(comps, int(target)) if target else from_repeats(comps)
    root = str(final) if final.is_remote else str(final.local.resolve())
    mix_files = write_mixture_files(mixture, staging, "mixture", local_base=str(staging), root=root)
    docs = pa.table({
        "component": [c.name for c in plan.components for _ in c.doc_ids],
        "document_id": [d for c in plan.components for d in c.doc_ids],
        "paragraph_ids": [p for c in plan.components for p in c.paragraphs],
    })  # fmt: skip
    pq.write_table(docs, staging / "documents.parquet", compression="zstd")
    all_shards = [s for c in comps for s in c.shards]
    manifest: dict[str, Any] = {
        "subset": config.subset,
        "created_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "recipe": {k: plan.subset_manifest.get("recipe", {}).get(k) for k in ("name", "sha256")},
        "parameters": plan.subset_manifest.get("parameters"),
        "subset_inputs": plan.subset_manifest.get("inputs"),
        "tokenizer": info.to_dict(),
        "format": config.format,
        "dtype": dtype,
        "unit": config.unit,
        "materialized": materialized,
        "max_tokens_per_shard": config.max_tokens_per_shard,
        "chunk_documents": config.chunk_documents,
        "documents": sum(s.documents for s in all_shards),
        "distinct_documents": plan.documents,
        "tokens": sum(s.tokens for s in all_shards),
        "bytes": sum((written / s.directory[len(str(staging)) + 1 :] / f).info()["size"]
                     for s in all_shards for f in s.files) if final.is_remote else
                 sum((Path(s.directory) / f).stat().st_size for s in all_shards for f in s.files),  # fmt: skip
        "shards": [{**s.to_dict(), "directory": s.directory[len(str(staging)) + 1 :]} for s in all_shards],
        "mixture": {"target_tokens": mixture.target_tokens, "total_tokens": mixture.total_tokens,
                    "distinct_tokens": mixture.distinct_tokens, "components": mixture.report(),
                    "files": [p.name for p in mix_files]},  # fmt: skip
        "location": root,
    }
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    (staging / "README.md").write_text(card(manifest), encoding="utf-8")
    return manifest


def run(config: ExportConfig, beam_argv: list[str]) -> int:
    """Entry point of `pmc-curate export`."""
    m = export(config, beam_argv)
    epochs = ", ".join(f"{c['name']} {c['tokens']:,} tokens x {c['epochs']:.4g}" for c in m["mixture"]["components"])
    print(f"{m['subset']}: {m['documents']:,} documents, {m['tokens']:,} {m['tokenizer']['name']} tokens in "
          f"{len(m['shards'])} {m['format']} shards -> {m['location']}")
    print(f"mixture: {m['mixture']['total_tokens']:,} tokens to train on ({epochs})")
    return 0


__all__ = ["STAGE", "Config", "ExportConfig", "export", "output_location", "run"]
