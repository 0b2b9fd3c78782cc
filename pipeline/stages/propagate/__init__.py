"""`pmc-curate propagate`: apply the trained student to every paragraph with Beam RunInference.

    pmc-curate propagate --workdir W [--batch-size B] [--device cpu|cuda] [--max-length L] [Beam flags]

    W/paragraphs  ->  CheckScorable  ->  RunInference(StudentModelHandler)  ->  W/labels/*.parquet
                          | empty text            | failed batch
                          +--------------------------+----------------->  W/rejects/propagate-*.parquet

Exactly one label row per paragraph, or one reject with its reason; paragraphs are never dropped or
rewritten (selection happens later, in SQL). The model is loaded once per worker process (Beam's
`Shared` handle); Beam batches elements, then run_inference sorts each batch by token length and
cuts it into sub-batches padded only to their own longest member (classifiers.predict).

A re-run labels only the paragraphs without a label for their current input from the same model (after
`parse --update`: the new and edited ones) and keeps the other labels; `--full` labels every paragraph.
See pipeline/propagate_delta.py.

W (and --model) may be on s3:// or gs://. Workers then copy the model directory into a local temporary
folder with Beam's own FileSystems (which take their settings from the pipeline options the workers
receive), once per worker process and content version of the model, however many bundles they run.
"""

from __future__ import annotations

import argparse
import atexit
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
from apache_beam.io.parquetio import ReadFromParquet, WriteToParquet
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import ModelHandler, RunInference

from beam_runners.options import pipeline_options
from pipeline.core import storage
from pipeline.core.errors import ConfigError, RejectReason
from pipeline.core.labels import DOCUMENT_TYPES, DOMAINS
from pipeline.core.records import Label, Reject, arrow_schema, as_row
from pipeline.core.workdir import Workdir
from pipeline.stages.propagate import delta

log = logging.getLogger(__name__)

STAGE = "propagate"
METRICS_NAMESPACE = "pmc_curate_propagate"
INPUT_COLUMNS = ["id", "article_id", "text", "section_title"]


@dataclass(frozen=True)
class PropagateConfig:
    """Settings of one propagation run; CLI flags map one-to-one onto these fields."""

    model_dir: str
    device: str = "cpu"
    # Sub-batch (one forward pass). 64 keeps CPU caches warm; on a GPU 256-1024 (NeMo Curator's range).
    batch_size: int = 64
    # Beam batches up to this many paragraphs before run_inference sorts them by length: more
    # paragraphs per Beam batch = better length grouping, at the cost of memory per worker.
    beam_batch_size: int = 1024
    max_length: int | None = None  # None = the length the model was trained with
    precision: str = "auto"
    torch_threads: int = 0  # 0 = torch's default; set 1-2 when running several Beam worker processes
    full: bool = False  # label every paragraph, not only those without a label for their current input


def _input_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# Local copies of remote model directories made by this process: (url, files) -> local folder.
_model_copies: dict[tuple[str, tuple[tuple[str, int, float, str], ...]], str] = {}
_model_copies_lock = threading.Lock()
model_downloads = 0  # remote model directories this process has copied (tests read it)


def _remove_model_copies() -> None:
    for d in _model_copies.values():
        shutil.rmtree(d, ignore_errors=True)


atexit.register(_remove_model_copies)


def local_model_dir(model_dir: str) -> str:
    """A local folder holding `model_dir`: itself when local; else this process's copy of it.

    Remote directories are listed and copied with Beam's FileSystems (so a worker uses the storage
    settings of its pipeline options) into a temporary folder, once per process and content version:
    the copy is keyed by the URL and every file's name, size, modification time and checksum, so
    bundles reuse it and a retrained model is fetched afresh.
    """
    global model_downloads
    if not storage.is_remote(model_dir):
        return str(storage.as_location(model_dir))
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems

    prefix = str(storage.as_location(model_dir)) + "/"
    with _model_copies_lock:  # one download per process, even with several bundle threads
        files = sorted((m for r in FileSystems.match([prefix + "**"]) for m in r.metadata_list), key=lambda m: m.path)
        if not files:
            raise ConfigError(f"no trained student in {model_dir}; run `pmc-curate train` first")
        # Modification times have 1 s resolution on S3: the content checksum (ETag, crc32c) tells rewrites apart.
        key = (prefix, tuple((m.path, int(m.size_in_bytes), float(m.last_updated_in_seconds),
                              str(FileSystems.checksum(m.path))) for m in files))
        hit = _model_copies.get(key)
        if hit is not None and os.path.isdir(hit):
            return hit
        dst = tempfile.mkdtemp(prefix=f"pmc-curate-model-{os.getpid()}-")
        for m in files:
            target = os.path.join(dst, *m.path[len(prefix):].split("/"))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with FileSystems.open(m.path, compression_type=CompressionTypes.UNCOMPRESSED) as src, \
                    open(target, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
        for stale in [k for k in _model_copies if k[0] == prefix]:  # older versions of this model
            shutil.rmtree(_model_copies.pop(stale), ignore_errors=True)
        _model_copies[key] = dst
        model_downloads += 1
        log.info("copied model %s (%d files, %d bytes) to %s", model_dir, len(files),
                 sum(m.size_in_bytes for m in files), dst)
        return dst


class StudentModelHandler(ModelHandler[dict, dict, Any]):
    """Beam ModelHandler around a trained student (classifiers.predict.Predictor).

    Input elements are paragraph dicts (id, article_id, text, section_title); outputs are Label rows
    as dicts, each carrying the model id.
    """

    def __init__(self, config: PropagateConfig) -> None:
        # BatchElements adapts the batch size between these bounds by timing; starting it at one
        # paragraph wastes its first batches on per-call overhead, so the floor is one sub-batch.
        super().__init__(min_batch_size=min(config.batch_size, config.beam_batch_size),
                         max_batch_size=config.beam_batch_size)
        self.config = config
        self._truncated = Metrics.counter(METRICS_NAMESPACE, "truncated")
        self._scored = Metrics.counter(METRICS_NAMESPACE, "scored")

    def load_model(self) -> Any:
        """Load the student once per process (Beam keeps it in a Shared handle; a remote model directory
        is copied once per process, see local_model_dir)."""
        import torch

        from classifiers.predict import Predictor

        if self.config.torch_threads:
            torch.set_num_threads(self.config.torch_threads)
        model_dir = self.config.model_dir
        return Predictor.from_dir(
            local_model_dir(model_dir),
            name=storage.as_location(model_dir).name,  # the directory's name, never the local copy's
            device=self.config.device,
            batch_size=self.config.batch_size,
            max_length=self.config.max_length,
            precision=self.config.precision,
        )

    def run_inference(
        self, batch: Sequence[dict], model: Any, inference_args: dict[str, Any] | None = None
    ) -> Iterable[dict]:
        """Score one Beam batch; the predictor sorts it by length into padded sub-batches."""
        from classifiers.data import model_input

        texts = [model_input(p["text"], p.get("section_title")) for p in batch]
        pred = model.predict(texts)
        self._scored.inc(len(batch))
        self._truncated.inc(int(pred.truncated.sum()))
        types = pred.probs["document_type"]
        domains = pred.probs["domain"]
        out = []
        for i, p in enumerate(batch):
            t, d = types[i], domains[i]
            label = Label(
                id=p["id"],
                article_id=p["article_id"],
                document_type=DOCUMENT_TYPES[int(t.argmax())],
                domain=DOMAINS[int(d.argmax())],
                educational_score=round(float(pred.educational_score[i]), 4),
                document_type_scores=[float(x) for x in t],
                domain_scores=[float(x) for x in d],
                model_id=model.model_id,
                truncated=bool(pred.truncated[i]),
                input_hash=_input_hash(texts[i]),
            )
            out.append(as_row(label))
        return out

    def get_metrics_namespace(self) -> str:
        return METRICS_NAMESPACE


class CheckScorable(beam.DoFn):
    """Paragraphs with text go on; the others become rejects (tagged output 'reject')."""

    REJECT = "reject"

    def process(self, p: dict) -> Iterator[Any]:
        text = p.get("text")
        if not isinstance(text, str) or not text.strip() or not p.get("id"):
            Metrics.counter(METRICS_NAMESPACE, f"reject_{RejectReason.EMPTY_TEXT.value}").inc()
            yield beam.pvalue.TaggedOutput(
                self.REJECT,
                as_row(Reject(source=str(p.get("id") or p.get("article_id") or "?"), stage=STAGE,
                              reason=RejectReason.EMPTY_TEXT.value, detail="paragraph has no text to score",
                              record_id=p.get("id"))),
            )
        else:
            yield p


def _failed_batch_rejects(item: Any) -> Iterator[dict]:
    """RunInference's dead-letter output (batch, error) -> one reject per paragraph of the batch."""
    batch, error = item if isinstance(item, tuple) and len(item) == 2 else (item, "unknown error")
    detail = str(error[1] if isinstance(error, tuple) and len(error) > 1 else error)[:2000]
    for p in batch if isinstance(batch, list | tuple) else [batch]:
        pid = p.get("id") if isinstance(p, dict) else None
        yield as_row(Reject(source=str(pid), stage=STAGE, reason=RejectReason.INFERENCE_ERROR.value,
                            detail=f"inference failed for this batch: {detail}", record_id=pid))


class ScoreParagraphs(beam.PTransform):
    """Paragraph dicts -> (Label rows, Reject rows): check, batch, infer, route failures to rejects."""

    def __init__(self, config: PropagateConfig, handler: ModelHandler | None = None) -> None:
        super().__init__()
        self.config = config
        self.handler = handler or StudentModelHandler(config)

    def expand(self, paragraphs: beam.PCollection) -> tuple[beam.PCollection, beam.PCollection]:
        checked = paragraphs | "CheckScorable" >> beam.ParDo(CheckScorable()).with_outputs(
            CheckScorable.REJECT, main="ok"
        )
        labels, dlq = checked.ok | "RunInference" >> RunInference(self.handler).with_exception_handling()
        failed = dlq.failed_inferences | "FailedBatches" >> beam.FlatMap(_failed_batch_rejects)
        rejects = (checked[CheckScorable.REJECT], failed) | "AllRejects" >> beam.Flatten()
        return labels, rejects


class Propagate(beam.PTransform):
    """Read W/paragraphs, score every paragraph, write W/labels and W/rejects/propagate-*."""

    def __init__(self, workdir: Workdir, config: PropagateConfig, paragraphs: str | None = None) -> None:
        super().__init__()
        self.workdir = workdir
        self.config = config
        self.paragraphs = paragraphs or workdir.glob("paragraphs")  # a delta run reads only its paragraphs

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.pvalue.PDone:
        paragraphs = pbegin | "ReadParagraphs" >> ReadFromParquet(self.paragraphs, columns=INPUT_COLUMNS)
        labels, rejects = paragraphs | "Score" >> ScoreParagraphs(self.config)
        labels | "WriteLabels" >> WriteToParquet(
            str(self.workdir.labels / "labels"), schema=arrow_schema(Label), file_name_suffix=".parquet"
        )
        return rejects | "WriteRejects" >> WriteToParquet(
            str(self.workdir.rejects / f"{STAGE}"), schema=arrow_schema(Reject), file_name_suffix=".parquet"
        )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """CLI flags, one per PropagateConfig field; unknown flags go to Beam."""
    d = PropagateConfig(model_dir="")
    parser.add_argument("--workdir", required=True, help="work directory with paragraphs/ and model/")
    parser.add_argument("--model", default="", help="trained student directory (default: W/model)")
    parser.add_argument("--device", default=d.device, help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--batch-size", type=int, default=d.batch_size, help="paragraphs per forward pass")
    parser.add_argument("--beam-batch-size", type=int, default=d.beam_batch_size,
                        help="paragraphs per Beam batch, sorted by length inside")
    parser.add_argument("--max-length", type=int, default=None, help="tokens (default: the training length)")
    parser.add_argument("--precision", choices=["auto", "fp32", "fp16", "bf16"], default=d.precision)
    parser.add_argument("--torch-threads", type=int, default=d.torch_threads,
                        help="torch intra-op threads per worker (0: torch default)")
    parser.add_argument("--full", action="store_true",
                        help="label every paragraph (default: keep the labels the same model gave the same input)")


def summarize(workdir: Workdir) -> dict[str, Any]:
    """Counts from what was written: paragraphs, labels, truncated, rejects by reason."""
    con = storage.duckdb_connect()
    try:
        out: dict[str, Any] = {}
        out["paragraphs"] = con.sql("SELECT count(*) FROM read_parquet($g)", params={"g": workdir.glob("paragraphs")}).fetchall()[0][0]
        if workdir.has_table("labels"):
            n, t, models = con.sql(
                "SELECT count(*), coalesce(sum(truncated::INT), 0), list(DISTINCT model_id) FROM read_parquet($g)",
                params={"g": workdir.glob("labels")},
            ).fetchall()[0]
        else:
            n, t, models = 0, 0, []
        out.update(labels=n, truncated=int(t), model_ids=models)
        rej = workdir.rejects.glob(f"{STAGE}-*.parquet")
        out["rejects"] = dict(
            con.sql("SELECT reason, count(*) FROM read_parquet($g) GROUP BY 1 ORDER BY 1",
                    params={"g": [str(f) for f in rej]}).fetchall()
        ) if rej else {}
        return out
    finally:
        con.close()


def run_propagate(workdir: Workdir, config: PropagateConfig, beam_argv: list[str] | None = None) -> dict[str, Any]:
    """Run the Beam pipeline; return summarize() of its output (also written to W/_stages/propagate.json)."""
    if not workdir.has_table("paragraphs"):
        raise ConfigError(f"no paragraphs table in {workdir.root}; run `pmc-curate parse` first")
    if not (storage.as_location(config.model_dir) / "heads.safetensors").is_file():
        raise ConfigError(f"no trained student in {config.model_dir}; run `pmc-curate train` first")
    if config.batch_size < 1 or config.beam_batch_size < 1:
        raise ConfigError("--batch-size and --beam-batch-size must be >= 1")
    if config.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("--device cuda requested but torch sees no CUDA device")
    fingerprint = delta.model_fingerprint(config.model_dir, config.max_length, config.precision)
    plan = delta.plan(workdir, fingerprint, full=config.full)
    if plan.full:
        log.info("propagate: labelling every paragraph (%s)", plan.reason)
        workdir.reset_table("labels")
    workdir.reset_table("rejects", prefix=f"{STAGE}-")
    if plan.full or plan.todo:
        with beam.Pipeline(options=pipeline_options(beam_argv)) as p:
            _ = p | "Propagate" >> Propagate(workdir, config, plan.input_glob)
    summary = summarize(workdir)
    summary["model_dir"] = config.model_dir
    summary["model_fingerprint"] = fingerprint
    summary["mode"] = "full" if plan.full else "delta"
    summary["kept"] = plan.kept
    summary["labelled_now"] = summary["labels"] - plan.kept
    (workdir.stages / f"{STAGE}.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    missing = summary["paragraphs"] - summary["labels"] - sum(summary["rejects"].values())
    if missing:
        log.error("%d paragraphs have neither a label nor a reject", missing)
    return summary


def run(args: argparse.Namespace, beam_argv: list[str]) -> int:
    """Entry point of `pmc-curate propagate`."""
    workdir = Workdir.of(args.workdir)
    storage.check_access(workdir.root)  # a missing bucket, a dead endpoint or a 403 stops here, before any work
    config = PropagateConfig(
        model_dir=args.model or str(workdir.model),
        device=args.device,
        batch_size=args.batch_size,
        beam_batch_size=args.beam_batch_size,
        max_length=args.max_length,
        precision=args.precision,
        torch_threads=args.torch_threads,
        full=args.full,
    )
    s = run_propagate(workdir, config, beam_argv)
    pct = 100.0 * s["truncated"] / s["labels"] if s["labels"] else 0.0
    rejects = ", ".join(f"{k}: {v}" for k, v in s["rejects"].items()) or "none"
    print(f"labelled {s['labels']} of {s['paragraphs']} paragraphs with {', '.join(s['model_ids'])} -> {workdir.labels}"
          + (f" ({s['labelled_now']} now, {s['kept']} kept from the previous run)" if s["mode"] == "delta" else ""))
    print(f"truncated at max length: {s['truncated']} ({pct:.1f}%); rejects: {rejects}")
    return 0 if s["labels"] + sum(s["rejects"].values()) == s["paragraphs"] else 1
