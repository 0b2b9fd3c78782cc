"""`pmc-curate run --config run.yaml [Beam options]`: every stage in order from one YAML file, resumable.

The configuration maps one-to-one onto the stages' command lines: each step's keys are the flags of
`pmc-curate <command>` (``max_length: 128`` is ``--max-length 128``), and the flow parses them with the
very parser the CLI builds (`add_arguments`), then calls the same `run(args, beam_argv)`. There is no
second code path: a step run by the flow does exactly what the same command typed by hand does.

    workdir: demo-work
    beam: {runner: DirectRunner}          # Beam options for every Beam stage (the CLI's pass-through flags)
    steps:
      parse: {inputs: [examples/jats], min_tokens: 64}
      sample: {size: 40, seed: 0}
      propagate: {batch_size: 32, beam: {preset: dataflow-gpu}}   # step-specific Beam options win
      curate:                             # a list runs the command once per item
        - {recipe: be-base}
        - {recipe: be-educational}

Each step records in `W/_stages/<step>.json` what it read (fingerprints of its input tables: file
names, sizes, modification times), its own configuration, and what it wrote (files, rows). Running
again skips a step whose marker says finished with the same configuration and the same inputs, and
whose outputs are still there; every step after a redone step is redone too. So a run that failed
after 20 hours restarts at the step that failed. Beam options are recorded but are not part of the
configuration that decides a re-run: a runner changes where a stage runs, not what it writes.

The jobs live in their own modules: flow_config.py (the YAML file and a step's keys -> its command
line), flow_markers.py (fingerprints, recorded configuration, markers, the redo decision),
flow_lock.py (one flow per work directory), and this one: preparing the stages and running them.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Sequence
from types import ModuleType

from pipeline.core import secrets, storage
from pipeline.core.errors import ConfigError
from pipeline.core.workdir import Workdir

# The flow's parts, re-exported: `pipeline.flow.load_config`, `.read_marker`, ... are what callers use.
from pipeline.flow.config import (  # noqa: F401
    RESERVED,
    FlowConfig,
    PreparedStep,
    Step,
    beam_to_argv,
    config_from_dict,
    flags_to_argv,
    load_config,
)
from pipeline.flow.lock import WorkdirLock
from pipeline.flow.markers import (  # noqa: F401
    INPUT_ARGS,
    MARKER_VERSION,
    NOT_CONFIG,
    STAGE_IO,
    config_hash,
    count_rows,
    marker_path,
    now,
    read_marker,
    step_config,
    step_inputs,
    step_outputs,
    why_redo,
    write_marker,
)

log = logging.getLogger(__name__)


def _commands() -> dict[str, tuple[str, str]]:
    from pipeline.cli import COMMANDS

    return COMMANDS


def stage_parser(command: str, module: ModuleType) -> argparse.ArgumentParser:
    """The same parser `pmc-curate <command>` builds."""
    help_text = _commands().get(command, ("", ""))[1]
    parser = argparse.ArgumentParser(prog=f"pmc-curate {command}", description=help_text)
    module.add_arguments(parser)
    return parser


def uses_beam(module: ModuleType) -> bool:
    """Whether a stage builds a Beam pipeline (it takes its options from beam_runners.options)."""
    from beam_runners.options import pipeline_options

    return getattr(module, "USES_BEAM", None) is True or getattr(module, "pipeline_options", None) is pipeline_options


def import_stage(command: str) -> ModuleType | None:
    """The stage's module, or None when this version does not have it yet."""
    commands = _commands()
    if command not in commands or command in ("run", "demo", "status"):
        raise ConfigError(f"unknown command {command!r}; stages are: {[c for c in commands if c not in ('run', 'demo', 'status')]}")
    module_name = commands[command][0]
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and module_name.startswith(e.name):
            return None
        raise


def prepare(config: FlowConfig, cli_beam_argv: Sequence[str] = (), skip_missing: bool = False,
            importer: Callable[[str], ModuleType | None] | None = None) -> list[PreparedStep]:
    """Parse every step's flags before anything runs, so a typo in step 8 fails at start-up."""
    importer = importer or import_stage
    prepared = []
    for step in config.steps:
        module = importer(step.command)
        if module is None:
            if not skip_missing:
                raise ConfigError(f"step {step.name}: command {step.command!r} is not available in this version")
            prepared.append(PreparedStep(step, None, None, [], []))
            continue
        parser = stage_parser(step.command, module)
        argv = flags_to_argv(parser, step.flags, f"step {step.name}")
        if any(a.dest == "workdir" for a in parser._actions):
            argv.append(f"--workdir={config.workdir}")
        args, extra = parser.parse_known_args(argv)
        if extra:
            raise ConfigError(f"step {step.name}: flags not understood: {extra}")
        if uses_beam(module):
            beam_argv = beam_to_argv(config.beam) + list(cli_beam_argv) + beam_to_argv(step.beam)
        elif step.beam:
            raise ConfigError(f"step {step.name}: `pmc-curate {step.command}` does not run on Beam; remove its `beam:`")
        else:
            beam_argv = []  # DuckDB/PyTorch stages refuse unknown flags, so Beam options are not theirs
        prepared.append(PreparedStep(step, module, args, argv, beam_argv))
    return prepared


# ------------------------------------------------------------------------------------------- execution


def execute_step(prep: PreparedStep, wd: Workdir) -> int:
    """Run one prepared step through its command's own `run`, recording start, failure or finish."""
    assert prep.module is not None and prep.args is not None
    config = step_config(prep.args, prep.step.command)
    base = {
        "marker_version": MARKER_VERSION,
        "step": prep.step.name,
        "command": prep.step.command,
        "argv": secrets.redact_argv(prep.argv),
        "beam_argv": secrets.redact_argv(prep.beam_argv),
        "config": config,
        "config_hash": config_hash(config),
        "inputs": step_inputs(prep, wd),
        "started_at": now(),
        "pid": os.getpid(),
        "host": socket.gethostname(),
    }
    write_marker(wd, prep.step.name, {**base, "status": "running"})
    t0 = time.perf_counter()
    try:
        rc = int(prep.module.run(prep.args, list(prep.beam_argv)) or 0)
    except BaseException as e:
        status = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
        write_marker(wd, prep.step.name, {**base, "status": status, "error": f"{type(e).__name__}: {e}"[:2000],
                                          "ended_at": now(), "duration_s": round(time.perf_counter() - t0, 3)})
        raise
    duration = round(time.perf_counter() - t0, 3)
    if rc != 0:
        write_marker(wd, prep.step.name, {**base, "status": "failed", "error": f"exit code {rc}",
                                          "ended_at": now(), "duration_s": duration})
        return rc
    # A stage may leave its own summary in W/_stages/<command>.json (parse does, when run by hand): keep it.
    own = read_marker(wd, prep.step.command)
    summary = {"summary": own} if own and "marker_version" not in own else {}
    write_marker(wd, prep.step.name, {**base, "status": "finished", "ended_at": now(), "duration_s": duration,
                                      "outputs": step_outputs(prep, wd), **summary})
    return 0


def run_flow(config: FlowConfig, cli_beam_argv: Sequence[str] = (), *, force: Sequence[str] = (),
             only: Sequence[str] = (), dry_run: bool = False, skip_missing: bool = False,
             importer: Callable[[str], ModuleType | None] | None = None,
             echo: Callable[[str], None] = print) -> int:
    """Run the configured steps in order, skipping the finished ones whose inputs and config did not change."""
    wd = Workdir.of(config.workdir)  # ConfigError for a scheme we do not accept, with the accepted list
    prepared = prepare(config, cli_beam_argv, skip_missing=skip_missing, importer=importer)
    storage.check_access(wd.root, write=not dry_run)  # a dead endpoint or a missing bucket stops here
    names = [p.step.name for p in prepared]
    for n in [*force, *only]:
        if n not in names:
            raise ConfigError(f"no step named {n!r}; steps are {names}")
    if dry_run:
        return _run_steps(prepared, wd, force, only, True, echo)
    with WorkdirLock(wd, echo=echo):
        return _run_steps(prepared, wd, force, only, False, echo)


def _run_steps(prepared: list[PreparedStep], wd: Workdir, force: Sequence[str], only: Sequence[str],
               dry_run: bool, echo: Callable[[str], None]) -> int:
    redo_rest: str | None = None
    for i, prep in enumerate(prepared):
        name = prep.step.name
        if prep.module is None:
            echo(f"[{name}] skipped: `pmc-curate {prep.step.command}` is not available in this version yet")
            continue
        if only and name not in only:
            continue
        if name in force:
            reason: str | None = "forced"
        elif redo_rest:
            reason = f"after {redo_rest}, which {'would run' if dry_run else 'just ran'}"
        else:
            reason = why_redo(prep, wd)
        if reason is None:
            m = read_marker(wd, name) or {}
            echo(f"[{name}] finished {m.get('ended_at', '?')}, inputs and config unchanged: skipped")
            continue
        echo(f"[{name}] {'would run' if dry_run else 'running'} ({reason}): pmc-curate {prep.step.command} "
             + " ".join(secrets.redact_argv(prep.argv + prep.beam_argv)))
        if dry_run:
            redo_rest = redo_rest or name
            continue
        # Everything downstream is stale from now on: drop its markers first, so that a crash inside
        # this step can never leave a later step looking finished on inputs that are about to change.
        for later in prepared[i + 1:]:
            marker_path(wd, later.step.name).unlink()
        rc = execute_step(prep, wd)
        if rc != 0:
            echo(f"[{name}] failed with exit code {rc}; fix the cause and run again to resume here")
            return rc
        m = read_marker(wd, name) or {}
        rows = {k: v.get("rows") for k, v in m.get("outputs", {}).items() if v.get("rows") is not None}
        echo(f"[{name}] finished in {m.get('duration_s', 0):.1f} s" + (f": {rows}" if rows else ""))
        redo_rest = name
    return 0


# ------------------------------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `pmc-curate run`."""
    parser.add_argument("--config", required=True, help="YAML file: workdir, beam options, steps (see docs/running.md)")
    parser.add_argument("--workdir", help="override the config's workdir")
    parser.add_argument("--force", action="append", default=[], metavar="STEP",
                        help="redo this step (and everything after it) even if it finished; repeatable")
    parser.add_argument("--only", action="append", default=[], metavar="STEP",
                        help="run only this step (its inputs must exist); repeatable")
    parser.add_argument("--dry-run", action="store_true", help="show what would run and why, run nothing")


def run(args: argparse.Namespace, beam_argv: list[str]) -> int:
    """Entry point of `pmc-curate run`."""
    config = load_config(args.config, workdir=args.workdir)
    rc = run_flow(config, beam_argv, force=args.force, only=args.only, dry_run=args.dry_run)
    if rc == 0 and not args.dry_run:
        print(f"done; `pmc-curate status --workdir {config.workdir}` shows every stage", file=sys.stderr)
    return rc
