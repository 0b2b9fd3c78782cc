"""The stages, in the order they run, and THE registry of them.

    parse          PMC-OA XML -> W/articles, W/paragraphs, W/versions, W/tombstones     (Beam)
    sample         W/paragraphs -> W/sample: a deterministic, stratified sample         (DuckDB)
    annotate       W/sample -> W/annotations: the teacher LLM's labels                  (Beam RunInference)
    train          W/annotations -> W/model: the student classifier                     (PyTorch)
    evaluate       W/model -> W/reports/classifier.md: its agreement with the teacher   (PyTorch)
    propagate      W/paragraphs -> W/labels: the student on every paragraph             (Beam RunInference)
    import-labels  published Biomed-Enriched labels -> W/labels_imported                (DuckDB)
    dedup          W/paragraphs -> W/duplicates: exact, near, article copies, boilerplate (Beam)
    decontaminate  W/paragraphs + benchmark files -> W/contamination                    (Beam)
    curate         labelled corpus -> W/subsets/<recipe>: pretraining subsets           (DuckDB SQL recipes)
    export         W/subsets/<name> -> W/exports/<name>/<format>: tokenized shards + mixture (Beam)
    report         labelled corpus -> W/reports/index.md                                (DuckDB, matplotlib)

Every stage module defines `Config` (a dataclass whose fields are its flags and its YAML keys, see
pipeline.core.options) and `run(config, beam_argv) -> exit code`. The command line (pipeline/cli.py),
the flow (pipeline/flow/), `pmc-curate status` and the work directory's layout read this registry;
adding a stage is one entry here plus its module.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from pipeline.core.errors import ConfigError
from pipeline.core.options import suggest


@dataclass(frozen=True)
class Stage:
    """One stage: its command, the module that runs it, and what it reads and writes in W.

    `reads` and `writes` are globs relative to the work directory; `{field}` is filled from the stage's
    config (curate's `subsets/{subset_name}/**`). Inputs decide whether a finished step of a flow is still
    valid; outputs are counted into its marker and must still exist for the step to be skipped. The
    first folder of every `writes` glob names a table (pipeline.core.workdir.TABLES) or a folder of W.
    """

    name: str
    module: str
    summary: str
    beam: bool  # builds a Beam pipeline: takes Beam's pipeline options (--runner, --preset ...)
    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    # W/_stages/state/<journal>.json while a multi-step publish is under way ({"stamp", "phase"}): `status`
    # reports it as interrupted when no run is at work, and the stage's next run finishes it.
    journal: str = ""


STAGES: tuple[Stage, ...] = (
    Stage("parse", "pipeline.stages.parse.stage", "PMC-OA JATS XML (files, dirs, globs, .tar.gz, the PMC Cloud bucket) "
          "-> articles/paragraphs/rejects", beam=True,
          writes=("articles/*.parquet", "paragraphs/*.parquet", "versions/*.parquet", "tombstones/*.parquet",
                  "rejects/parse-*.parquet"), journal="parse-update"),
    Stage("sample", "pipeline.stages.sample", "pick a deterministic, stratified sample of paragraphs for the teacher",
          beam=False, reads=("articles/*.parquet", "paragraphs/*.parquet"), writes=("sample/*.parquet",)),
    Stage("annotate", "pipeline.stages.annotate.stage", "label the sample with a teacher LLM at any OpenAI-compatible endpoint",
          beam=True, reads=("sample/*.parquet",), writes=("annotations/*.parquet", "rejects/annotate-*.parquet")),
    Stage("train", "pipeline.stages.train", "train the student classifier on the teacher's annotations",
          beam=False, reads=("annotations/*.parquet", "paragraphs/*.parquet"), writes=("model/**",)),
    Stage("evaluate", "pipeline.stages.evaluate", "report the student's agreement with held-out teacher labels",
          beam=False, reads=("model/**", "annotations/*.parquet"), writes=("reports/classifier*",)),
    Stage("propagate", "pipeline.stages.propagate.stage", "apply the student to every paragraph with Beam RunInference",
          beam=True, reads=("model/**", "paragraphs/*.parquet"),
          writes=("labels/*.parquet", "rejects/propagate-*.parquet")),
    Stage("import-labels", "pipeline.stages.import_labels",
          "import published Biomed-Enriched labels, joined by (PMID, path)", beam=False,
          reads=("articles/*.parquet", "paragraphs/*.parquet"),
          writes=("labels_imported/*.parquet", "rejects/import-labels-*.parquet")),
    Stage("dedup", "pipeline.stages.dedup.stage", "mark exact, near (MinHash LSH) and article-level duplicates "
          "and boilerplate", beam=True,
          reads=("articles/*.parquet", "paragraphs/*.parquet", "labels/*.parquet", "labels_imported/*.parquet"),
          writes=("duplicates/*.parquet",)),
    Stage("decontaminate", "pipeline.stages.decontaminate", "mark paragraphs overlapping benchmark items "
          "(MedQA, MedMCQA, PubMedQA, MMLU)", beam=True, reads=("articles/*.parquet", "paragraphs/*.parquet"),
          writes=("contamination/*.parquet",)),
    Stage("curate", "pipeline.stages.curate.stage", "build a pretraining subset from a SQL recipe", beam=False,
          reads=("articles/*.parquet", "paragraphs/*.parquet", "{labels_table}/*.parquet", "duplicates/*.parquet",
                 "contamination/*.parquet"),
          writes=("subsets/{subset_name}/**",)),
    Stage("export", "pipeline.stages.export.stage", "tokenize a subset into shards a trainer reads (OLMo, Megatron, "
          "datatrove), its repeats as mixture weights", beam=True,
          reads=("subsets/{subset_name}/**",), writes=("exports/{subset_name}/**",)),
    Stage("report", "pipeline.stages.report", "one page of plots and statistics of the labelled corpus", beam=False,
          reads=("articles/*.parquet", "paragraphs/*.parquet", "{labels_table}/*.parquet", "subsets/**"),
          writes=("reports/index.md",)),
)  # fmt: skip

BY_NAME: dict[str, Stage] = {s.name: s for s in STAGES}
ORDER: tuple[str, ...] = tuple(s.name for s in STAGES)


def get(name: str) -> Stage:
    """The stage of a command name; ConfigError naming the stages (and a close match) otherwise."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise ConfigError(f"unknown stage {name!r}{suggest(name, ORDER)}; stages are: {', '.join(ORDER)}") from None


def load(stage: Stage | str) -> ModuleType:
    """The stage's module (imported on first use: `pmc-curate parse` never pays for importing torch)."""
    return importlib.import_module((get(stage) if isinstance(stage, str) else stage).module)


def writers() -> dict[str, list[str]]:
    """Folder of W -> the stages that write into it (the work directory's layout, as the registry says)."""
    out: dict[str, list[str]] = {}
    for s in STAGES:
        for pattern in s.writes:
            out.setdefault(pattern.split("/", 1)[0], []).append(s.name)
    return out
