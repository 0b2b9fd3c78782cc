"""`pmc-curate annotate`: label the sample with a teacher LLM at any OpenAI-compatible endpoint.

    sample rows -> RunInference(TeacherModelHandler) -> annotations | rejects (| skipped at budget)

Before the first call: a preflight request (reachable? key accepted?) and an estimate of tokens
and cost for the calls not yet in the cache. During the run: a progress bar. After: a check that
every sampled paragraph ended as exactly one annotation or one reject. Outputs are rewritten whole
on every run from the request cache, so a re-run (after a crash, a kill -9 or a budget stop) pays
only for the calls that never finished.

`--gold` runs the teacher on the hand-labelled gold set and reports agreement; `--compare A B`
annotates the sample with two models and reports their agreement (pipeline/agreement.py).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.ml.inference.base import PredictionResult, RunInference

from beam_runners.options import pipeline_options
from pipeline.core import agreement, storage
from pipeline.core.errors import ConfigError
from pipeline.core.labels import HEADS
from pipeline.core.records import Annotation, Reject, arrow_schema
from pipeline.core.storage import Location
from pipeline.core.workdir import Workdir
from pipeline.stages.annotate.handler import TeacherModelHandler
from pipeline.teacher.checkpoint import DEFAULT_EVERY, DEFAULT_SECONDS
from pipeline.teacher.client import Outcome, TeacherConfig
from pipeline.teacher.preflight import (
    EST_COMPLETION_TOKENS,
    Estimate,
    estimate,
    import_checkpoints,
    preflight,
)
from pipeline.teacher.prompt import PROMPTS_ROOT, Prompt, load_prompt
from pipeline.teacher.reply import validate_labels

log = logging.getLogger(__name__)

STAGE = "annotate"
NAMESPACE = "pmc_curate_annotate"
ITEM_COLUMNS = ["id", "article_id", "title", "section_title", "text"]
REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_GOLD = PROMPTS_ROOT / "biomed-labels" / "gold.tsv"
DEFAULT_GOLD_DATA = REPO_ROOT.parent / "shared" / "data" / "pmc-oa-sample"
INCOMPLETE_EXIT = 3


# ---------------------------------------------------------------------------------------------- Beam
class _Route(beam.DoFn):
    """PredictionResult(Outcome) -> Annotation row (main) | Reject row ("rejects"); counts everything."""

    def __init__(self, model: str, prompt_version: str, prompt_hash: str) -> None:
        self.model, self.prompt_version, self.prompt_hash = model, prompt_version, prompt_hash
        self.counters: dict[str, Any] = {}

    def _inc(self, name: str, n: int = 1) -> None:
        if name not in self.counters:
            self.counters[name] = Metrics.counter(NAMESPACE, name)
        self.counters[name].inc(n)

    def process(self, result: PredictionResult) -> Iterable[Any]:
        o: Outcome = result.inference
        item = o.item
        self._inc("cached" if o.cached else "called")
        if not o.cached:
            self._inc("prompt_tokens", o.prompt_tokens)
            self._inc("completion_tokens", o.completion_tokens)
        if o.status == "annotated":
            self._inc("annotated")
            assert o.labels is not None
            yield {
                "id": item["id"], "article_id": item["article_id"], **o.labels, "teacher_model": self.model,
                "prompt_version": self.prompt_version, "prompt_hash": self.prompt_hash, "input_hash": o.input_hash,
                "prompt_tokens": o.prompt_tokens, "completion_tokens": o.completion_tokens,
                "latency_s": float(o.latency_s), "attempts": o.attempts,
            }  # fmt: skip
        elif o.status == "rejected":
            self._inc(f"rejected_{o.reason}")
            yield beam.pvalue.TaggedOutput(
                "rejects",
                {"source": item["id"], "stage": STAGE, "reason": o.reason, "detail": o.detail or "",
                 "record_id": item["id"], "raw": o.raw},  # fmt: skip
            )
        else:
            self._inc(f"skipped_{o.reason}")


class AnnotateParagraphs(beam.PTransform):
    """Sampled paragraphs are labelled by the teacher; valid replies become annotations, the rest rejects."""

    def __init__(self, teacher: TeacherConfig, prompt: Prompt, batch_size: int | None = None) -> None:
        super().__init__()
        self.teacher, self.prompt, self.batch_size = teacher, prompt, batch_size

    def expand(self, paragraphs: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        return (
            paragraphs
            | "AskTeacher" >> RunInference(TeacherModelHandler(self.teacher, self.batch_size))
            | "Route" >> beam.ParDo(_Route(self.teacher.model, self.prompt.version, self.prompt.hash)).with_outputs(
                "rejects", main="annotations"
            )
        )


# ------------------------------------------------------------------------------------------ the driver
def run_annotation(
    items: list[dict[str, Any]] | str,
    out_dir: Location,
    rejects_dir: Location,
    teacher: TeacherConfig,
    prompt: Prompt,
    beam_argv: list[str],
    batch_size: int | None = None,
) -> dict[str, Any]:
    """Annotate items (a list, or a Parquet glob) into out_dir/*.parquet and rejects_dir/annotate-*.parquet.

    Previous outputs there are replaced: they are rebuilt from the request cache, so nothing is lost.
    Locations may be local or on an object store (Beam's sinks take str(location)).
    """
    out_dir.mkdir()
    for f in out_dir.glob("*.parquet"):
        f.unlink()
    rejects_dir.mkdir()
    for f in rejects_dir.glob(f"{STAGE}-*"):
        f.unlink()
    pipeline = beam.Pipeline(options=pipeline_options(beam_argv))
    if isinstance(items, str):
        source = pipeline | "ReadSample" >> beam.io.ReadFromParquet(items, columns=ITEM_COLUMNS)
    else:
        source = pipeline | "Items" >> beam.Create(items, reshuffle=False)
    outs = source | "Annotate" >> AnnotateParagraphs(teacher, prompt, batch_size)
    _ = outs.annotations | "WriteAnnotations" >> beam.io.WriteToParquet(
        str(out_dir / "part"), schema=arrow_schema(Annotation), file_name_suffix=".parquet"
    )
    _ = outs.rejects | "WriteRejects" >> beam.io.WriteToParquet(
        str(rejects_dir / STAGE), schema=arrow_schema(Reject), file_name_suffix=".parquet"
    )
    result = pipeline.run()
    result.wait_until_finish()
    counters = {
        r.key.metric.name: r.committed
        for r in result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]
    }
    cp = import_checkpoints(teacher)
    if cp is not None:  # the final checkpoint: every call this run finished is now in the work directory
        cp.flush()
    return counters


def _query(sql: str, folder: Location, pattern: str) -> list[tuple[Any, ...]]:
    """Rows of `sql` over read_parquet($g) of the files matching pattern in folder ([] when there are none)."""
    if not folder.glob(pattern):
        return []
    con = storage.duckdb_connect()
    try:
        return con.execute(sql, {"g": str(folder / pattern)}).fetchall()
    finally:
        con.close()


def _count_rows(folder: Location, pattern: str = "*.parquet") -> int:
    rows = _query("SELECT count(*) FROM read_parquet($g)", folder, pattern)
    return int(rows[0][0]) if rows else 0


def _reject_counts(rejects_dir: Location) -> dict[str, int]:
    return dict(_query("SELECT reason, count(*) FROM read_parquet($g) GROUP BY reason", rejects_dir, f"{STAGE}-*.parquet"))


def slug(name: str) -> str:
    """A model name made safe for a directory name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "model"


def annotate_and_check(
    items: list[dict[str, Any]] | str,
    n_items: int,
    out_dir: Location,
    rejects_dir: Location,
    teacher: TeacherConfig,
    prompt: Prompt,
    beam_argv: list[str],
    batch_size: int | None,
    est: Estimate,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Print the estimate, run, and verify one annotation or reject per item. Returns the summary."""
    print(
        f"{teacher.model} @ {teacher.base_url}: {est.n_items} paragraphs, {est.n_cached} already in the cache; "
        f"{est.n_calls} calls ~{est.prompt_tokens:,} input + ~{est.completion_tokens:,} output tokens"
        + (f", ~${est.cost:,.4f} at ${teacher.price_in}/${teacher.price_out} per M tokens" if teacher.price_in or teacher.price_out else "")
        + (f"; budget ${teacher.max_cost}" if teacher.max_cost is not None else "")
    )
    if dry_run:
        return {"dry_run": True, "estimate": est.__dict__}
    # The budget reserves one average call's estimated cost for every call in flight.
    teacher.est_prompt_tokens = est.prompt_tokens // max(1, est.n_calls)
    counters = run_annotation(items, out_dir, rejects_dir, teacher, prompt, beam_argv, batch_size)
    n_ann = _count_rows(out_dir)
    rejects = _reject_counts(rejects_dir)
    n_rej = sum(rejects.values())
    skipped = n_items - n_ann - n_rej
    tokens_in, tokens_out = counters.get("prompt_tokens", 0), counters.get("completion_tokens", 0)
    summary = {
        "model": teacher.model, "items": n_items, "annotated": n_ann, "rejected": rejects, "skipped": skipped,
        "calls_cached": counters.get("cached", 0), "prompt_tokens": tokens_in, "completion_tokens": tokens_out,
        "cost": teacher.cost(tokens_in, tokens_out), "complete": skipped == 0,
        "skip_reasons": {k[len("skipped_"):]: v for k, v in counters.items() if k.startswith("skipped_")},
    }  # fmt: skip
    print(
        f"annotated {n_ann}, rejected {n_rej} {rejects or ''}, not done {skipped}; "
        f"new tokens in {tokens_in:,} out {tokens_out:,}, cost ${summary['cost']:.4f} -> {out_dir}"
    )
    if skipped:
        why = ", ".join(f"{k}: {v}" for k, v in summary["skip_reasons"].items()) or "see the log"
        print(f"{skipped} paragraphs not annotated yet ({why}); run the same command again to resume (nothing paid is lost)")
    return summary


def sample_items(workdir: Workdir) -> list[dict[str, Any]]:
    """The sample's rows as the dicts the prompt needs."""
    if not workdir.has_table("sample"):
        raise ConfigError(f"no sample table in {workdir.root} (expected {workdir.glob('sample')}); run `pmc-curate sample` first")
    con = storage.duckdb_connect()
    try:
        cols = ", ".join(f'"{c}"' for c in ITEM_COLUMNS)
        return con.sql(f"SELECT {cols} FROM read_parquet($g, union_by_name = true)",
                       params={"g": workdir.glob("sample")}).to_arrow_table().to_pylist()  # fmt: skip
    finally:
        con.close()


# --------------------------------------------------------------------------------------------- gold
def load_gold(path: Path) -> list[dict[str, Any]]:
    """Hand labels: TSV with header id, document_type, domain, educational_score, note."""
    if not path.is_file():
        raise ConfigError(f"no gold set at {path}")
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        for n, row in enumerate(csv.DictReader((line for line in f if not line.startswith("#")), delimiter="\t"), start=2):
            try:
                labels = validate_labels(
                    {h.name: (int(row[h.name]) if h.kind == "regression" else row[h.name].strip()) for h in HEADS}
                )
            except Exception as e:
                raise ConfigError(f"{path}:{n}: invalid gold row {row!r}: {e}") from None
            rows.append({"id": row["id"].strip(), **labels})
    return rows


def gold_items(gold: list[dict[str, Any]], data_dir: Path) -> list[dict[str, Any]]:
    """Texts of the gold paragraphs, parsed from the real articles (the text is never copied into the repo)."""
    from pipeline.jats import parse_articles

    if not data_dir.is_dir():
        raise ConfigError(f"gold texts come from {data_dir}, which does not exist (pass --gold-data)")
    wanted = {g["id"] for g in gold}
    pmcids = {i.split("/", 1)[0] for i in wanted}
    files = sorted(p for p in data_dir.iterdir() if p.suffix in (".xml", ".nxml"))
    files.sort(key=lambda p: p.stem not in pmcids)  # likely files first
    found: dict[str, dict[str, Any]] = {}
    for path in files:
        if len(found) == len(wanted):
            break
        for parsed in parse_articles(path.read_bytes(), path.name, min_tokens=0):
            if isinstance(parsed, Reject) or parsed.article.pmcid not in pmcids:
                continue
            for p in parsed.paragraphs:
                if p.id in wanted:
                    found[p.id] = {"id": p.id, "article_id": p.article_id, "title": parsed.article.title,
                                   "section_title": p.section_title, "text": p.text}  # fmt: skip
    missing = sorted(wanted - set(found))
    if missing:
        raise ConfigError(f"{len(missing)} gold ids not found in {data_dir}: {missing[:5]}")
    return [found[g["id"]] for g in gold]


def _labels_by_id(folder: Location) -> dict[str, dict[str, Any]]:
    rows = _query("SELECT id, document_type, domain, educational_score FROM read_parquet($g)", folder, "*.parquet")
    return {r[0]: {"id": r[0], "document_type": r[1], "domain": r[2], "educational_score": r[3]} for r in rows}


def agreement_between(reference: dict[str, dict[str, Any]], other: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Agreement on the ids both labelled (ids only one side has are counted, not scored)."""
    ids = sorted(set(reference) & set(other))
    report = agreement.agreement_report([reference[i] for i in ids], [other[i] for i in ids])
    report["only_reference"] = len(set(reference) - set(other))
    report["only_other"] = len(set(other) - set(reference))
    return report


def _write_report(workdir: Workdir, name: str, report: dict[str, Any]) -> Location:
    path = workdir.reports / name
    path.write_text(json.dumps(report, indent=2, default=float))
    return path


# ---------------------------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """CLI flags of `pmc-curate annotate` (one-to-one onto TeacherConfig)."""
    d = TeacherConfig(base_url="", model="", cache_path="")
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--base-url", help="OpenAI-compatible endpoint, e.g. http://gpu-node:8000/v1; "
                        "default: start the offline SmolLM2 teacher on 127.0.0.1 (pipeline only, labels meaningless)")  # fmt: skip
    parser.add_argument("--model", help="model name at the endpoint (required with --base-url)")
    parser.add_argument("--prompt-version", default=d.prompt_version)
    parser.add_argument("--concurrency", type=int, default=d.concurrency, help="requests in flight per worker")
    parser.add_argument("--batch-size", type=int, default=None, help="paragraphs per RunInference batch (default 4x concurrency, >= 64)")
    parser.add_argument("--timeout", type=float, default=d.timeout_s, help="seconds per request")
    parser.add_argument("--max-attempts", type=int, default=d.max_transport_attempts, help="tries per request on 429/5xx/timeouts")
    parser.add_argument("--backoff", type=float, default=d.backoff_base_s, help="first backoff in seconds (doubles, jittered)")
    parser.add_argument("--price-in", type=float, default=0.0, help="USD per million input tokens (for the estimate and budget)")
    parser.add_argument("--price-out", type=float, default=0.0, help="USD per million output tokens")
    parser.add_argument("--max-cost", type=float, default=None, help="USD to spend on new calls in this run; stops cleanly, resumable")
    parser.add_argument("--max-reject-rate", type=float, default=d.max_reject_rate)
    parser.add_argument("--checkpoint-every", type=int, default=DEFAULT_EVERY,
                        help="at most this many finished calls are held only on local disk: a resume on another "
                        "machine repays at most these + the calls in flight (W/cache/teacher/*.parquet)")
    parser.add_argument("--checkpoint-seconds", type=float, default=DEFAULT_SECONDS,
                        help="and a finished call reaches the work directory within this many seconds")
    parser.add_argument("--dry-run", action="store_true", help="print the estimate and stop")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--gold", action="store_true", help="annotate the gold set and report agreement with the hand labels")
    parser.add_argument("--gold-file", type=Path, default=DEFAULT_GOLD)
    parser.add_argument("--gold-data", type=Path, default=DEFAULT_GOLD_DATA, help="folder of the gold set's JATS files")
    parser.add_argument("--compare", nargs=2, metavar=("MODEL_A", "MODEL_B"),
                        help="annotate the sample with two models at --base-url and report their agreement")  # fmt: skip


def _teacher(args: argparse.Namespace, workdir: Workdir, base_url: str, model: str, prompt: Prompt, total: int) -> TeacherConfig:
    return TeacherConfig(
        api_key_env="" if args.base_url is None else "OPENAI_API_KEY",  # the local teacher never sees the key
        base_url=base_url, model=model, cache_path=str(workdir.local_cache / "teacher.sqlite"),
        checkpoint_dir=str(workdir.cache / "teacher"), checkpoint_every=args.checkpoint_every,
        checkpoint_seconds=args.checkpoint_seconds,
        prompt_version=args.prompt_version, concurrency=args.concurrency, timeout_s=args.timeout,
        max_transport_attempts=args.max_attempts, backoff_base_s=args.backoff, price_in=args.price_in,
        price_out=args.price_out, max_cost=args.max_cost, progress=not args.no_progress, total=total,
        max_reject_rate=args.max_reject_rate, est_completion_tokens=min(EST_COMPLETION_TOKENS, prompt.max_tokens),
    )  # fmt: skip


def run(args: argparse.Namespace, beam_argv: list[str]) -> int:
    """Annotate the sample (or the gold set, or compare two models); exit 3 when stopped before the end."""
    workdir = Workdir.of(args.workdir)
    prompt = load_prompt(args.prompt_version)
    if args.concurrency < 1:
        raise ConfigError("--concurrency must be at least 1")
    if args.checkpoint_every < 1 or args.checkpoint_seconds <= 0:
        raise ConfigError("--checkpoint-every must be at least 1 and --checkpoint-seconds more than 0")
    storage.check_access(workdir.root)  # a missing bucket or a wrong endpoint stops here, before any paid call
    if args.base_url is None and args.model is not None and not args.compare:
        raise ConfigError("--model names a model at --base-url; without --base-url the offline teacher is used")
    if args.base_url is None:
        from pipeline.teacher.local import local_teacher

        # The local server answers one request at a time: requests queued behind others would only
        # run into their timeout and be sent again (measured: 25 of 251 gold calls at concurrency 16).
        if args.concurrency > 1 or args.timeout < 600:
            log.info("offline teacher: concurrency 1 and a 600 s timeout (it serves one request at a time)")
        args.concurrency, args.timeout = 1, max(args.timeout, 600.0)

        with local_teacher(workdir.local_cache / "teacher-server.log") as (url, model):
            return _run_with_endpoint(args, beam_argv, workdir, prompt, url, model)
    if not args.model and not args.compare:
        raise ConfigError("--base-url needs --model")
    return _run_with_endpoint(args, beam_argv, workdir, prompt, args.base_url, args.model)


def _run_with_endpoint(args: argparse.Namespace, beam_argv: list[str], workdir: Workdir, prompt: Prompt,
                       base_url: str, model: str) -> int:  # fmt: skip
    preflight(base_url, model if not args.compare else args.compare[0], "" if args.base_url is None else "OPENAI_API_KEY")
    print(f"prompt {prompt.task}/{prompt.version} (hash {prompt.hash})")
    if args.gold:
        gold = load_gold(args.gold_file)
        items = gold_items(gold, args.gold_data)
        teacher = _teacher(args, workdir, base_url, model, prompt, len(items))
        out = workdir.root / "gold" / slug(model)
        summary = annotate_and_check(items, len(items), out / "annotations", out / "rejects", teacher, prompt,
                                     beam_argv, args.batch_size, estimate(items, prompt, teacher), args.dry_run)  # fmt: skip
        if args.dry_run:
            return 0
        report = agreement_between({g["id"]: g for g in gold}, _labels_by_id(out / "annotations"))
        report.update(model=model, prompt_version=prompt.version, prompt_hash=prompt.hash, gold_file=str(args.gold_file),
                      rejected=summary["rejected"])  # fmt: skip
        path = _write_report(workdir, f"gold-agreement-{slug(model)}.json", report)
        print(agreement.format_report(report, f"teacher {model} vs gold ({args.gold_file.name})"))
        print(f"report -> {path}")
        return 0 if summary["complete"] else INCOMPLETE_EXIT
    items = sample_items(workdir)
    if args.compare:
        labels = []
        complete = True
        for m in args.compare:
            teacher = _teacher(args, workdir, base_url, m, prompt, len(items))
            out = workdir.root / "compare" / slug(m)
            s = annotate_and_check(workdir.glob("sample"), len(items), out / "annotations", out / "rejects", teacher,
                                   prompt, beam_argv, args.batch_size, estimate(items, prompt, teacher), args.dry_run)  # fmt: skip
            complete &= bool(s.get("complete", True))
            if not args.dry_run:
                labels.append(_labels_by_id(out / "annotations"))
        if args.dry_run:
            return 0
        a, b = args.compare
        report = agreement_between(labels[0], labels[1])
        report.update(model_a=a, model_b=b, prompt_version=prompt.version, prompt_hash=prompt.hash)
        path = _write_report(workdir, f"teacher-agreement-{slug(a)}-vs-{slug(b)}.json", report)
        print(agreement.format_report(report, f"{a} vs {b} on the sample"))
        print(f"report -> {path}")
        return 0 if complete else INCOMPLETE_EXIT
    teacher = _teacher(args, workdir, base_url, model, prompt, len(items))
    summary = annotate_and_check(workdir.glob("sample"), len(items), workdir.annotations, workdir.rejects, teacher,
                                 prompt, beam_argv, args.batch_size, estimate(items, prompt, teacher), args.dry_run)  # fmt: skip
    if summary.get("dry_run"):
        return 0
    if summary["skip_reasons"].get("fatal"):
        return 2
    return 0 if summary["complete"] else INCOMPLETE_EXIT

