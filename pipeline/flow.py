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
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from pipeline import secrets, storage
from pipeline.errors import ConfigError
from pipeline.flow_lock import WorkdirLock, alive
from pipeline.storage import Location
from pipeline.workdir import Workdir

log = logging.getLogger(__name__)

MARKER_VERSION = 1

# What each stage reads and writes, as globs relative to the work directory (`{arg}` is filled from
# the step's parsed arguments). Inputs decide whether a finished step is still valid; outputs are
# counted into the marker and must still exist for the step to be skipped.
STAGE_IO: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "parse": ((), ("articles/*.parquet", "paragraphs/*.parquet", "rejects/parse-*.parquet")),
    "sample": (("articles/*.parquet", "paragraphs/*.parquet"), ("sample/*.parquet",)),
    "annotate": (("sample/*.parquet",), ("annotations/*.parquet", "rejects/annotate-*.parquet")),
    "train": (("annotations/*.parquet", "paragraphs/*.parquet"), ("model/**",)),
    "evaluate": (("model/**", "annotations/*.parquet"), ("reports/classifier*",)),
    "propagate": (("model/**", "paragraphs/*.parquet"), ("labels/*.parquet", "rejects/propagate-*.parquet")),
    "curate": (("articles/*.parquet", "paragraphs/*.parquet", "{labels}/*.parquet"), ("subsets/{recipe_name}/**",)),
    "report": (("articles/*.parquet", "paragraphs/*.parquet", "{labels}/*.parquet", "subsets/**"), ("reports/index.md",)),
}

# Arguments whose values name input files outside the work directory: fingerprinted like tables.
INPUT_ARGS: dict[str, tuple[str, ...]] = {"parse": ("inputs", "input"), "curate": ("recipe",)}

# Arguments that change how fast a step runs, never what it writes: a change does not redo the step.
NOT_CONFIG = frozenset({"workdir", "verbose", "concurrency", "progress", "no_progress", "threads",
                        "torch_threads", "memory_limit", "temp_directory"})

# Keys of a step that are the flow's own, not the command's flags.
# (`step`, not `name`: curate has its own --name.)
RESERVED = frozenset({"command", "step", "beam"})


@dataclasses.dataclass
class Step:
    """One step of the flow: a command, its flags from the config, and its own Beam options."""

    name: str
    command: str
    flags: dict[str, Any]
    beam: dict[str, Any]


@dataclasses.dataclass
class FlowConfig:
    """The parsed configuration file."""

    workdir: str
    steps: list[Step]
    beam: dict[str, Any]
    source: str = "<dict>"


@dataclasses.dataclass
class PreparedStep:
    """A step whose flags have been parsed by its command's own parser."""

    step: Step
    module: ModuleType | None
    args: argparse.Namespace | None
    argv: list[str]
    beam_argv: list[str]


def _commands() -> dict[str, tuple[str, str]]:
    from pipeline.cli import COMMANDS

    return COMMANDS


# ---------------------------------------------------------------------------------------------- config


def load_config(path: str | Path, workdir: str | None = None) -> FlowConfig:
    """Read and check a flow configuration file. Raises ConfigError naming what is wrong."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}") from e
    cfg = config_from_dict(data, workdir=workdir)
    cfg.source = str(p)
    return cfg


def config_from_dict(data: Any, workdir: str | None = None) -> FlowConfig:
    """Check a configuration given as a mapping (the parsed YAML)."""
    if not isinstance(data, Mapping):
        raise ConfigError("config must be a mapping with keys workdir, beam, steps")
    unknown = set(data) - {"workdir", "beam", "steps"}
    if unknown:
        raise ConfigError(f"config: unknown top-level keys {sorted(unknown)}; expected workdir, beam, steps")
    wd = workdir or data.get("workdir")
    if not wd:
        raise ConfigError("config: no workdir (set `workdir:` or pass --workdir)")
    beam = _mapping(data.get("beam") or {}, "beam")
    raw_steps = data.get("steps")
    if not isinstance(raw_steps, Mapping) or not raw_steps:
        raise ConfigError("config: `steps` must be a non-empty mapping of step name -> flags")
    steps: list[Step] = []
    for key, value in raw_steps.items():
        items = value if isinstance(value, list) else [value]
        for i, item in enumerate(items):
            flags = dict(_mapping(item or {}, f"steps.{key}"))
            command = str(flags.pop("command", key))
            name = flags.pop("step", None)
            if name is None:
                name = key if len(items) == 1 else f"{key}-{_slug(item, i)}"
            step_beam = dict(_mapping(flags.pop("beam", None) or {}, f"steps.{key}.beam"))
            steps.append(Step(name=str(name), command=command, flags=flags, beam=step_beam))
    names = [s.name for s in steps]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"config: step names must be unique, repeated: {dupes} (give each a `step:` name)")
    return FlowConfig(workdir=str(wd), steps=steps, beam=dict(beam))


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"config: {where} must be a mapping of key: value, got {type(value).__name__}")
    return value


def _slug(item: Any, index: int) -> str:
    """A readable name for one item of a repeated step: its first scalar value (e.g. the recipe)."""
    if isinstance(item, Mapping):
        for v in item.values():
            if isinstance(v, str | int | float) and not isinstance(v, bool):
                s = "".join(c if c.isalnum() or c in "-_." else "-" for c in Path(str(v)).stem)
                if s:
                    return s
    return str(index)


def flags_to_argv(parser: argparse.ArgumentParser, flags: Mapping[str, Any], where: str) -> list[str]:
    """Turn a step's config keys into the command line its parser expects (one key = one flag)."""
    actions = {a.dest: a for a in parser._actions if a.dest != "help"}
    positional: list[str] = []
    optional: list[str] = []
    for key, value in flags.items():
        dest = str(key).replace("-", "_")
        action = actions.get(dest)
        if action is None or dest == "workdir":
            known = sorted(k for k in actions if k != "workdir")
            hint = " (workdir is set once at the top of the config)" if dest == "workdir" else ""
            raise ConfigError(f"{where}: unknown key {key!r}{hint}; this command accepts: {known}")
        if value is None:
            continue
        if isinstance(value, Mapping):  # e.g. curate's --param key=value, repeated
            value = [f"{k}={v}" for k, v in value.items()]
        values = list(value) if isinstance(value, list | tuple) else [value]
        if not action.option_strings:
            positional += [str(v) for v in values]
            continue
        flag = max(action.option_strings, key=lambda s: (s.startswith("--"), len(s)))
        if action.nargs == 0:
            if isinstance(action, argparse.BooleanOptionalAction):
                yes = [s for s in action.option_strings if s.startswith("--") and not s.startswith("--no-")]
                no = [s for s in action.option_strings if s.startswith("--no-")]
                optional.append(yes[0] if value else no[0])
            elif value == action.const:
                optional.append(flag)
            elif value != action.default:
                raise ConfigError(f"{where}: {key} is a switch; use true or false, not {value!r}")
            continue
        if isinstance(action, argparse._AppendAction):
            for v in values:
                optional.append(f"{flag}={v}")
        elif action.nargs in ("+", "*") or isinstance(action.nargs, int):
            optional += [flag, *(str(v) for v in values)]
        else:
            if len(values) != 1:
                raise ConfigError(f"{where}: {key} takes one value, got a list {value!r}")
            optional.append(f"{flag}={values[0]}")
    return positional + optional


def beam_to_argv(options: Mapping[str, Any]) -> list[str]:
    """Beam options from the config as pass-through flags (`runner: X` -> `--runner=X`)."""
    argv: list[str] = []
    for key, value in options.items():
        if value is None or value is False:
            continue
        flag = f"--{key}"
        if value is True:
            argv.append(flag)
        elif isinstance(value, list | tuple):
            argv += [f"{flag}={v}" for v in value]
        else:
            argv.append(f"{flag}={value}")
    return argv


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


# ----------------------------------------------------------------------------------------- fingerprints


def _files(root: Location, pattern: str) -> list[Location]:
    return root.glob(pattern)


def fingerprint_files(paths: Sequence[Location | Path | str], relative_to: Location | None = None) -> dict[str, Any]:
    """Files, bytes and a digest of (name, size, version) of a set of files (see storage.fingerprint)."""
    return storage.fingerprint(paths, relative_to)


def _input_paths(value: Any) -> list[Location]:
    """Files named by an input argument (files, directories, globs) on any accepted filesystem."""
    out: list[Location] = []
    for v in value if isinstance(value, list | tuple) else [value]:
        out += storage.expand(str(v))
    return out


def _fmt(pattern: str, args: argparse.Namespace) -> str:
    fields = dict(vars(args))
    recipe = fields.get("recipe")
    fields["recipe_name"] = fields.get("name") or (Path(str(recipe)).stem if recipe else "*")
    fields.setdefault("labels", "labels")  # curate/report --labels: the student's labels or the teacher's
    try:
        return pattern.format(**fields)
    except (KeyError, IndexError):
        return pattern


def step_inputs(prep: PreparedStep, wd: Workdir) -> dict[str, Any]:
    """Fingerprints of everything the step reads."""
    assert prep.args is not None
    reads, _ = STAGE_IO.get(prep.step.command, ((), ()))
    out: dict[str, Any] = {}
    for pattern in reads:
        pat = _fmt(pattern, prep.args)
        out[pat] = fingerprint_files(_files(wd.root, pat), wd.root)
    for arg in INPUT_ARGS.get(prep.step.command, ()):
        value = getattr(prep.args, arg, None)
        if value:
            out[f"arg:{arg}"] = {"value": [str(v) for v in value] if isinstance(value, list | tuple) else str(value),
                                 **fingerprint_files(_input_paths(value))}
    return out


def count_rows(paths: Sequence[Location]) -> int | None:
    """Rows of a set of Parquet files, from their footers (no data read)."""
    parquet = [storage.as_location(p) for p in paths if str(p).endswith(".parquet")]
    if not parquet:
        return None
    return sum(storage.read_parquet_metadata(p).num_rows for p in parquet)


def step_outputs(prep: PreparedStep, wd: Workdir) -> dict[str, Any]:
    """Fingerprints and row counts of everything the step wrote."""
    assert prep.args is not None
    _, writes = STAGE_IO.get(prep.step.command, ((), ()))
    out: dict[str, Any] = {}
    for pattern in writes:
        pat = _fmt(pattern, prep.args)
        files = _files(wd.root, pat)
        out[pat] = {**fingerprint_files(files, wd.root), "rows": count_rows(files)}
    return out


def step_config(args: argparse.Namespace, command: str = "") -> dict[str, Any]:
    """The step's configuration as recorded (JSON-safe), without the knobs that only change speed.

    Local input paths are made absolute, so `examples/jats` typed in the repository and the same folder
    given as an absolute path are the same configuration (their files are fingerprinted anyway).
    """
    config = {k: _json_safe(v) for k, v in sorted(vars(args).items()) if k not in NOT_CONFIG}
    for arg in INPUT_ARGS.get(command, ()):
        value = config.get(arg)
        if isinstance(value, list):
            config[arg] = [_abs(v) for v in value]
        elif isinstance(value, str):
            config[arg] = _abs(value)
    return config


def _abs(path: Any) -> Any:
    p = str(path)
    return p if "://" in p or not os.path.exists(p) else os.path.abspath(p)


def _json_safe(v: Any) -> Any:
    if isinstance(v, str | int | float | bool) or v is None:
        return v
    if isinstance(v, list | tuple):
        return [_json_safe(x) for x in v]
    if isinstance(v, Mapping):
        return {str(k): _json_safe(x) for k, x in v.items()}
    return str(v)


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------- markers


def marker_path(wd: Workdir, step: str) -> Location:
    return wd.stages / f"{step}.json"


def read_marker(wd: Workdir, step: str) -> dict[str, Any] | None:
    """A step's marker, or None when absent or unreadable (an unreadable marker means: redo)."""
    p = marker_path(wd, step)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_marker(wd: Workdir, step: str, marker: Mapping[str, Any]) -> None:
    """Write whole (temp file + rename locally, one PUT on object stores), so a kill while writing never
    leaves a half marker that reads as finished. Secrets on command lines are masked."""
    text = secrets.redact(json.dumps(marker, indent=2, sort_keys=False) + "\n")
    marker_path(wd, step).write_text(text)


_alive = alive


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def why_redo(prep: PreparedStep, wd: Workdir) -> str | None:
    """None when the step's marker proves it finished on the same inputs and config; else the reason."""
    assert prep.args is not None
    marker = read_marker(wd, prep.step.name)
    if marker is None:
        return "not run before"
    if marker.get("status") == "running":
        if marker.get("host") == socket.gethostname() and marker.get("pid") != os.getpid() and _alive(marker.get("pid")):
            raise ConfigError(f"step {prep.step.name} is being run by another process (pid {marker['pid']}) "
                              f"in {wd.root}; wait for it or stop it first")
        return "last run was interrupted"
    if marker.get("status") != "finished":
        return f"last run {marker.get('status', 'did not record its state')}"
    if marker.get("command") != prep.step.command or marker.get("config_hash") != _hash(step_config(prep.args, prep.step.command)):
        return "configuration changed"
    now = step_inputs(prep, wd)
    before = marker.get("inputs", {})
    for key, fp in now.items():
        if before.get(key, {}).get("digest") != fp.get("digest"):
            return f"input {key} changed"
    for key, fp in marker.get("outputs", {}).items():
        if fp.get("files") and not _files(wd.root, key):
            return f"output {key} is gone"
    return None


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
        "config_hash": _hash(config),
        "inputs": step_inputs(prep, wd),
        "started_at": _now(),
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
                                          "ended_at": _now(), "duration_s": round(time.perf_counter() - t0, 3)})
        raise
    duration = round(time.perf_counter() - t0, 3)
    if rc != 0:
        write_marker(wd, prep.step.name, {**base, "status": "failed", "error": f"exit code {rc}",
                                          "ended_at": _now(), "duration_s": duration})
        return rc
    # A stage may leave its own summary in W/_stages/<command>.json (parse does, when run by hand): keep it.
    own = read_marker(wd, prep.step.command)
    summary = {"summary": own} if own and "marker_version" not in own else {}
    write_marker(wd, prep.step.name, {**base, "status": "finished", "ended_at": _now(), "duration_s": duration,
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
