"""`annotate --batch openai|jsonl` and `annotate --batch-results FILES`: the sample through a batch API.

    --batch openai          submit to the OpenAI Batch API at --base-url, poll, ingest (half price, <= 24 h)
    --batch jsonl           write request files for your own runner (vLLM `run_batch`), W/batches/ by default
    --batch-results FILES   ingest that runner's output files (or OpenAI's output/error files)

The library is pipeline/teacher/batch.py (docs/annotate-batch.md); this module is the stage's side:
which settings it takes, the estimate printed before any spend (at the batch price), the outputs
(W/annotations and W/rejects/annotate-*, the online path's rows, rebuilt whole from the shared request
cache) and the summary, which accounts for every sampled paragraph: annotated, rejected (by reason) or
pending (by reason: budget, batch still running, awaiting results). Exit 0 when every paragraph is
settled, 3 when some are pending (run again to resume), 2 on a configuration error.
"""

from __future__ import annotations

from typing import Any

from pipeline.core import storage
from pipeline.core.errors import ConfigError
from pipeline.core.workdir import Workdir
from pipeline.teacher.batch import (
    BatchRun,
    batch_estimate,
    ingest_results,
    run_openai_batches,
    write_jsonl_requests,
    write_outputs,
)
from pipeline.teacher.batch_requests import BatchConfig
from pipeline.teacher.config import TeacherConfig
from pipeline.teacher.preflight import Estimate
from pipeline.teacher.prompt import Prompt

INCOMPLETE_EXIT = 3
MODES = ("openai", "jsonl")


def batch_config(config: Any) -> BatchConfig:
    """The library's settings from the stage's flags (annotate's Config)."""
    if not 0 < config.batch_discount <= 1:
        raise ConfigError(f"--batch-discount must be in (0, 1] (the batch price / the online price), not {config.batch_discount}")
    if config.poll_seconds <= 0 or config.batch_max_requests < 1:
        raise ConfigError("--poll-seconds must be more than 0 and --batch-max-requests at least 1")
    if config.max_wait is not None and config.max_wait < 0:
        raise ConfigError("--max-wait must be 0 or more seconds")
    return BatchConfig(discount=config.batch_discount, max_requests_per_file=config.batch_max_requests,
                       poll_s=config.poll_seconds, poll_max_s=max(config.poll_seconds, BatchConfig.poll_max_s),
                       max_wait_s=config.max_wait)  # fmt: skip


def check(config: Any) -> None:
    """Refuse the combinations the batch path has no meaning for, before anything is read or paid."""
    if config.batch is not None and config.batch_results:
        raise ConfigError("--batch writes or submits requests, --batch-results ingests results: one at a time")
    if config.gold or config.compare:
        raise ConfigError("--gold and --compare run online (a few hundred calls); drop --batch / --batch-results")
    if not config.model:
        raise ConfigError("the batch path needs --model: the model name is in every request body and in the cache key "
                          "(for vLLM run_batch, the --served-model-name you will give it)")
    if config.batch == "openai" and not config.base_url:
        raise ConfigError("--batch openai needs --base-url (https://api.openai.com/v1 or another Batch API endpoint)")
    if config.teacher is not None:
        raise ConfigError("--teacher chooses the offline teacher of the online path; it has no batch endpoint")


def _print_estimate(teacher: TeacherConfig, est: Estimate, discount: float, what: str) -> None:
    priced = teacher.price_in or teacher.price_out
    print(f"{teacher.model} ({what}): {est.n_items} paragraphs, {est.n_cached} already in the cache; {est.n_calls} "
          f"calls ~{est.prompt_tokens:,} input + ~{est.completion_tokens:,} output tokens"
          + (f", ~${est.cost:,.4f} at the batch price (${teacher.price_in}/${teacher.price_out} per M tokens "
             f"x {discount})" if priced else "")
          + (f"; budget ${teacher.max_cost}" if teacher.max_cost is not None else ""))  # fmt: skip


def _finish(run: BatchRun, workdir: Workdir, teacher: TeacherConfig, prompt: Prompt) -> int:
    """Write the outputs, print the summary (every paragraph accounted for), and the exit code."""
    n_ann, n_rej = write_outputs(run.outcomes, workdir.annotations, workdir.rejects, teacher.model, prompt)
    s = run.summary
    assert n_ann == s["annotated"] and n_ann + n_rej + s["skipped"] == s["items"], s  # every paragraph once
    pending = ", ".join(f"{k}: {v}" for k, v in s["skip_reasons"].items())
    print(f"annotated {n_ann}, rejected {n_rej} {s['rejected'] or ''}, pending {s['skipped']}"
          + (f" ({pending})" if pending else "") + f" of {s['items']} sampled paragraphs; new tokens in "
          f"{s['prompt_tokens']:,} out {s['completion_tokens']:,} (returned usage), cost ${s['cost']:.4f} -> "
          f"{workdir.annotations}")  # fmt: skip
    if "batches_submitted" in s:
        print(f"batches: {s['batches_submitted']} submitted ({s['requests_submitted']} requests), "
              f"{s['batches_resumed']} resumed, {s['rounds']} rounds, {s['polls']} polls")  # fmt: skip
    if s["dropped_lines"]:
        print(f"result lines dropped (no row): {s['dropped_lines']}; e.g. " + "; ".join(s["dropped_examples"][:3]))
    if s["skipped"]:
        print(f"{s['skipped']} paragraphs pending; run the same command again to resume (nothing paid is lost)")
    return 0 if s["complete"] else INCOMPLETE_EXIT


def run_batch(config: Any, workdir: Workdir, prompt: Prompt, teacher: TeacherConfig, items: list[dict[str, Any]]) -> int:
    """`--batch openai|jsonl` or `--batch-results`, on the sample `items`."""
    bc = batch_config(config)
    if config.batch_results:
        run = ingest_results(items, prompt, teacher, list(config.batch_results), bc)
        print(f"ingested {len(config.batch_results)} results files: {run.summary['new_annotated']} new annotations, "
              f"{run.summary['lines_already_ingested']} lines already ingested")  # fmt: skip
        return _finish(run, workdir, teacher, prompt)
    est = batch_estimate(items, prompt, teacher, bc)
    _print_estimate(teacher, est, bc.discount, f"{config.batch} batch")
    if config.dry_run:
        return 0
    if config.batch == "openai":
        run = run_openai_batches(items, prompt, teacher, workdir.cache / "batches", bc)
        return _finish(run, workdir, teacher, prompt)
    folder = storage.as_location(config.batch_dir) if config.batch_dir else workdir.root / "batches"
    req = write_jsonl_requests(items, prompt, teacher, folder, bc)
    run = ingest_results(items, prompt, teacher, [], bc)  # what the cache already holds: the outputs so far
    for f in req.files:
        print(f"requests -> {f}")
    if req.files:
        print(f"{req.n_requests} requests in {len(req.files)} files, ~${req.estimate.cost:,.4f} at the batch price; "
              f"run them, e.g. `python -m vllm.entrypoints.openai.run_batch -i FILE -o RESULTS --model PATH "
              f"--served-model-name '{teacher.model}'`, then `pmc-curate annotate --workdir {workdir.root} --model "
              f"'{teacher.model}' --batch-results RESULTS...`")  # fmt: skip
    if req.skipped_budget:
        print(f"{req.skipped_budget} requests not written: over --max-cost ${teacher.max_cost}")
    return _finish(run, workdir, teacher, prompt)
