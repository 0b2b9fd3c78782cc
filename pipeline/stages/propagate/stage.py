"""`pmc-curate propagate`: apply the trained student to every paragraph with Beam RunInference.

    pmc-curate propagate --workdir W [--batch-size B] [--device cpu|cuda] [--max-length L] [Beam flags]

Exactly one label row per paragraph, or one reject with its reason; paragraphs are never dropped or
rewritten (selection happens later, in SQL). A re-run labels only the paragraphs without a label for
their current input from the same model (after `parse --update`: the new and edited ones) and keeps the
other labels; `--full` labels every paragraph (delta.py). W (and --model) may be on s3:// or gs://.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from beam_runners.dryrun import is_dry_run
from beam_runners.options import make_pipeline
from pipeline.core import storage, tables
from pipeline.core.errors import ConfigError
from pipeline.core.precision import CPU_PRECISIONS, check_fallback_margin
from pipeline.core.workdir import Workdir
from pipeline.stages.propagate import delta
from pipeline.stages.propagate.config import PropagateConfig, fallback_margin
from pipeline.stages.propagate.transforms import STAGE, Propagate

log = logging.getLogger(__name__)

Config = PropagateConfig


def summarize(workdir: Workdir) -> dict[str, Any]:
    """Counts from what was written: paragraphs, labels, truncated, rejects by reason."""
    n, truncated, models = tables.first_row(
        "SELECT count(*), coalesce(sum(truncated::INT), 0), list(DISTINCT model_id) FROM read_parquet($files)",
        workdir.files("labels")) or (0, 0, [])  # fmt: skip
    return {"paragraphs": tables.count_rows(workdir.files("paragraphs")) or 0, "labels": n,
            "truncated": int(truncated), "model_ids": models,
            "rejects": tables.rejects_by_reason(workdir.rejects, STAGE)}  # fmt: skip


def run_propagate(workdir: Workdir, config: PropagateConfig, beam_argv: list[str] | None = None) -> dict[str, Any]:
    """Run the Beam pipeline; return summarize() of its output (also written to W/_stages/state/propagate.json)."""
    config = replace(config, model_dir=config.model_dir or str(workdir.model))
    if not workdir.has_table("paragraphs"):
        raise ConfigError(f"no paragraphs table in {workdir.root}; run `pmc-curate parse` first")
    if not (storage.as_location(config.model_dir) / "heads.safetensors").is_file():
        raise ConfigError(f"no trained student in {config.model_dir}; run `pmc-curate train` first")
    if config.max_tokens is not None and config.max_tokens < 0:
        raise ConfigError("--max-tokens must be >= 0 (0: no cap)")
    if config.batch_size < 1 or config.beam_batch_size < 1:
        raise ConfigError("--batch-size and --beam-batch-size must be >= 1")
    if config.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("--device cuda requested but torch sees no CUDA device")
        if config.precision in CPU_PRECISIONS:
            raise ConfigError(f"--precision {config.precision} is a CPU path; with --device cuda use auto, fp16, bf16 or fp32")
    margin = fallback_margin(config)
    check_fallback_margin(margin, config.precision)  # here too, so the job fails before its workers start
    fingerprint = delta.model_fingerprint(config.model_dir, config.max_length, config.precision,
                                         tuple(config.tfidf_heads), margin)
    if is_dry_run(beam_argv):  # --dry-run FILE: build the job and write it to FILE (DryRunFinished), W untouched
        with make_pipeline(beam_argv) as p:
            _ = p | "Propagate" >> Propagate(workdir, config, workdir.glob("paragraphs"))
    # New labels and rejects folders beside the tables, swapped in whole when the run has finished: the kept
    # labels of a delta (delta.py) and the pipeline's labels go there; an error or a kill leaves the old ones.
    with workdir.rewriting(("labels", "rejects"), rejects_prefix=f"{STAGE}-") as out:
        plan = delta.plan(workdir, fingerprint, out.labels, full=config.full)
        if plan.full:
            log.info("propagate: labelling every paragraph (%s)", plan.reason)
        if plan.full or plan.todo:
            with make_pipeline(beam_argv) as p:
                _ = p | "Propagate" >> Propagate(out, config, plan.input_glob)
    summary = summarize(workdir)
    summary["model_dir"] = config.model_dir
    summary["model_fingerprint"] = fingerprint
    summary["mode"] = "full" if plan.full else "delta"
    summary["kept"] = plan.kept
    summary["labelled_now"] = summary["labels"] - plan.kept
    delta.write_state(workdir, summary)  # the stage's own file, apart from the flow's marker
    missing = summary["paragraphs"] - summary["labels"] - sum(summary["rejects"].values())
    if missing:
        log.error("%d paragraphs have neither a label nor a reject", missing)
    return summary


def run(config: PropagateConfig, beam_argv: list[str]) -> int:
    """Entry point of `pmc-curate propagate`."""
    workdir = Workdir.of(config.workdir)
    storage.check_access(workdir.root, write=not is_dry_run(beam_argv))  # a missing bucket, a dead endpoint or a 403
    # stops here, before any work
    s = run_propagate(workdir, config, beam_argv)
    pct = 100.0 * s["truncated"] / s["labels"] if s["labels"] else 0.0
    rejects = ", ".join(f"{k}: {v}" for k, v in s["rejects"].items()) or "none"
    print(f"labelled {s['labels']} of {s['paragraphs']} paragraphs with {', '.join(s['model_ids'])} -> {workdir.labels}"
          + (f" ({s['labelled_now']} now, {s['kept']} kept from the previous run)" if s["mode"] == "delta" else ""))
    print(f"truncated at max length: {s['truncated']} ({pct:.1f}%); rejects: {rejects}")
    return 0 if s["labels"] + sum(s["rejects"].values()) == s["paragraphs"] else 1
