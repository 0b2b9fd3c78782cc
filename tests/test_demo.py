"""`pmc-curate demo`: the flow on examples/demo.yaml, over the embedded sample."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline import flow
from pipeline.cli import main
from pipeline.core.workdir import Workdir
from pipeline.flow import demo

REPO = Path(__file__).resolve().parent.parent
JATS = REPO / "examples" / "jats"


def test_demo_config_is_the_flow_config_with_inputs_under_the_repository(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # run from elsewhere: the embedded sample is still found
    cfg = demo.demo_config(str(tmp_path / "w"))
    assert cfg.workdir == str(tmp_path / "w")
    parse = next(s for s in cfg.steps if s.command == "parse")
    assert parse.flags["inputs"] == [str(REPO / "examples" / "jats")]
    names = [s.name for s in cfg.steps]
    assert names[:6] == ["parse", "sample", "annotate", "train", "evaluate", "propagate"] and names[-1] == "report"
    assert {f"curate-{r}" for r in ("be-base", "be-educational", "be-clinical", "be-clinicalcase", "be-french",
                                    "be-all", "encoder")} <= set(names)
    raw = yaml.safe_load((REPO / "examples" / "demo.yaml").read_text())
    assert raw["steps"]["sample"]["size"] <= 40 and raw["steps"]["train"]["max_length"] <= 128  # stays small


def test_demo_runs_a_config_and_resumes(tmp_path: Path, shared_sample: Path, capsys) -> None:
    inp = tmp_path / "in"
    inp.mkdir()
    for p in sorted(shared_sample.glob("*.xml"))[:6]:
        (inp / p.name).write_bytes(p.read_bytes())
    config = tmp_path / "demo.yaml"
    config.write_text(yaml.safe_dump({
        "workdir": "ignored",
        "steps": {"parse": {"inputs": [str(inp)]}, "sample": {"size": 10}},
    }))
    wd = tmp_path / "w"
    assert main(["demo", "--workdir", str(wd), "--config", str(config)]) == 0
    out = capsys.readouterr()
    assert flow.read_marker(Workdir.of(wd), "sample")["status"] == "finished"
    assert "sample" in out.out  # the status table at the end
    assert main(["demo", "--workdir", str(wd), "--config", str(config)]) == 0
    assert capsys.readouterr().err.count("unchanged: skipped") == 2
    # --fresh starts over, and never deletes a folder that is not a work directory
    assert main(["demo", "--workdir", str(wd), "--config", str(config), "--fresh"]) == 0
    assert "(not run before)" in capsys.readouterr().err
    other = tmp_path / "precious"
    other.mkdir()
    (other / "thesis.tex").write_text("x")
    assert main(["demo", "--workdir", str(other), "--config", str(config), "--fresh"]) == 2
    assert (other / "thesis.tex").exists()


@pytest.mark.slow
def test_full_demo_end_to_end(tmp_path: Path, capsys, monkeypatch) -> None:
    """What `make demo` runs, every stage on the embedded sample (minutes: the offline teacher)."""
    assert any(JATS.glob("*.xml")), "the embedded sample examples/jats/ is part of the repository"
    wd = tmp_path / "demo-work"
    assert main(["demo", "--workdir", str(wd)]) == 0
    markers = {m.stem for m in (wd / "_stages").glob("*.json")}
    for step in demo.demo_config(str(wd)).steps:
        assert step.name in markers
        assert flow.read_marker(Workdir.of(wd), step.name)["status"] == "finished", step.name
    capsys.readouterr()
    # `pmc-curate run` on the same file (relative input path, from the repository) skips every step
    monkeypatch.chdir(REPO)
    assert main(["run", "--config", str(demo.DEMO_CONFIG), "--workdir", str(wd)]) == 0
    out = capsys.readouterr().out
    assert "running" not in out and out.count("skipped") == len(markers)
