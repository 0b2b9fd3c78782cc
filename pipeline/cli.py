"""The `pmc-curate` command line: one sub-command per stage.

Flags a stage does not know are passed straight through to Beam as pipeline options
(`--runner`, `--direct_num_workers`, `--direct_running_mode`, Dataflow/Flink flags ...).
Stage modules are imported lazily so `pmc-curate parse` never pays for importing torch.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from pipeline.core import secrets, storage
from pipeline.core.errors import ConfigError
from pipeline.flow.run import uses_beam

# command -> (module defining add_arguments(parser) and run(args, beam_argv) -> int, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "parse": ("pipeline.stages.parse", "PMC-OA JATS XML (files, dirs, globs, .tar.gz) -> articles/paragraphs/rejects"),
    "sample": ("pipeline.stages.sample", "pick a deterministic, stratified sample of paragraphs for the teacher"),
    "annotate": ("pipeline.stages.annotate", "label the sample with a teacher LLM at any OpenAI-compatible endpoint"),
    "teacher-server": ("pipeline.teacher.server", "serve the offline SmolLM2 teacher on 127.0.0.1 (OpenAI protocol)"),
    "train": ("classifiers.train", "train the student classifier on the teacher's annotations"),
    "evaluate": ("classifiers.evaluate", "report the student's agreement with held-out teacher labels"),
    "propagate": ("pipeline.stages.propagate", "apply the student to every paragraph with Beam RunInference"),
    "import-labels": ("pipeline.stages.import_labels", "import published Biomed-Enriched labels, joined by (PMID, path)"),
    "curate": ("pipeline.stages.curate", "build a pretraining subset from a SQL recipe"),
    "report": ("pipeline.stages.report", "one page of plots and statistics of the labelled corpus"),
    "run": ("pipeline.flow.run", "run every stage from one YAML config, resuming finished stages"),
    "status": ("pipeline.flow.status", "show each stage of a work directory, its counts and rejects"),
    "demo": ("pipeline.flow.demo", "run every stage end to end on the embedded sample"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pmc-curate",
        description="Curate PubMed Central Open Access into labelled biomedical pretraining data.",
        epilog="Unknown --flags are passed to Apache Beam as pipeline options.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_module, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = build_parser()
    # First pass: find the command without importing every stage.
    ns, rest = top.parse_known_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if ns.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    secrets.install_log_filter()
    storage.register_env_secrets()
    # Beam's --s3_* flags configure the storage layer once for every stage, Beam or not; Beam stages
    # still receive them (workers read them from the pipeline options).
    rest = storage.configure(rest)
    module_name, help_text = COMMANDS[ns.command]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and module_name.startswith(e.name):
            print(f"pmc-curate {ns.command}: not available in this version", file=sys.stderr)
            return 2
        raise
    parser = argparse.ArgumentParser(prog=f"pmc-curate {ns.command}", description=help_text)
    module.add_arguments(parser)
    args, beam_argv = parser.parse_known_args(rest)
    if module_name not in ("pipeline.flow.run", "pipeline.flow.demo") and not uses_beam(module):
        beam_argv = storage.strip_flags(beam_argv)  # DuckDB/PyTorch stages take no Beam options; these were storage's
    try:
        return int(module.run(args, beam_argv) or 0)
    except ConfigError as e:
        print(f"pmc-curate {ns.command}: error: {secrets.redact(str(e))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pmc-curate {ns.command}: interrupted; finished work is kept, run again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
