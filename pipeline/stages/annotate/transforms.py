"""The annotate stage's Beam part: the teacher through RunInference, routed into annotations and rejects.

    sample rows -> RunInference(TeacherModelHandler) -> annotations | rejects (| skipped at budget)

`run_annotation` runs the pipeline; `annotate_and_check` prints the estimate before and verifies after
that every sampled paragraph ended as exactly one annotation or one reject.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.ml.inference.base import PredictionResult, RunInference

from beam_runners.options import make_pipeline
from pipeline.core import provenance, secrets, storage, tables
from pipeline.core.errors import ConfigError
from pipeline.core.records import Annotation, Reject, arrow_schema
from pipeline.core.storage import Location
from pipeline.core.workdir import Workdir
from pipeline.stages.annotate.handler import TeacherModelHandler
from pipeline.teacher.config import Outcome, TeacherConfig
from pipeline.teacher.preflight import Estimate, import_checkpoints
from pipeline.teacher.prompt import Prompt
from pipeline.teacher.rows import annotation_row, reject_row

STAGE = "annotate"
NAMESPACE = "pmc_curate_annotate"
ITEM_COLUMNS = ["id", "article_id", "title", "section_title", "text"]


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
        self._inc("cached" if o.cached else "called")
        if not o.cached:
            self._inc("prompt_tokens", o.prompt_tokens)
            self._inc("completion_tokens", o.completion_tokens)
        if o.status == "annotated":
            self._inc("annotated")
            yield annotation_row(o, self.model, self.prompt_version, self.prompt_hash)
        elif o.status == "rejected":
            self._inc(f"rejected_{o.reason}")
            yield beam.pvalue.TaggedOutput("rejects", reject_row(o, STAGE))
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

    Previous outputs there are replaced whole once the pipeline has finished (storage.replacing; an error
    leaves them as they were): they are rebuilt from the request cache, so nothing is paid twice.
    Locations may be local or on an object store (Beam's sinks take str(location)).
    """
    with storage.replacing([out_dir, rejects_dir], ["", f"{STAGE}-"]) as (new_out, new_rejects):
        counters = _run(items, new_out, new_rejects, teacher, prompt, beam_argv, batch_size)
    cp = import_checkpoints(teacher)
    if cp is not None:  # the final checkpoint: every call this run finished is now in the work directory
        cp.flush()
    return counters


def _run(items: list[dict[str, Any]] | str, out_dir: Location, rejects_dir: Location, teacher: TeacherConfig,
         prompt: Prompt, beam_argv: list[str], batch_size: int | None) -> dict[str, Any]:  # fmt: skip
    pipeline = make_pipeline(beam_argv)
    if isinstance(items, str):
        source = pipeline | "ReadSample" >> beam.io.ReadFromParquet(items, columns=ITEM_COLUMNS)
    else:
        source = pipeline | "Items" >> beam.Create(items, reshuffle=False)
    outs = source | "Annotate" >> AnnotateParagraphs(teacher, prompt, batch_size)
    _ = outs.annotations | "WriteAnnotations" >> beam.io.WriteToParquet(
        str(out_dir / "part"), file_name_suffix=".parquet",
        schema=arrow_schema(Annotation, provenance.parquet_metadata(dict(
            provenance.teacher_record(teacher.model, teacher.base_url, prompt.version, prompt.hash),
            tool=provenance.tool()))),
    )
    _ = outs.rejects | "WriteRejects" >> beam.io.WriteToParquet(
        str(rejects_dir / STAGE), schema=arrow_schema(Reject), file_name_suffix=".parquet"
    )
    result = pipeline.run()
    result.wait_until_finish()
    return {
        r.key.metric.name: r.committed
        for r in result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]
    }


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
        f"{teacher.model} @ {secrets.redact(teacher.base_url)}: {est.n_items} paragraphs, {est.n_cached} already in the cache; "
        f"{est.n_calls} calls ~{est.prompt_tokens:,} input + ~{est.completion_tokens:,} output tokens"
        + (f", ~${est.cost:,.4f} at ${teacher.price_in}/${teacher.price_out} per M tokens" if teacher.price_in or teacher.price_out else "")
        + (f"; budget ${teacher.max_cost}" if teacher.max_cost is not None else "")
    )
    if dry_run:
        return {"dry_run": True, "estimate": est.__dict__}
    # The budget reserves one average call's estimated cost for every call in flight.
    teacher.est_prompt_tokens = est.prompt_tokens // max(1, est.n_calls)
    counters = run_annotation(items, out_dir, rejects_dir, teacher, prompt, beam_argv, batch_size)
    n_ann = tables.count_rows(out_dir.glob("*.parquet")) or 0
    rejects = tables.rejects_by_reason(rejects_dir, STAGE)
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
    return tables.read_table(workdir, "sample", ITEM_COLUMNS).to_pylist()
