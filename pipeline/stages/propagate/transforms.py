"""The propagate stage's Beam transforms: the student as a RunInference ModelHandler, and the stage's graph.

    W/paragraphs  ->  CheckScorable  ->  RunInference(StudentModelHandler)  ->  W/labels/*.parquet
                          | empty text            | failed batch
                          +--------------------------+----------------->  W/rejects/propagate-*.parquet

The model is loaded once per worker process (Beam's `Shared` handle); Beam batches elements, then
run_inference sorts each batch by token length and cuts it into sub-batches padded only to their own
longest member (classifiers.predict). A remote model directory is copied once per worker process and
content version with Beam's FileSystems, which take their settings from the worker's pipeline options.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import apache_beam as beam
from apache_beam.io.parquetio import ReadFromParquet, WriteToParquet
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import ModelHandler, RunInference

from pipeline.core import provenance, storage
from pipeline.core.errors import RejectReason
from pipeline.core.labels import DOCUMENT_TYPES, DOMAINS
from pipeline.core.logs import Heartbeat
from pipeline.core.records import Label, Reject, arrow_schema, as_row
from pipeline.core.workdir import Workdir
from pipeline.stages.propagate.config import PropagateConfig, fallback_margin, forward_tokens

STAGE = "propagate"
METRICS_NAMESPACE = "pmc_curate_propagate"
INPUT_COLUMNS = ["id", "article_id", "text", "section_title"]
log = logging.getLogger(__name__)


def _input_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class StudentModelHandler(ModelHandler[dict, dict, Any]):
    """Beam ModelHandler around a trained student (classifiers.predict.Predictor).

    Input elements are paragraph dicts (id, article_id, text, section_title); outputs are Label rows
    as dicts, each carrying the model id.
    """

    def __init__(self, config: PropagateConfig) -> None:
        # Fixed Beam batches of --beam-batch-size. BatchElements would otherwise adapt the size to about a
        # second of work: on a CPU that is ~64 paragraphs, too few to sort by length, and the padding of
        # unsorted sub-batches cost the stage ~20% of the bare path's rate (docs/benchmarks.md).
        super().__init__(min_batch_size=config.beam_batch_size, max_batch_size=config.beam_batch_size)
        self.config = config
        self._truncated = Metrics.counter(METRICS_NAMESPACE, "truncated")
        self._heartbeat: Heartbeat | None = None
        self._scored = Metrics.counter(METRICS_NAMESPACE, "scored")

    def load_model(self) -> Any:
        """Load the student once per process (Beam keeps it in a Shared handle; a remote model directory
        is copied once per process and content version: storage.local_copy)."""
        import torch

        from classifiers.predict import Predictor

        if self.config.torch_threads:
            torch.set_num_threads(self.config.torch_threads)
        model_dir = self.config.model_dir
        return Predictor.from_dir(
            str(storage.local_copy(model_dir, via_beam=True)),
            name=storage.as_location(model_dir).name,  # the directory's name, never the local copy's
            device=self.config.device,
            batch_size=self.config.batch_size,
            max_length=self.config.max_length,
            precision=self.config.precision,
            tfidf_heads=self.config.tfidf_heads,
            max_tokens=forward_tokens(self.config),
            fallback_margin=fallback_margin(self.config),
        )

    def run_inference(
        self, batch: Sequence[dict], model: Any, inference_args: dict[str, Any] | None = None
    ) -> Iterable[dict]:
        """Score one Beam batch; the predictor sorts it by length into padded sub-batches."""
        from classifiers.data import model_input

        texts = [model_input(p["text"], p.get("section_title")) for p in batch]
        pred = model.predict(texts)
        self._scored.inc(len(batch))
        if self._heartbeat is None:
            self._heartbeat = Heartbeat(log, "propagate: paragraphs labelled by this worker")
        self._heartbeat.tick(len(batch))
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
        # This run's label files get names of their own: a kept file lists the files it supersedes by name
        # (delta.heal), and Beam's shard names alone (labels-00000-of-00001) repeat from run to run.
        self.run_id = uuid.uuid4().hex[:8]

    def provenance(self) -> dict[str, str]:
        """Schema metadata of W/labels: the tool, the student's model_id, the teachers it learned from."""
        cfg = storage.as_location(self.config.model_dir or str(self.workdir.model)) / "training_config.json"
        model_id = json.loads(cfg.read_text()).get("model_id") if cfg.is_file() else None
        teachers = provenance.teachers(self.workdir)
        return provenance.parquet_metadata({"tool": provenance.tool(), "student_model_id": model_id,
                                            "teachers": teachers, "stand_in": provenance.stand_in(teachers)})

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.pvalue.PDone:
        paragraphs = (pbegin | "ReadParagraphs" >> ReadFromParquet(self.paragraphs, columns=INPUT_COLUMNS)
                      # one Parquet file fans out into many paragraphs: spread them over the workers (Flink
                      # does not split a bundle once it runs, so without this one subtask would score them all)
                      | "SpreadParagraphs" >> beam.Reshuffle())
        labels, rejects = paragraphs | "Score" >> ScoreParagraphs(self.config)
        labels | "WriteLabels" >> WriteToParquet(
            str(self.workdir.labels / f"labels-{self.run_id}"), schema=arrow_schema(Label, self.provenance()),
            file_name_suffix=".parquet"
        )
        return rejects | "WriteRejects" >> WriteToParquet(
            str(self.workdir.rejects / f"{STAGE}"), schema=arrow_schema(Reject), file_name_suffix=".parquet"
        )


