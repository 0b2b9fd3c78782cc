"""`pmc-curate annotate`: label the sample with a teacher LLM at any OpenAI-compatible endpoint (online), or
through a batch API (`--batch openai|jsonl`, `--batch-results`: batch.py).

Before the first call: a preflight request (reachable? key accepted?) and an estimate of tokens and
cost for the calls not yet in the cache. During the run: a progress bar. After: a check that every
sampled paragraph ended as exactly one annotation or one reject (transforms.py). Outputs are rewritten
whole on every run from the request cache, so a re-run (after a crash, a kill -9 or a budget stop) pays
only for the calls that never finished.

`--gold` runs the teacher on the hand-labelled gold set and reports agreement; `--compare A B`
annotates the sample with two models and reports their agreement (gold.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

from pipeline.core import agreement, storage
from pipeline.core.errors import ConfigError
from pipeline.core.options import option
from pipeline.core.workdir import Workdir
from pipeline.stages.annotate.batch import MODES, run_batch
from pipeline.stages.annotate.batch import check as check_batch
from pipeline.stages.annotate.gold import (
    DEFAULT_GOLD,
    agreement_between,
    gold_items,
    labels_by_id,
    load_gold,
    slug,
    write_report,
)
from pipeline.stages.annotate.transforms import annotate_and_check, sample_items
from pipeline.teacher.checkpoint import DEFAULT_EVERY, DEFAULT_SECONDS
from pipeline.teacher.config import TeacherConfig
from pipeline.teacher.preflight import EST_COMPLETION_TOKENS, estimate, preflight
from pipeline.teacher.prompt import Prompt, load_prompt

log = logging.getLogger(__name__)

INCOMPLETE_EXIT = 3
_CLIENT = TeacherConfig(base_url="", model="", cache_path="")  # the client's defaults
LOCAL_TEACHERS = ("smollm2", "rules")


@dataclass(frozen=True)
class Config:
    """`pmc-curate annotate`: the endpoint, the prompt, the client's limits and the budget."""

    workdir: str = option("", fixed=True, help="work directory with a sample table")
    base_url: str | None = option(None, help="OpenAI-compatible endpoint, e.g. http://gpu-node:8000/v1; default: start "
                                             "the offline SmolLM2 teacher on 127.0.0.1 (pipeline only, labels meaningless)")
    model: str | None = option(None, help="model name at the endpoint (required with --base-url)")
    prompt_version: str = option(_CLIENT.prompt_version, help="prompt version under prompts/biomed-labels/")
    concurrency: int = option(_CLIENT.concurrency, speed_only=True, help="requests in flight per worker")
    beam_batch_size: int | None = option(None, speed_only=True, deprecated=("--batch-size",),
                                         help="paragraphs per RunInference batch (default 4x concurrency, >= 64)")
    timeout: float = option(_CLIENT.timeout_s, speed_only=True, help="seconds per request")
    max_attempts: int = option(_CLIENT.max_transport_attempts, help="tries per request on 429/5xx/timeouts")
    backoff: float = option(_CLIENT.backoff_base_s, speed_only=True, help="first backoff in seconds (doubles, jittered)")
    price_in: float = option(0.0, help="USD per million input tokens (for the estimate and budget)")
    price_out: float = option(0.0, help="USD per million output tokens")
    max_cost: float | None = option(None, help="USD to spend on new calls in this run; stops cleanly, resumable")
    max_reject_rate: float = option(_CLIENT.max_reject_rate,
                                    help="stop calling when more than this share of new calls ends rejected")
    checkpoint_every: int = option(
        DEFAULT_EVERY, speed_only=True,
        help="at most this many finished calls are held only on local disk: a resume on another machine repays "
             "at most these + the calls in flight (W/cache/teacher/*.parquet)")
    checkpoint_seconds: float = option(DEFAULT_SECONDS, speed_only=True,
                                       help="and a finished call reaches the work directory within this many seconds")
    dry_run: bool = option(False, help="print the estimate and stop")
    no_progress: bool = option(False, speed_only=True, help="no progress bar")
    gold: bool = option(False, help="annotate the gold set and report agreement with the hand labels")
    gold_file: Path = option(DEFAULT_GOLD, help="the gold set (TSV: id, document_type, domain, educational_score)")
    gold_data: Path | None = option(None, help="folder of the gold set's JATS files (the PMC-OA articles it labels)")
    compare: list[str] | None = option(None, nargs=2, metavar=("MODEL_A", "MODEL_B"),
                                       help="annotate the sample with two models at --base-url and report their agreement")
    teacher: str | None = option(None, choices=LOCAL_TEACHERS,
                                 help="offline teacher when there is no --base-url: smollm2 (the default: a 135M LLM, "
                                      "labels meaningless) or rules (keyword rules, not an LLM: labels with a known signal)")
    batch: str | None = option(None, choices=MODES,
                               help="through a batch API: openai (the Batch API at --base-url, at the batch price) or "
                                    "jsonl (request files for your own runner, e.g. vLLM run_batch); docs/annotate.md")
    batch_results: list[str] | None = option(None, nargs="+", metavar="FILE", input_path=True,
                                             help="ingest these results files of `--batch jsonl` requests (vLLM run_batch or "
                                                  "OpenAI output/error files)")
    batch_discount: float = option(0.5, help="batch price / online price applied to --price-in/--price-out for the "
                                             "estimate, --max-cost and the reported cost (OpenAI bills batches at half)")
    batch_dir: str = option("", help="where --batch jsonl writes its request files (default: W/batches)")
    batch_max_requests: int = option(50_000, help="requests per batch file (the OpenAI limit; files also stay under 200 MB)")
    max_wait: float | None = option(None, help="--batch openai: stop polling after this many seconds; the batches keep "
                                               "running and the next run resumes them (default: wait until done)")
    poll_seconds: float = option(30.0, speed_only=True,
                                 help="--batch openai: first wait between polls (x1.5 per poll, up to 10 minutes)")


def _teacher(config: Config, workdir: Workdir, base_url: str, model: str, prompt: Prompt, total: int) -> TeacherConfig:
    return TeacherConfig(
        api_key_env="" if config.base_url is None else "OPENAI_API_KEY",  # the local teacher never sees the key
        base_url=base_url, model=model, cache_path=str(workdir.local_cache / "teacher.sqlite"),
        checkpoint_dir=str(workdir.cache / "teacher"), checkpoint_every=config.checkpoint_every,
        checkpoint_seconds=config.checkpoint_seconds,
        prompt_version=config.prompt_version, concurrency=config.concurrency, timeout_s=config.timeout,
        max_transport_attempts=config.max_attempts, backoff_base_s=config.backoff, price_in=config.price_in,
        price_out=config.price_out, max_cost=config.max_cost, progress=not config.no_progress, total=total,
        max_reject_rate=config.max_reject_rate, est_completion_tokens=min(EST_COMPLETION_TOKENS, prompt.max_tokens),
    )  # fmt: skip


def run(config: Config, beam_argv: list[str]) -> int:
    """Annotate the sample (or the gold set, or compare two models); exit 3 when stopped before the end."""
    workdir = Workdir.of(config.workdir)
    prompt = load_prompt(config.prompt_version)
    if config.concurrency < 1:
        raise ConfigError("--concurrency must be at least 1")
    if config.checkpoint_every < 1 or config.checkpoint_seconds <= 0:
        raise ConfigError("--checkpoint-every must be at least 1 and --checkpoint-seconds more than 0")
    if config.gold and config.gold_data is None:
        raise ConfigError("--gold needs --gold-data DIR: the folder of PMC-OA JATS files the gold set labels "
                          "(the gold set stores paragraph ids, not their text)")
    storage.check_access(workdir.root)  # a missing bucket or a wrong endpoint stops here, before any paid call
    if config.batch is not None or config.batch_results:
        return _run_batch(config, workdir, prompt)
    if config.base_url is None and config.model is not None and not config.compare:
        raise ConfigError("--model names a model at --base-url; without --base-url the offline teacher is used")
    if config.base_url is not None and config.teacher is not None:
        raise ConfigError("--teacher chooses the offline teacher started when there is no --base-url; drop one of them")
    if config.base_url is None and config.teacher == "rules":
        from pipeline.teacher.rule_server import rule_teacher

        log.info("offline teacher: keyword rules, not an LLM (pipeline/teacher/rules.py behind an OpenAI-compatible endpoint)")
        with rule_teacher() as (url, model):
            return _run_with_endpoint(config, beam_argv, workdir, prompt, url, model)
    if config.base_url is None:
        from pipeline.teacher.local import local_teacher

        # The local server answers one request at a time: requests queued behind others would only
        # run into their timeout and be sent again (measured: 25 of 251 gold calls at concurrency 16).
        if config.concurrency > 1 or config.timeout < 600:
            log.info("offline teacher: concurrency 1 and a 600 s timeout (it serves one request at a time)")
        config = replace(config, concurrency=1, timeout=max(config.timeout, 600.0))
        with local_teacher(workdir.local_cache / "teacher-server.log") as (url, model):
            return _run_with_endpoint(config, beam_argv, workdir, prompt, url, model)
    if not config.model and not config.compare:
        raise ConfigError("--base-url needs --model")
    return _run_with_endpoint(config, beam_argv, workdir, prompt, config.base_url, config.model or "")


def _run_batch(config: Config, workdir: Workdir, prompt: Prompt) -> int:
    """`--batch openai|jsonl` or `--batch-results FILES` (batch.py)."""
    check_batch(config)
    if config.batch == "openai":
        assert config.base_url is not None and config.model is not None
        preflight(config.base_url, config.model, "OPENAI_API_KEY")
    print(f"prompt {prompt.task}/{prompt.version} (hash {prompt.hash})")
    items = sample_items(workdir)
    teacher = _teacher(config, workdir, config.base_url or "", config.model or "", prompt, len(items))
    return run_batch(config, workdir, prompt, teacher, items)


def _run_with_endpoint(config: Config, beam_argv: list[str], workdir: Workdir, prompt: Prompt,
                       base_url: str, model: str) -> int:  # fmt: skip
    key_env = "" if config.base_url is None else "OPENAI_API_KEY"
    preflight(base_url, model if not config.compare else config.compare[0], key_env)
    print(f"prompt {prompt.task}/{prompt.version} (hash {prompt.hash})")
    if config.gold:
        return _gold(config, beam_argv, workdir, prompt, base_url, model)
    items = sample_items(workdir)
    if config.compare:
        return _compare(config, beam_argv, workdir, prompt, base_url, items)
    teacher = _teacher(config, workdir, base_url, model, prompt, len(items))
    summary = annotate_and_check(workdir.glob("sample"), len(items), workdir.annotations, workdir.rejects, teacher,
                                 prompt, beam_argv, config.beam_batch_size, estimate(items, prompt, teacher), config.dry_run)  # fmt: skip
    if summary.get("dry_run"):
        return 0
    if summary["skip_reasons"].get("fatal"):
        return 2
    return 0 if summary["complete"] else INCOMPLETE_EXIT


def _gold(config: Config, beam_argv: list[str], workdir: Workdir, prompt: Prompt, base_url: str, model: str) -> int:
    """The teacher on the hand-labelled gold set, and its agreement with the hand labels."""
    assert config.gold_data is not None
    gold = load_gold(config.gold_file)
    items = gold_items(gold, config.gold_data)
    teacher = _teacher(config, workdir, base_url, model, prompt, len(items))
    out = workdir.root / "gold" / slug(model)
    summary = annotate_and_check(items, len(items), out / "annotations", out / "rejects", teacher, prompt,
                                 beam_argv, config.beam_batch_size, estimate(items, prompt, teacher), config.dry_run)  # fmt: skip
    if config.dry_run:
        return 0
    report = agreement_between({g["id"]: g for g in gold}, labels_by_id(out / "annotations"))
    report.update(model=model, prompt_version=prompt.version, prompt_hash=prompt.hash, gold_file=str(config.gold_file),
                  rejected=summary["rejected"])  # fmt: skip
    path = write_report(workdir, f"gold-agreement-{slug(model)}.json", report)
    print(agreement.format_report(report, f"teacher {model} vs gold ({config.gold_file.name})"))
    print(f"report -> {path}")
    return 0 if summary["complete"] else INCOMPLETE_EXIT


def _compare(config: Config, beam_argv: list[str], workdir: Workdir, prompt: Prompt, base_url: str,
             items: list[dict]) -> int:  # fmt: skip
    """The sample annotated by two models at the same endpoint, and their agreement."""
    assert config.compare is not None
    labels = []
    complete = True
    for m in config.compare:
        teacher = _teacher(config, workdir, base_url, m, prompt, len(items))
        out = workdir.root / "compare" / slug(m)
        s = annotate_and_check(workdir.glob("sample"), len(items), out / "annotations", out / "rejects", teacher,
                               prompt, beam_argv, config.beam_batch_size, estimate(items, prompt, teacher), config.dry_run)  # fmt: skip
        complete &= bool(s.get("complete", True))
        if not config.dry_run:
            labels.append(labels_by_id(out / "annotations"))
    if config.dry_run:
        return 0
    a, b = config.compare
    report = agreement_between(labels[0], labels[1])
    report.update(model_a=a, model_b=b, prompt_version=prompt.version, prompt_hash=prompt.hash)
    path = write_report(workdir, f"teacher-agreement-{slug(a)}-vs-{slug(b)}.json", report)
    print(agreement.format_report(report, f"{a} vs {b} on the sample"))
    print(f"report -> {path}")
    return 0 if complete else INCOMPLETE_EXIT
