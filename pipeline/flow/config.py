"""The flow's configuration: the YAML file `pmc-curate run --config` reads, checked, and each step's keys
turned into its stage's typed Config (`max_length: 128` is the field `max_length`, as `--max-length 128`
is on the command line; pipeline.core.options builds both).

See pipeline/flow/run.py for the file's shape and docs/running.md for every key.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from pipeline.core import options
from pipeline.core.errors import ConfigError
from pipeline.stages import Stage

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
    """A step whose keys have been checked and turned into its stage's Config, before anything runs."""

    step: Step
    stage: Stage
    module: ModuleType
    config: Any
    beam_argv: list[str]

    @property
    def argv(self) -> list[str]:
        """The step as the command line that would run it by hand (its keys, not the Beam options)."""
        return [self.step.command, *options.to_argv(self.config)]


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


def beam_to_argv(beam: Mapping[str, Any]) -> list[str]:
    """Beam options from the config as pass-through flags (`runner: X` -> `--runner=X`)."""
    argv: list[str] = []
    for key, value in beam.items():
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
