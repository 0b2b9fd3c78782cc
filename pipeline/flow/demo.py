"""`pmc-curate demo --workdir W`: every stage end to end on the embedded sample (examples/jats/).

The demo is the flow run on `examples/demo.yaml` (small settings: every paragraph of the ten articles
sampled, one epoch at max length 128), so `pmc-curate run --config examples/demo.yaml` does the same
thing. Running the demo again skips the stages that already finished.

Its teacher is the keyword-rule teacher (pipeline/teacher/rules.py: keyword rules, NOT an LLM) served
behind an OpenAI-compatible endpoint on 127.0.0.1, so the whole client path runs and the labels carry a
known signal: the report shows several types and domains and the score-filtered subsets are not empty.
The model name it records on every annotation, and which the report and subset cards quote, says what
it is. `--teacher smollm2` runs the offline SmolLM2-135M LLM instead (a real LLM whose labels mean
nothing), on a 24-paragraph sample since it takes seconds a paragraph.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

from pipeline import flow
from pipeline.core import bundled
from pipeline.core.errors import ConfigError
from pipeline.core.options import option
from pipeline.core.tables import describe_teachers, teacher_models
from pipeline.core.workdir import Workdir
from pipeline.flow import status as flow_status
from pipeline.flow.summary import closing_summary

DEMO_CONFIG = bundled.EXAMPLES / "demo.yaml"
TEACHERS = ("rules", "smollm2")
SMOLLM2_SAMPLE = 24  # paragraphs: the CPU LLM takes ~1.5-7 s each on 2 cores


def _resolve(path: str) -> str:
    """A relative input path from the config: as given when it exists from here, else among the files
    shipped with the package (`examples/jats`: the embedded corpus)."""
    if "://" in path or Path(path).is_absolute() or Path(path).exists():
        return path
    return str((bundled.ROOT / path).resolve())


def demo_config(workdir: str, config: Path = DEMO_CONFIG, teacher: str | None = None) -> flow.FlowConfig:
    """The demo's flow configuration with its work directory and inputs resolved; `teacher` (rules or
    smollm2) replaces the annotate step's offline teacher."""
    cfg = flow.load_config(config, workdir=workdir)
    for step in cfg.steps:
        if step.command == "parse" and "inputs" in step.flags:
            inputs = step.flags["inputs"]
            step.flags["inputs"] = [_resolve(str(p)) for p in (inputs if isinstance(inputs, list) else [inputs])]
        if step.command == "decontaminate" and "benchmarks" in step.flags:  # NAME=FILE: resolve the file
            specs = step.flags["benchmarks"]
            step.flags["benchmarks"] = [f"{n}={_resolve(f)}" for n, _, f in
                                        (str(s).partition("=") for s in (specs if isinstance(specs, list) else [specs]))]
        if teacher == "smollm2" and step.command == "sample":
            step.flags["size"] = min(int(step.flags.get("size", SMOLLM2_SAMPLE)), SMOLLM2_SAMPLE)
        if teacher is not None and step.command == "annotate":
            if step.flags.get("base_url"):
                raise ConfigError(f"--teacher {teacher}: the annotate step of {config} names an endpoint (base_url)")
            step.flags["teacher"] = teacher
            if teacher == "smollm2":  # one request at a time; a busy 2-core machine can take minutes for one
                step.flags.update(concurrency=1, timeout=600)
    return cfg


@dataclass(frozen=True)
class Config:
    """`pmc-curate demo`: where to write, which flow file."""

    workdir: str = option("demo-work", help="where the demo writes its tables")
    config: Path = option(DEMO_CONFIG, help="flow configuration")
    fresh: bool = option(False, help="delete the demo's previous work directory first")
    teacher: str | None = option(None, choices=TEACHERS,
                                 help="the demo's teacher: rules (the default in examples/demo.yaml: keyword rules, not "
                                      "an LLM, labels with a known signal) or smollm2 (a 135M LLM on CPU: the real LLM "
                                      "path, labels meaningless, a 24-paragraph sample)")


def run(args: Config, beam_argv: list[str]) -> int:
    """Entry point of `pmc-curate demo`."""
    wd = Workdir.of(args.workdir)
    if args.fresh and wd.root.is_dir():
        # Only ever delete something that is a work directory of ours.
        if not (wd.stages.is_dir() or not wd.root.iterdir()):
            raise ConfigError(f"{wd.root} exists and is not a pmc-curate work directory; not deleting it")
        wd.root.rmtree()
    cfg = demo_config(str(args.workdir), args.config, args.teacher)
    t0 = time.perf_counter()
    print(f"pmc-curate demo: {len(cfg.steps)} steps from {args.config} into {wd.root}/", file=sys.stderr)
    rc = flow.run_flow(cfg, beam_argv, echo=lambda s: print(s, file=sys.stderr))
    print(flow_status.render(flow_status.collect(wd)))
    print(closing_summary(wd, time.perf_counter() - t0, rc))
    teachers = teacher_models(wd)
    if teachers:
        print(f"Teacher: {describe_teachers(teachers).replace('**', '')}")
    if rc == 0:
        print(f"Query the tables: DuckDB or Polars over {wd.root}/<table>/*.parquet (articles, paragraphs, labels ...)")
    return rc
