"""The flow's configuration: the YAML file `pmc-curate run --config` reads, checked, and each step's keys
turned into the command line of its stage (`max_length: 128` is `--max-length 128`).

See pipeline/flow.py for the file's shape and docs/running.md for every key.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from pipeline.core.errors import ConfigError

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
