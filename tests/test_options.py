"""Typed stage configs: one dataclass gives the command line, the YAML keys and the recorded config."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pipeline.core import options
from pipeline.core.errors import ConfigError
from pipeline.core.options import option


@dataclass
class Example:
    inputs: list[str] = option(positional=True, input_path=True, help="inputs")
    workdir: str = option("", fixed=True, help="work directory")
    max_length: int = option(512, help="tokens")
    commercial_only: bool = option(False, help="switch")
    params: list[str] = option(default_factory=list, flag="--param", append=True, help="k=v")
    export: bool = option(True, negative="--no-export", help="skip the export")
    heads: list[str] | None = option(None, nargs=2, help="two names")
    ratio: float = option(0.5, help="a share")
    mode: str = option("a", choices=("a", "b"), help="a mode")
    out: Path | None = option(None, help="a folder")
    threads: int | None = option(None, speed_only=True, help="speed only")
    weights: dict[str, float] = option(default_factory=lambda: {"x": 1.0},
                                       parse=lambda t: {k: float(v) for k, v in (p.split("=") for p in t.split(","))},
                                       help="weights")
    internal: int = field(default=7)  # not an option: neither a flag nor a key


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    options.add_arguments(p, Example)
    return p


def test_yaml_keys_and_flags_build_the_same_config() -> None:
    keys = {"inputs": ["a", "b"], "max_length": 128, "commercial_only": True, "param": {"threshold": 3, "factor": 10},
            "export": False, "heads": ["x", "y"], "ratio": 1, "mode": "b", "out": "o", "weights": {"x": 2.0}}
    from_yaml = options.from_mapping(Example, keys, "t", fixed={"workdir": "w"})
    argv = ["a", "b", "--workdir", "w", "--max-length", "128", "--commercial-only", "--param=threshold=3",
            "--param=factor=10", "--no-export", "--heads", "x", "y", "--ratio", "1", "--mode", "b", "--out", "o",
            "--weights", "x=2"]
    from_flags = options.from_namespace(Example, _parser().parse_args(argv))
    assert from_yaml == from_flags
    assert from_yaml.params == ["threshold=3", "factor=10"] and from_yaml.out == Path("o") and from_yaml.ratio == 1.0
    # and the config's own command line builds it again
    again = options.from_namespace(Example, _parser().parse_args(options.to_argv(from_yaml, with_fixed=True)))
    assert again == from_yaml
    assert options.from_mapping(Example, {"inputs": "one", "max-length": 3}, "t").inputs == ["one"]


@pytest.mark.parametrize(("keys", "message"), [
    ({"max_len": 1}, r"unknown key 'max_len' \(did you mean max_length\?\)"),
    ({"workdir": "x"}, "set once at the top"),
    ({"max_length": [1, 2]}, "max_length must be an integer"),
    ({"mode": ["a"]}, "mode takes one value"),
    ({"commercial_only": "yes"}, "switch; use true or false"),
    ({"max_length": "many"}, "max_length must be an integer"),
    ({"mode": "c"}, "--mode must be one of a, b"),
    ({"internal": 3}, "unknown key 'internal'"),
    ({}, "missing inputs"),
])  # fmt: skip
def test_bad_keys_are_errors_naming_the_key(keys: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        options.from_mapping(Example, {"inputs": ["a"], **keys} if keys else {}, "step t")


def test_the_recorded_config_leaves_out_speed_and_the_workdir_and_makes_inputs_absolute(tmp_path: Path,
                                                                                       monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in").mkdir()
    c = options.from_mapping(Example, {"inputs": ["in", "s3://b/x"], "threads": 4}, "t", fixed={"workdir": "w"})
    rec = options.record(c)
    assert "threads" not in rec and "workdir" not in rec and "internal" not in rec
    assert rec["inputs"] == [str(tmp_path / "in"), "s3://b/x"]
    assert options.input_paths(c) == {"inputs": ["in", "s3://b/x"]}


def test_help_shows_defaults_and_required_flags() -> None:
    text = _parser().format_help()
    assert "(default: 512)" in text and "--no-export" in text and "--workdir WORKDIR" in text
    with pytest.raises(SystemExit):
        _parser().parse_args(["a"])  # --workdir is required on the command line
