"""Build Beam pipelines from the flags a stage passes through. Runners are options, not code paths:
nothing in pipeline/ branches on the runner.

Every Beam stage calls `make_pipeline(beam_argv)`: the flags its own Config did not take (`--runner`,
`--direct_num_workers`, Dataflow/Flink flags ...) become the PipelineOptions, after `--preset NAME` is
expanded (beam_runners/presets.py); flags the user gives win over the preset's. `unknown_flags` lists
the ones Beam does not know either, so a typo is an error instead of a silently discarded option.

The local default: Beam 2.77's DirectRunner first tries to download and run Prism (a Go runner) from
the internet and falls back to the in-process FnApiRunner when it cannot, so the same command would run
on a different runner online and offline. `DirectRunner` here is that in-process FnApiRunner, built
the way the DirectRunner builds it (with the pipeline options for its workers), online or not;
`--runner=PrismRunner` (or `--preset prism`) asks for Prism explicitly.
"""

from __future__ import annotations

from collections.abc import Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import (
    PipelineOptions,
    StandardOptions,
    TestOptions,
    _BeamArgumentParser,
)

from beam_runners import presets
from beam_runners.dryrun import DryRunPipeline, dry_run_file

DEFAULT_RUNNER = "DirectRunner"
_LOCAL_RUNNERS = ("directrunner", "switchingdirectrunner")


def pipeline_options(beam_argv: Sequence[str] | None = None, **overrides: object) -> PipelineOptions:
    """PipelineOptions from pass-through CLI flags, with the project's defaults where a flag is absent."""
    argv = presets.expand(beam_argv or [])
    if not any(a == "--runner" or a.startswith("--runner=") for a in argv):
        argv.append(f"--runner={DEFAULT_RUNNER}")
    opts = PipelineOptions(argv, **overrides)
    if dry_run_file(opts):
        # Beam's offline path for Dataflow: its validator then skips the GCS soft-delete check (a call to GCS).
        opts.view_as(TestOptions).dry_run = True
    presets.validate(opts)  # a Dataflow/Flink run missing a required flag stops here, before any work
    return opts


def make_pipeline(beam_argv: Sequence[str] | PipelineOptions | None = None) -> beam.Pipeline:
    """The Beam pipeline a stage builds its graph on, on the runner its flags name."""
    options = beam_argv if isinstance(beam_argv, PipelineOptions) else pipeline_options(beam_argv)
    runner = str(options.view_as(StandardOptions).runner or DEFAULT_RUNNER)
    cls = DryRunPipeline if dry_run_file(options) else beam.Pipeline  # --dry-run FILE: write the job, run nothing
    if runner.lower() in _LOCAL_RUNNERS:
        return cls(runner=_in_process_runner(options), options=options)
    return cls(options=options)


def _in_process_runner(options: PipelineOptions) -> beam.runners.PipelineRunner:
    """Beam's FnApiRunner with the pipeline options for its workers, as the DirectRunner makes it for
    batch pipelines (apache_beam/runners/direct/direct_runner.py), without its attempt at Prism first."""
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.runners.portability.portable_runner import JobServiceHandle

    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
    return fn_runner.FnApiRunner(provision_info=fn_runner.ExtendedProvisionInfo(
        beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded)))


def _all_option_classes() -> list[type]:
    out, todo = [], list(PipelineOptions.__subclasses__())
    while todo:
        cls = todo.pop()
        out.append(cls)
        todo += cls.__subclasses__()
    return out


def beam_parser() -> _BeamArgumentParser:
    """A parser that knows every option Beam's PipelineOptions classes declare."""
    parser = _BeamArgumentParser(allow_abbrev=False)
    seen: set[str] = set()
    for cls in _all_option_classes():
        sub = _BeamArgumentParser(allow_abbrev=False)
        cls._add_argparse_args(sub)  # one at a time: two classes may declare the same flag
        for action in sub._actions:
            names = [s for s in action.option_strings if s not in seen]
            if names and action.dest != "help":
                seen.update(names)
                parser._add_action(action)
    return parser


def flag_names() -> list[str]:
    """Every flag Beam knows (`--runner`, `--direct_num_workers`, ...)."""
    return sorted(s for a in beam_parser()._actions for s in a.option_strings if s.startswith("--"))


def unknown_flags(beam_argv: Sequence[str]) -> list[str]:
    """The arguments among `beam_argv` that no Beam option takes (after `--preset` is expanded)."""
    _, unknown = beam_parser().parse_known_args(presets.expand(beam_argv))
    return unknown
