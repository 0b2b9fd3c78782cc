"""`pmc-curate run --config run.yaml [Beam options]`: every stage in order from one YAML file, resumable.

The configuration maps one-to-one onto the stages' command lines: each step's keys are the fields of
its stage's `Config` (``max_length: 128``), the same fields `pmc-curate <command>` builds from its flags
(``--max-length 128``). The flow turns a step's keys into that Config before anything runs (a typo in
step 8 fails at start-up) and calls the stage's `run(config, beam_argv)`: a step run by the flow does
exactly what the same command typed by hand does.

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

The jobs live in their own modules: config.py (the YAML file), markers.py (fingerprints, recorded
configuration, markers, the redo decision), lock.py (one flow per work directory), status.py, and this
one: preparing the steps and running them.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

from beam_runners import options as beam_options
from pipeline import stages
from pipeline.core import logs, options, secrets, storage
from pipeline.core.errors import ConfigError, DryRunFinished, LockLostError
from pipeline.core.options import option
from pipeline.core.workdir import Workdir
from pipeline.flow import debris
from pipeline.flow.config import FlowConfig, PreparedStep, beam_to_argv, load_config
from pipeline.flow.lock import WorkdirLock
from pipeline.flow.markers import (
    MARKER_VERSION,
    config_hash,
    marker_path,
    now,
    read_marker,
    step_inputs,
    step_outputs,
    why_redo,
    write_marker,
)

log = logging.getLogger(__name__)


class Registry(Protocol):
    """Where the flow finds stages: pipeline.stages itself (tests give stand-ins)."""

    def get(self, name: str) -> stages.Stage: ...

    def load(self, stage: stages.Stage) -> ModuleType: ...


def prepare(config: FlowConfig, cli_beam_argv: Sequence[str] = (), registry: Registry = stages) -> list[PreparedStep]:
    """Every step's keys as its stage's Config, before anything runs, so a typo in step 8 fails at start-up."""
    prepared = []
    for step in config.steps:
        stage = registry.get(step.command)
        module = registry.load(stage)
        secrets.register_urls(step.flags)  # a password in a step's URL (base_url) is masked in logs and markers
        cfg = options.from_mapping(module.Config, step.flags, f"step {step.name}", fixed={"workdir": config.workdir})
        if stage.beam:
            beam_argv = beam_to_argv(config.beam) + list(cli_beam_argv) + beam_to_argv(step.beam)
            unknown = beam_options.unknown_flags(beam_argv)
            if unknown:
                hints = "".join(options.suggest(a.split("=", 1)[0], beam_options.flag_names())
                                for a in unknown if a.startswith("-"))
                raise ConfigError(f"step {step.name}: Beam does not know {' '.join(unknown)}{hints} "
                                  "(from the config's `beam:`, the command line or the step's `beam:`)")
        elif step.beam:
            raise ConfigError(f"step {step.name}: `pmc-curate {step.command}` does not run on Beam; remove its `beam:`")
        else:
            beam_argv = []  # DuckDB/PyTorch stages take no Beam options
        prepared.append(PreparedStep(step, stage, module, cfg, beam_argv))
    return prepared


# ------------------------------------------------------------------------------------------- execution


def execute_step(prep: PreparedStep, wd: Workdir, check: Callable[[], None] = lambda: None) -> int:
    """Run one prepared step through its stage's own `run`, recording start, failure or finish.

    `check` raises LockLostError once another run holds the work directory: it is called before every
    marker written here, and a lost lock is never followed by a marker (the other run owns them now).
    """
    config = options.record(prep.config)
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
    check()
    write_marker(wd, prep.step.name, {**base, "status": "running"})
    t0 = time.perf_counter()
    try:
        with logs.to_workdir(wd.root, prep.step.name):  # the step's full log: W/logs/<step>.log
            rc = int(prep.module.run(prep.config, list(prep.beam_argv)) or 0)
    except LockLostError:
        raise
    except BaseException as e:
        check()
        status = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
        write_marker(wd, prep.step.name, {**base, "status": status, "error": f"{type(e).__name__}: {e}"[:2000],
                                          "ended_at": now(), "duration_s": round(time.perf_counter() - t0, 3)})
        raise
    duration = round(time.perf_counter() - t0, 3)
    check()
    if rc != 0:
        write_marker(wd, prep.step.name, {**base, "status": "failed", "error": f"exit code {rc}",
                                          "ended_at": now(), "duration_s": duration})
        return rc
    # A stage may leave its own summary in W/_stages/state/<command>.json (propagate) or, as parse still
    # does, in W/_stages/<command>.json: keep it in the marker.
    own = read_marker(wd, f"state/{prep.step.command}") or read_marker(wd, prep.step.command)
    summary = {"summary": own} if own and "marker_version" not in own else {}
    write_marker(wd, prep.step.name, {**base, "status": "finished", "ended_at": now(), "duration_s": duration,
                                      "outputs": step_outputs(prep, wd), **summary})
    return 0


def run_flow(config: FlowConfig, cli_beam_argv: Sequence[str] = (), *, force: Sequence[str] = (),
             only: Sequence[str] = (), dry_run: bool = False, registry: Registry = stages,
             echo: Callable[[str], None] = print, job_file: str | None = None) -> int:
    """Run the configured steps in order, skipping the finished ones whose inputs and config did not change."""
    wd = Workdir.of(config.workdir)  # ConfigError for a scheme we do not accept, with the accepted list
    prepared = prepare(config, cli_beam_argv, registry)
    storage.check_access(wd.root, write=not dry_run)  # a dead endpoint or a missing bucket stops here
    names = [p.step.name for p in prepared]
    for n in [*force, *only]:
        if n not in names:
            raise ConfigError(f"no step named {n!r}; steps are {names}")
    if dry_run:
        jobs: dict[str, Any] = {}
        rc = _run_steps(prepared, wd, force, only, True, echo, jobs if job_file else None)
        if job_file:
            storage.as_location(job_file).write_text(json.dumps(jobs, indent=1, sort_keys=True) + "\n")
            echo(f"dry run: wrote the jobs of {len(jobs)} Beam step(s) to {job_file}; nothing was submitted")
        return rc
    # interrupt: a takeover stops the step in progress too (LockLostError in this thread), not only the next one.
    with WorkdirLock(wd, echo=echo, interrupt=True) as lock:
        debris.collect(wd)  # no other writer is at work now: what killed runs left can go
        return _run_steps(prepared, wd, force, only, False, echo, check=lock.check)


def _run_steps(prepared: list[PreparedStep], wd: Workdir, force: Sequence[str], only: Sequence[str],
               dry_run: bool, echo: Callable[[str], None], jobs: dict[str, Any] | None = None,
               check: Callable[[], None] = lambda: None) -> int:
    redo_rest: str | None = None
    for i, prep in enumerate(prepared):
        check()  # a run that lost its lock stops before its next step
        name = prep.step.name
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
        echo(f"[{name}] {'would run' if dry_run else 'running'} ({reason}): pmc-curate "
             + " ".join(secrets.redact_argv(prep.argv + prep.beam_argv)))
        if dry_run:
            redo_rest = redo_rest or name
            if jobs is not None and prep.stage.beam:
                jobs[name] = dry_run_job(prep)
            continue
        # Everything downstream is stale from now on: drop its markers first, so that a crash inside
        # this step can never leave a later step looking finished on inputs that are about to change.
        for later in prepared[i + 1:]:
            marker_path(wd, later.step.name).unlink()
        rc = execute_step(prep, wd, check)
        if rc != 0:
            echo(f"[{name}] failed with exit code {rc}; fix the cause and run again to resume here")
            return rc
        m = read_marker(wd, name) or {}
        rows = {k: v.get("rows") for k, v in m.get("outputs", {}).items() if v.get("rows") is not None}
        echo(f"[{name}] finished in {m.get('duration_s', 0):.1f} s" + (f": {rows}" if rows else ""))
        redo_rest = name
    return 0


def dry_run_job(prep: PreparedStep) -> dict[str, Any]:
    """The job one Beam step would submit (its stage run with `--dry-run`, beam_runners/dryrun.py), or why
    it cannot be built now (its inputs come from a step that has not run yet)."""
    if prep.step.command == "annotate":
        return {"not_built": "annotate is not dry-run as a job: `pmc-curate annotate --dry-run` prints the "
                             "teacher's cost estimate instead"}
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "job.json")
        try:
            prep.module.run(prep.config, [*prep.beam_argv, "--dry-run", out])
        except DryRunFinished:
            return json.loads(Path(out).read_text())
        except ConfigError as e:
            return {"not_built": secrets.redact(str(e))}
    return {"not_built": "the stage built no pipeline"}


# ------------------------------------------------------------------------------------------------- CLI


@dataclass(frozen=True)
class Config:
    """`pmc-curate run`: the flow file and which of its steps to run."""

    config: str = option(help="YAML file: workdir, beam options, steps (see docs/running.md)")
    workdir: str | None = option(None, help="override the config's workdir")
    force: list[str] = option(default_factory=list, append=True, metavar="STEP",
                              help="redo this step (and everything after it) even if it finished; repeatable")
    only: list[str] = option(default_factory=list, append=True, metavar="STEP",
                             help="run only this step (its inputs must exist); repeatable")
    dry_run: str | None = option(None, metavar="FILE", help="show what would run and why, run nothing; write "
                                 "the job each Beam step would submit to FILE (JSON, by step)")


def run(args: Config, beam_argv: list[str]) -> int:
    """Entry point of `pmc-curate run`."""
    from pipeline.flow.summary import closing_summary

    config = load_config(args.config, workdir=args.workdir)
    t0 = time.perf_counter()
    rc = run_flow(config, beam_argv, force=args.force, only=args.only, dry_run=args.dry_run is not None,
                  job_file=args.dry_run)
    if args.dry_run is None:
        print(closing_summary(Workdir.of(config.workdir), time.perf_counter() - t0, rc))
    return rc
