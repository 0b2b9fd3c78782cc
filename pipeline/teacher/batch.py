"""Annotate the sample through a batch API: the OpenAI Batch API, or JSONL files for vLLM's `run_batch`.

    run_openai_batches(items, ...)      submit, poll, download, validate; rounds until every call is settled
    write_jsonl_requests(items, ...)    request files for the user's own runner (vLLM run_batch)
    ingest_results(items, files, ...)   its output files (or OpenAI's) -> the cache
    write_outputs(outcomes, ...)        W/annotations and W/rejects/annotate-*, the online path's rows

Both paths share the online client's SQLite cache and work-directory checkpoints (cache.py,
checkpoint.py) and its cache key, so a paragraph is paid for once whichever way, and any mix of
online and batch runs: requests are written only for calls with no outcome, and a results line for a
finished call is skipped. Every sampled paragraph ends as an `Outcome` the online path would give:
annotated, rejected with a reason (pipeline/core/errors.py, the `batch_*` reasons included), or
skipped (budget, batch still running, no result yet) so the run is incomplete and resumable.

Cost: the estimate and the budget use the batch price (`--price-in/--price-out` x `discount`); the
summary's tokens and cost come from the `usage` of the replies ingested in this run.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import openai

from pipeline.core import provenance, storage
from pipeline.core.errors import RejectReason
from pipeline.core.records import Annotation, Reject, arrow_schema
from pipeline.core.storage import Location
from pipeline.teacher.batch_openai import OpenAIBatches
from pipeline.teacher.batch_requests import (
    BatchConfig,
    BatchRequest,
    CustomId,
    SampleIndex,
    pending_requests,
    split_requests,
    write_request_files,
)
from pipeline.teacher.batch_results import Ingest, Ingester
from pipeline.teacher.batch_state import BatchPart, BatchStore
from pipeline.teacher.cache import RequestCache
from pipeline.teacher.config import Outcome, TeacherConfig
from pipeline.teacher.preflight import Estimate, estimate, import_checkpoints
from pipeline.teacher.prompt import Prompt, input_hash
from pipeline.teacher.rows import annotation_row, outcome_from_cache, reject_row

log = logging.getLogger(__name__)

STAGE = "annotate"
AWAITING = "awaiting_results"  # skip reason: requests written (jsonl) or not yet answered


@dataclass
class BatchRun:
    """Every sampled paragraph's Outcome, in sample order, and the summary the command prints."""

    outcomes: list[Outcome]
    summary: dict[str, Any]


@dataclass
class JsonlRequests:
    """Request files written for a user's own batch runner."""

    files: list[Location]
    n_requests: int
    estimate: Estimate
    skipped_budget: int = 0


@dataclass
class _Session:
    """The sample, the cache and the checkpoints of one batch run."""

    index: SampleIndex
    cache: RequestCache
    ingester: Ingester
    total: Ingest = field(default_factory=Ingest)

    @classmethod
    def open(cls, items: list[dict[str, Any]], prompt: Prompt, teacher: TeacherConfig) -> _Session:
        index = SampleIndex.build(items, prompt, teacher.model)
        checkpoints = import_checkpoints(teacher)  # a fresh machine starts with every checkpointed call
        cache = RequestCache(teacher.cache_path)
        ingester = Ingester(index, cache, checkpoints)
        ingester.settle_exhausted()
        return cls(index, cache, ingester)


def batch_estimate(items: list[dict[str, Any]], prompt: Prompt, teacher: TeacherConfig, config: BatchConfig) -> Estimate:
    """preflight.estimate for the calls not cached, at the batch price (x `config.discount`)."""
    est = estimate(items, prompt, teacher)
    return replace(est, cost=est.cost * config.discount)


def _request_cost(r: BatchRequest, teacher: TeacherConfig, config: BatchConfig) -> float:
    return teacher.cost(r.est_prompt_tokens, r.est_completion_tokens) * config.discount


def _fit_budget(requests: list[BatchRequest], teacher: TeacherConfig, config: BatchConfig,
                committed: float) -> tuple[list[BatchRequest], list[BatchRequest]]:  # fmt: skip
    """The requests (in order) whose estimated cost fits in what is left of --max-cost, and the rest."""
    if teacher.max_cost is None:
        return requests, []
    left = teacher.max_cost - committed
    for i, r in enumerate(requests):
        left -= _request_cost(r, teacher, config)
        if left < 0:
            log.warning("budget of $%.4f reached: %d of %d requests not submitted; run again with a higher "
                        "--max-cost to resume", teacher.max_cost, len(requests) - i, len(requests))  # fmt: skip
            return requests[:i], requests[i:]
    return requests, []


def run_openai_batches(items: list[dict[str, Any]], prompt: Prompt, teacher: TeacherConfig, state_dir: Location,
                       config: BatchConfig | None = None, client: openai.OpenAI | None = None,
                       sleep: Callable[[float], None] = time.sleep) -> BatchRun:  # fmt: skip
    """Annotate `items` through the OpenAI Batch API at `teacher.base_url`, resuming the batches in `state_dir`.

    Round by round: submit requests for the calls with no outcome that no open batch asks for (within
    --max-cost); wait for every open batch (a killed run's too: found in `state_dir`, W/cache/batches),
    download, ingest; then resubmit expired, missing and retryable requests (up to `max_resubmits` each)
    and retries of invalid replies, up to `max_rounds` submissions.
    """
    config = config or BatchConfig()
    s = _Session.open(items, prompt, teacher)
    store = BatchStore(state_dir)
    driver = OpenAIBatches(teacher, store, config, client, sleep)
    deadline = time.monotonic() + config.max_wait_s if config.max_wait_s is not None else None
    failed: dict[str, tuple[str, str]] = {}  # input hash -> (reason, detail): rejected in this run, not cached
    pending: dict[str, str] = {}  # input hash -> why it has no outcome yet (skipped)
    resubmits: Counter = Counter()
    reserved: dict[str, float] = {}  # part -> estimated cost, while a part submitted in this run is out
    open_parts = [p for p in store.parts(s.index.context) if not p.ingested]
    resumed, submitted, n_requests, rounds = len(open_parts), 0, 0, 0
    try:
        for p in open_parts:
            if p.batch_id is None:
                driver.adopt(p)
        while True:
            # Ask for every call with no outcome that no open batch is already asking for (a resumed
            # run's batches included), then wait for all open batches and collect them.
            inflight = {_hash(cid) for p in open_parts for cid in p.custom_ids}
            requests = pending_requests(s.index, s.cache, exclude=set(failed) | inflight)
            if requests and rounds >= config.max_rounds:
                pending.update({r.input_hash: "max_rounds" for r in requests})
            elif requests:
                committed = teacher.cost(s.total.prompt_tokens, s.total.completion_tokens) * config.discount + sum(reserved.values())
                requests, over = _fit_budget(requests, teacher, config, committed)
                pending.update({r.input_hash: "budget" for r in over})
                if requests:
                    rounds += 1
                for part in split_requests(requests, config.max_requests_per_file, config.max_bytes_per_file):
                    est = sum(_request_cost(r, teacher, config) for r in part)
                    bp = driver.submit(s.index, part, est)
                    reserved[bp.name] = est
                    open_parts.append(bp)
                    submitted += 1
                    n_requests += len(part)
            if not open_parts:
                break
            done = driver.wait(open_parts, deadline)
            for p in [p for p in open_parts if p.terminal]:
                _collect(s, driver, store, p, config, failed, resubmits)
                reserved.pop(p.name, None)
            open_parts = [p for p in open_parts if not p.terminal]
            if not done:
                pending.update({_hash(cid): "batch_in_progress" for p in open_parts for cid in p.custom_ids})
                log.warning("%d batches still running after the wait; run again to resume polling them", len(open_parts))
                break
        outcomes = final_outcomes(items, s.index, s.cache, failed, pending)
    finally:
        s.cache.close()
        driver.close()
    return BatchRun(outcomes, summarize(outcomes, s.total, teacher, config, batches_submitted=submitted,
                                        batches_resumed=resumed, requests_submitted=n_requests, rounds=rounds,
                                        polls=driver.polls))  # fmt: skip


def _hash(custom_id: str) -> str:
    cid = CustomId.parse(custom_id)
    assert cid is not None, custom_id  # parts hold only custom_ids this module wrote
    return cid.input_hash


def _collect(s: _Session, driver: OpenAIBatches, store: BatchStore, part: BatchPart, config: BatchConfig,
             failed: dict[str, tuple[str, str]], resubmits: Counter) -> None:  # fmt: skip
    """Ingest a terminal part's results, settle the requests it did not answer, and mark it ingested."""
    report = s.ingester.ingest(driver.download(part), strict=False)
    reason, retry = {"failed": (RejectReason.BATCH_FAILED, False), "cancelled": (RejectReason.BATCH_CANCELLED, False),
                     "expired": (RejectReason.BATCH_EXPIRED, True)}.get(part.status, (RejectReason.BATCH_NO_RESULT, True))  # fmt: skip
    detail = "; ".join(part.errors) or f"batch {part.batch_id} {part.status} without a result for this request"
    unanswered = [ih for cid in part.custom_ids if cid not in report.answered and (ih := _hash(cid)) in s.index.items]
    done = s.cache.has_many([s.index.key(ih) for ih in unanswered])
    for ih in unanswered:
        if s.index.key(ih) in done:
            continue
        if retry:
            report.retry[ih] = reason.value
        else:
            report.failed[ih] = (reason.value, detail)
    for ih, why in report.retry.items():
        resubmits[ih] += 1
        if resubmits[ih] > config.max_resubmits:
            failed[ih] = (why, f"{why} {resubmits[ih]} times in this run (resubmitted {config.max_resubmits} times); "
                               "a later run asks again")  # fmt: skip
    failed.update(report.failed)
    s.total.merge(report)
    part.ingested = True
    store.save(part)  # after the ingester's checkpoint flush: a kill before this re-ingests, idempotently
    log.info("batch %s %s: %d annotated, %d rejected, %d invalid replies to ask again, %d to resubmit, %d failed",
             part.batch_id, part.status, report.annotated, sum(report.rejected.values()), sum(report.invalid.values()),
             len(report.retry), len(report.failed))  # fmt: skip


def write_jsonl_requests(items: list[dict[str, Any]], prompt: Prompt, teacher: TeacherConfig, folder: Location,
                         config: BatchConfig | None = None, stem: str | None = None) -> JsonlRequests:  # fmt: skip
    """Request files (within the per-file limits) for every call of the sample with no outcome in the cache.

    The files replace earlier ones with the same stem (default `requests-<context>`), with a manifest
    `<stem>.manifest.json` beside them. Run them with e.g. `python -m vllm.entrypoints.openai.run_batch
    -i FILE -o RESULTS --model M`, then `ingest_results` the outputs.
    """
    config = config or BatchConfig()
    s = _Session.open(items, prompt, teacher)
    try:
        requests = pending_requests(s.index, s.cache)
    finally:
        s.cache.close()
    requests, over = _fit_budget(requests, teacher, config, 0.0)
    stem = stem or f"requests-{s.index.context}"
    folder.mkdir()
    for old in folder.glob(f"{stem}-*.jsonl"):
        old.unlink()
    files = write_request_files(split_requests(requests, config.max_requests_per_file, config.max_bytes_per_file), folder, stem)
    p_tok = sum(r.est_prompt_tokens for r in requests)
    c_tok = sum(r.est_completion_tokens for r in requests)
    needing = sum(len(s.index.items[r.input_hash]) for r in (*requests, *over))
    est = Estimate(len(items), len(items) - needing, p_tok, c_tok, teacher.cost(p_tok, c_tok) * config.discount)
    (folder / f"{stem}.manifest.json").write_text(json.dumps({
        "prompt_version": prompt.version, "prompt_hash": prompt.hash, "model": teacher.model,
        "context": s.index.context, "requests": len(requests), "files": [f.name for f in files],
        "est_prompt_tokens": p_tok, "est_completion_tokens": c_tok, "est_cost": est.cost, "not_written_budget": len(over),
    }, indent=2))  # fmt: skip
    return JsonlRequests(files, len(requests), est, len(over))


def ingest_results(items: list[dict[str, Any]], prompt: Prompt, teacher: TeacherConfig, files: list[Location | str],
                   config: BatchConfig | None = None) -> BatchRun:  # fmt: skip
    """Ingest results files (vLLM run_batch or OpenAI format) of this sample; every paragraph's Outcome.

    A file with no line of this sample, prompt and model is a ConfigError before anything is written.
    Paragraphs without a result (not run yet, truncated file, retryable error) are skipped: write the
    requests again (`write_jsonl_requests` writes only those) and ingest their results.
    """
    config = config or BatchConfig()
    s = _Session.open(items, prompt, teacher)
    try:
        data = [(str(loc), storage.as_location(loc).read_bytes()) for loc in files]
        report = s.ingester.ingest(data, strict=True)
        s.ingester.settle_exhausted()
        s.total.merge(report)
        outcomes = final_outcomes(items, s.index, s.cache, dict(report.failed), dict(report.retry))
    finally:
        s.cache.close()
    return BatchRun(outcomes, summarize(outcomes, s.total, teacher, config, files=len(files)))


def final_outcomes(items: list[dict[str, Any]], index: SampleIndex, cache: RequestCache,
                   failed: dict[str, tuple[str, str]], pending: dict[str, str]) -> list[Outcome]:  # fmt: skip
    """One Outcome per item, in order: from the cache, else a reject of this run (input hash -> (reason,
    detail)), else skipped with the reason in `pending` (input hash -> reason; default awaiting_results)."""
    out = []
    for item in items:
        ih = input_hash(item.get("title"), item.get("section_title"), item["text"])
        row = cache.get(index.key(ih))
        if row is not None:
            out.append(outcome_from_cache(item, ih, row))
        elif ih in failed:
            reason, detail = failed[ih]
            out.append(Outcome(item, "rejected", ih, reason=reason, detail=detail))
        else:
            out.append(Outcome(item, "skipped", ih, reason=pending.get(ih, AWAITING)))
    return out


def summarize(outcomes: list[Outcome], total: Ingest, teacher: TeacherConfig, config: BatchConfig,
              **extra: Any) -> dict[str, Any]:  # fmt: skip
    """The run's summary: every paragraph accounted for, new tokens and cost from the returned usage."""
    status = Counter(o.status for o in outcomes)
    rejected = Counter(o.reason for o in outcomes if o.status == "rejected")
    skipped = Counter(o.reason for o in outcomes if o.status == "skipped")
    return {
        "model": teacher.model, "items": len(outcomes), "annotated": status["annotated"],
        "rejected": dict(rejected.most_common()), "skipped": status["skipped"], "skip_reasons": dict(skipped),
        "complete": status["skipped"] == 0, "prompt_tokens": total.prompt_tokens,
        "completion_tokens": total.completion_tokens,
        "cost": teacher.cost(total.prompt_tokens, total.completion_tokens) * config.discount,
        "new_annotated": total.annotated, "new_rejected": dict(total.rejected), "invalid_replies": dict(total.invalid),
        "lines_already_ingested": total.already, "dropped_lines": dict(total.dropped),
        "dropped_examples": list(total.examples), **extra,
    }  # fmt: skip


def write_outputs(outcomes: list[Outcome], out_dir: Location, rejects_dir: Location, model: str,
                  prompt: Prompt, batch: str | None = None) -> tuple[int, int]:  # fmt: skip
    """Replace W/annotations/*.parquet and W/rejects/annotate-*.parquet with these outcomes' rows (the
    online path's rows: rows.annotation_row / rows.reject_row); skipped paragraphs have none. (annotated, rejected).
    Both folders are built beside the old ones and replace them whole (storage.replacing).
    `batch` ("openai" or "jsonl") names the endpoint kind in the annotations' provenance metadata."""
    import pyarrow as pa

    ann = [annotation_row(o, model, prompt.version, prompt.hash) for o in outcomes if o.status == "annotated"]
    rej = [reject_row(o, STAGE) for o in outcomes if o.status == "rejected"]
    with storage.replacing([out_dir, rejects_dir], ["", f"{STAGE}-"]) as (new_out, new_rejects):
        if ann:
            record = provenance.teacher_record(model, "", prompt.version, prompt.hash, batch)
            if batch is None:
                record["endpoint_kind"] = "batch endpoint (kind not given)"
            schema = arrow_schema(Annotation, provenance.parquet_metadata(dict(record, tool=provenance.tool())))
            storage.write_parquet(pa.Table.from_pylist(ann, schema=schema), new_out / "part-00000-of-00001.parquet")
        if rej:
            storage.write_parquet(pa.Table.from_pylist(rej, schema=arrow_schema(Reject)),
                                  new_rejects / f"{STAGE}-00000-of-00001.parquet")  # fmt: skip
    return len(ann), len(rej)
