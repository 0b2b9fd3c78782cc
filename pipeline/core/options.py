"""Typed stage configurations: one dataclass per command, whose fields are its flags and its YAML keys.

A command declares its settings once, as a dataclass whose fields carry `option(...)` metadata (help,
flag spelling, choices). From that one declaration:

- `add_arguments(parser, Config)` builds the command line (`--max-length 128`),
- `from_namespace(Config, args)` turns parsed flags into the config object,
- `from_mapping(Config, {"max_length": 128}, where)` turns a flow step's YAML keys into the same object,
- `record(config)` is what a marker stores (JSON-safe, without the fields that only change speed).

So `pmc-curate train --max-length 128` and a flow step `train: {max_length: 128}` build equal
`Config` objects and run the same function with them; nothing re-parses a command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import logging
import os
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass
from pathlib import Path
from typing import Any

from pipeline.core.errors import ConfigError

log = logging.getLogger(__name__)


class _Deprecated(argparse.Action):
    """A former flag name: stores into the new field and says which name to use instead."""

    def __init__(self, *args: Any, new: str = "", **kwargs: Any) -> None:
        self.new = new
        super().__init__(*args, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:  # fmt: skip
        log.warning("%s is deprecated (it meant different things in different stages); use %s", option_string, self.new)
        setattr(namespace, self.dest, values)


@dataclass(frozen=True)
class Opt:
    """How one config field appears on the command line and in a flow's YAML."""

    help: str
    flag: str | None = None  # default: --field-name
    choices: tuple[Any, ...] | None = None
    metavar: str | tuple[str, ...] | None = None
    positional: bool = False  # a positional argument (parse's INPUT...)
    nargs: int | str | None = None  # a fixed count (annotate's --compare A B) or "+"
    append: bool = False  # repeatable flag (curate's --param k=v)
    negative: str | None = None  # a bool that defaults to True, switched off by this flag (--no-export)
    speed_only: bool = False  # changes how fast a step runs, never what it writes: not part of its recorded config
    input_path: bool = False  # names input files outside the work directory: fingerprinted by the flow
    parse: Callable[[str], Any] | None = None  # the command line's text -> the field's value
    fixed: bool = False  # set once for every step by the flow (the work directory), not a step key
    # Former spellings, still accepted (with a warning) for one release: one flag name, one meaning.
    deprecated: tuple[str, ...] = ()


def option(default: Any = MISSING, *, help: str, default_factory: Any = MISSING, **kwargs: Any) -> Any:
    """A dataclass field with its command-line description (see Opt for the keywords)."""
    return dataclasses.field(default=default, default_factory=default_factory, metadata={"option": Opt(help, **kwargs)})


def fields(cls: type) -> list[tuple[dataclasses.Field[Any], Opt, Any]]:
    """(field, its Opt, its type hint) of every option of a config class, in declaration order."""
    hints = typing.get_type_hints(cls)
    return [(f, f.metadata["option"], hints[f.name]) for f in dataclasses.fields(cls) if "option" in f.metadata]


def flag_name(f: dataclasses.Field[Any], opt: Opt) -> str:
    return opt.flag or "--" + f.name.replace("_", "-")


def _base(tp: Any) -> tuple[Any, bool]:
    """(the type without None, whether None is allowed)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return MISSING


def add_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add one flag (or positional argument) per option field of `cls` to `parser`."""
    for f, opt, tp in fields(cls):
        base, _ = _base(tp)
        default = _default(f)
        kw: dict[str, Any] = {"help": opt.help}
        if opt.metavar is not None:
            kw["metavar"] = opt.metavar
        if opt.positional:
            parser.add_argument(f.name, nargs=opt.nargs or "+", **kw)
            continue
        if default is not MISSING and base is not bool and default not in (None, [], {}, ""):
            kw["help"] = f"{opt.help} (default: {default})" if "default" not in opt.help else opt.help
        if base is bool:
            if opt.negative:
                parser.add_argument(opt.negative, dest=f.name, action="store_false", **kw)
            else:
                parser.add_argument(flag_name(f, opt), dest=f.name, action="store_true", **kw)
            continue
        if default is MISSING or opt.fixed:
            kw["required"] = True
        else:
            kw["default"] = default
        if opt.choices is not None:
            kw["choices"] = list(opt.choices)
        if opt.append:
            kw.update(action="append", default=[])
        elif opt.nargs is not None:
            kw["nargs"] = opt.nargs
        if opt.parse is None and typing.get_origin(base) is not list and base in (int, float, str, Path):
            kw["type"] = base
        parser.add_argument(flag_name(f, opt), dest=f.name, **kw)
        for old in opt.deprecated:
            parser.add_argument(old, dest=f.name, action=_Deprecated, new=flag_name(f, opt), help=argparse.SUPPRESS,
                                **{k: v for k, v in kw.items() if k in ("type", "nargs", "choices")})


def _convert(value: Any, tp: Any, opt: Opt, where: str, key: str) -> Any:
    """A YAML value (or a flag's parsed value) as the field's type; ConfigError naming the key otherwise."""
    base, nullable = _base(tp)
    if value is None:
        if nullable:
            return None
        raise ConfigError(f"{where}: {key} needs a value")
    origin = typing.get_origin(base)
    if opt.parse is not None and isinstance(value, str):
        return opt.parse(value)
    if origin is list:
        (inner,) = typing.get_args(base)
        if isinstance(value, Mapping):  # curate's params: {factor: 20} is --param factor=20
            value = [f"{k}={v}" for k, v in value.items()]
        items = list(value) if isinstance(value, list | tuple) else [value]
        return [_convert(v, inner, Opt(opt.help), where, key) for v in items]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: {key} must be a mapping, got {value!r}")
        return dict(value)
    if base is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {key} is a switch; use true or false, not {value!r}")
        return value
    if base is int:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ConfigError(f"{where}: {key} must be an integer, not {value!r}")
        try:
            return int(value)
        except ValueError as e:
            raise ConfigError(f"{where}: {key} must be an integer, not {value!r}") from e
    if base is float:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ConfigError(f"{where}: {key} must be a number, not {value!r}")
        try:
            return float(value)
        except ValueError as e:
            raise ConfigError(f"{where}: {key} must be a number, not {value!r}") from e
    if base is Path:
        return Path(str(value))
    if base is str:
        if isinstance(value, Mapping | list | tuple):
            raise ConfigError(f"{where}: {key} takes one value, got {value!r}")
        return str(value)
    return value


def _check_choices(config: Any) -> None:
    for f, opt, _ in fields(type(config)):
        value = getattr(config, f.name)
        if opt.choices is not None and value is not None and value not in opt.choices:
            raise ConfigError(f"{flag_name(f, opt)} must be one of {', '.join(map(str, opt.choices))}, not {value!r}")


def from_namespace(cls: type, args: argparse.Namespace) -> Any:
    """The config object from flags parsed by a parser `add_arguments(parser, cls)` built."""
    kwargs = {}
    for f, opt, tp in fields(cls):
        value = getattr(args, f.name)
        kwargs[f.name] = value if value is None else _convert(value, tp, opt, "command line", flag_name(f, opt))
    config = cls(**kwargs)
    _check_choices(config)
    return config


def suggest(name: str, known: Sequence[str]) -> str:
    """' (did you mean x?)' for a misspelt name, else ''."""
    close = difflib.get_close_matches(name, list(known), n=2, cutoff=0.6)
    return f" (did you mean {' or '.join(close)}?)" if close else ""


def from_mapping(cls: type, mapping: Mapping[str, Any], where: str, fixed: Mapping[str, Any] | None = None) -> Any:
    """The config object from a flow step's keys (`max_length: 128` or `max-length: 128`).

    `fixed` holds the values the flow sets for every step (the work directory); a step may not set them.
    Unknown keys, wrong types and missing required keys are ConfigErrors naming the key.
    """
    specs = {f.name: (f, opt, tp) for f, opt, tp in fields(cls)}
    # A key may also be spelt as its flag (`param:` for curate's `--param`, stored in `params`).
    by_flag = {flag_name(f, o).lstrip("-").replace("-", "_"): name for name, (f, o, _) in specs.items() if not o.positional}
    old_names = {d.lstrip("-").replace("-", "_"): name for name, (_, o, _) in specs.items() for d in o.deprecated}
    fixed = dict(fixed or {})
    kwargs: dict[str, Any] = {}
    for raw_key, value in mapping.items():
        key = str(raw_key).replace("-", "_")
        if key not in specs and key not in by_flag and key in old_names:
            log.warning("%s: key %r is deprecated; use %r", where, raw_key, old_names[key])
            key = old_names[key]
        key = key if key in specs else by_flag.get(key, key)
        if key not in specs or specs[key][1].fixed:
            keys = [k for k, (_, o, _) in specs.items() if not o.fixed]
            hint = " (the work directory is set once at the top of the config)" if key == "workdir" else suggest(key, keys)
            raise ConfigError(f"{where}: unknown key {raw_key!r}{hint}; this command accepts: {sorted(keys)}")
        f, opt, tp = specs[key]
        kwargs[key] = _convert(value, tp, opt, where, str(raw_key))
    for key, value in fixed.items():
        if key in specs:
            kwargs[key] = value
    missing = [k for k, (f, _, _) in specs.items() if k not in kwargs and _default(f) is MISSING]
    if missing:
        raise ConfigError(f"{where}: missing {', '.join(missing)}")
    config = cls(**kwargs)
    _check_choices(config)
    return config


def _json_safe(v: Any) -> Any:
    if isinstance(v, str | int | float | bool) or v is None:
        return v
    if isinstance(v, list | tuple):
        return [_json_safe(x) for x in v]
    if isinstance(v, Mapping):
        return {str(k): _json_safe(x) for k, x in v.items()}
    return str(v)


def _abs(path: Any) -> Any:
    p = str(path)
    return p if "://" in p or not os.path.exists(p) else os.path.abspath(p)


def record(config: Any) -> dict[str, Any]:
    """The configuration as a marker records it: JSON-safe, sorted, without the speed-only fields.

    Local input paths are made absolute, so `examples/jats` typed in the repository and the same folder
    given as an absolute path are the same configuration (their files are fingerprinted anyway).
    """
    out: dict[str, Any] = {}
    for f, opt, _ in fields(type(config)):
        if opt.speed_only or opt.fixed:
            continue
        value = _json_safe(getattr(config, f.name))
        if opt.input_path:
            value = [_abs(v) for v in value] if isinstance(value, list) else (_abs(value) if value else value)
        out[f.name] = value
    return dict(sorted(out.items()))


def input_paths(config: Any) -> dict[str, Any]:
    """{field: value} of the fields naming input files outside the work directory (set ones only)."""
    return {f.name: getattr(config, f.name) for f, opt, _ in fields(type(config))
            if opt.input_path and getattr(config, f.name)}  # fmt: skip


def to_argv(config: Any, with_fixed: bool = False) -> list[str]:
    """The command line that builds `config` (flags whose value differs from the default): what a flow
    step would be if typed by hand. `from_namespace` over it gives back an equal config."""
    positional: list[str] = []
    flags: list[str] = []
    for f, opt, tp in fields(type(config)):
        if opt.fixed and not with_fixed:
            continue
        value = getattr(config, f.name)
        if opt.positional:
            positional += [str(v) for v in value]
            continue
        if value == _default(f) and not (opt.fixed and with_fixed):
            continue
        name = flag_name(f, opt)
        base, _ = _base(tp)
        if base is bool:
            flags.append(opt.negative if opt.negative else name)
        elif opt.append:
            flags += [f"{name}={v}" for v in value]
        elif opt.nargs is not None:
            flags += [name, *(str(v) for v in value)]
        elif isinstance(value, dict):
            flags.append(f"{name}=" + ",".join(f"{k}={v}" for k, v in value.items()))
        elif value is not None:
            flags.append(f"{name}={value}")
    return positional + flags
