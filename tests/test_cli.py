"""The command line: one flag rule for every command, help that helps."""

from __future__ import annotations

import dataclasses
import importlib
import re
from pathlib import Path

import pytest

from pipeline import cli
from pipeline.core import options


def _argv(name: str, tmp_path: Path) -> list[str]:
    """A valid command line of `name` (its required flags), run against tmp_path."""
    config_cls = importlib.import_module(cli.commands()[name].module).Config
    argv: list[str] = []
    for f, opt, _ in options.fields(config_cls):
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if opt.positional:
            argv.insert(0, str(tmp_path / "in"))
        elif opt.fixed or f.name == "workdir" or (required and f.name in ("config",)):
            argv += [options.flag_name(f, opt), str(tmp_path / ("w" if f.name == "workdir" else "run.yaml"))]
        elif required:
            argv += [options.flag_name(f, opt), str(opt.choices[0]) if opt.choices else "1"]
    return [name, *argv]


@pytest.mark.parametrize("name", list(cli.commands()))
def test_a_misspelt_flag_stops_every_command_and_is_named(name: str, tmp_path: Path, capsys) -> None:
    argv = _argv(name, tmp_path)
    assert cli.main([*argv, "--no-such-flag=3"]) == 2
    err = capsys.readouterr().err
    assert "--no-such-flag=3" in err and "unknown argument" in err
    assert not (tmp_path / "w").exists()  # nothing ran


@pytest.mark.parametrize(("argv", "hint"), [
    (["parse", "x", "--workdir", "w", "--min_tokens", "32"], "did you mean --min-tokens"),
    (["sample", "--workdir", "w", "--size", "4", "--sed", "3"], "did you mean --seed"),
    (["status", "--workdir", "w", "--jsn"], "did you mean --json"),
    (["propagate", "--workdir", "w", "--runer=DirectRunner"], "did you mean --runner"),
])  # fmt: skip
def test_the_issue_s_typos_fail_with_the_closest_flag(argv: list[str], hint: str, tmp_path: Path, capsys,
                                                     monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 2
    assert hint in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


def test_beam_options_of_a_flow_step_are_checked_before_anything_runs(tmp_path: Path, capsys) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(f"workdir: {tmp_path / 'w'}\nbeam: {{direct_num_worker: 2}}\n"
                      f"steps: {{parse: {{inputs: [{tmp_path}]}}}}\n")
    assert cli.main(["run", "--config", str(config)]) == 2
    assert "step parse: Beam does not know --direct_num_worker=2 (did you mean --direct_num_workers" \
           in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


def test_a_former_flag_name_still_works_for_a_release_and_says_what_to_use(caplog) -> None:
    """--model (propagate's student, annotate's teacher) and --out (train's model, evaluate's report)
    meant different things in different stages; the new names have one meaning each."""
    from pipeline.stages.propagate.config import PropagateConfig

    parser = cli.command_parser("propagate", PropagateConfig)
    with caplog.at_level("WARNING"):
        config = options.from_namespace(PropagateConfig, parser.parse_args(["--workdir", "w", "--model", "m"]))
    assert config.model_dir == "m"
    assert "--model is deprecated" in caplog.text and "--model-dir" in caplog.text
    assert options.from_mapping(PropagateConfig, {"model": "m"}, "step propagate").model_dir == "m"
    assert not re.search(r"--model\b(?!-)", parser.format_help())  # help shows only the current name


def test_version_and_presets_in_help(capsys) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--version"])
    from pipeline import __version__

    assert __version__ in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["parse", "--help"])
    text = capsys.readouterr().out
    assert "flink" in text and "dataflow-gpu" in text and "--preset" in text
