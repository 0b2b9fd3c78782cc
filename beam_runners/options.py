"""Build Beam PipelineOptions. Runners are options, not code paths: nothing in pipeline/ branches on them.

Every stage calls `pipeline_options(beam_argv)`: flags the stage's CLI did not consume
(`--runner`, `--direct_num_workers`, `--direct_running_mode`, Dataflow/Flink flags) pass straight through.
`--preset NAME` expands to a named set of flags (beam_runners/presets.py: direct, direct-multiprocess,
portable, flink, dataflow, dataflow-gpu); flags given by the user win over the preset's.
"""

from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions

from beam_runners import presets

# The Python DirectRunner by default: in Beam 2.77 the unnamed default first tries Prism, which needs a
# binary downloaded from the internet; naming the runner avoids that failed attempt on offline machines.
DEFAULT_RUNNER = "DirectRunner"


def pipeline_options(beam_argv: list[str] | None = None, **overrides: object) -> PipelineOptions:
    """PipelineOptions from pass-through CLI flags, with the project's defaults where a flag is absent."""
    argv = presets.expand(beam_argv or [])
    if not any(a == "--runner" or a.startswith("--runner=") for a in argv):
        argv.append(f"--runner={DEFAULT_RUNNER}")
    opts = PipelineOptions(argv, **overrides)
    presets.validate(opts)  # a Dataflow/Flink run missing a required flag stops here, before any work
    return opts
