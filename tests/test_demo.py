"""`pmc-curate demo`: the flow on examples/demo.yaml, over the embedded sample."""

from __future__ import annotations

import json
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
    assert raw["steps"]["sample"]["size"] <= 64 and raw["steps"]["train"]["max_length"] <= 128  # stays small
    # the demo's teacher is the keyword rules (labels with a signal); SmolLM2 is one flag away
    assert next(s for s in cfg.steps if s.command == "annotate").flags["teacher"] == "rules"
    small = demo.demo_config(str(tmp_path / "w"), teacher="smollm2")
    annotate = next(s for s in small.steps if s.command == "annotate")
    assert annotate.flags["teacher"] == "smollm2" and annotate.flags["concurrency"] == 1
    assert next(s for s in small.steps if s.command == "sample").flags["size"] == demo.SMOLLM2_SAMPLE


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
    assert "Teacher: `pmc-curate-rule-teacher-v1 (keyword rules, not an LLM)`" in capsys.readouterr().out
    _labels_that_mean_something(wd)
    # `pmc-curate run` on the same file (relative input path, from the repository) skips every step
    monkeypatch.chdir(REPO)
    assert main(["run", "--config", str(demo.DEMO_CONFIG), "--workdir", str(wd)]) == 0
    out = capsys.readouterr().out
    assert "running" not in out and out.count("skipped") == len(markers)


def _labels_that_mean_something(wd: Path) -> None:
    """The demo's report and subsets look like the real thing, and name their teacher."""
    teacher = "pmc-curate-rule-teacher-v1 (keyword rules, not an LLM)"
    report = (wd / "reports" / "index.md").read_text()
    assert f"**Teacher:** the student's labels, trained on the annotations of `{teacher}`" in report
    stats = json.loads((wd / "reports" / "stats.json").read_text())
    assert stats["teachers"] == {teacher: stats["teachers"][teacher]} and stats["teachers"][teacher] > 0
    s = stats["stats"]
    assert len(s["document_type"]) >= 2 and len(s["domain"]) >= 2, (s["document_type"], s["domain"])
    assert s["heterogeneity"]["articles_mixing_types"] > 0 or s["heterogeneity"]["articles_mixing_domains"] > 0
    subsets = {x["name"]: x for x in stats["subsets"]}
    assert subsets["be-educational"]["rows"] > 0, "the score-filtered subset is empty"
    assert all(x["rows"] > 0 for x in subsets.values()), subsets
    assert f"Teacher: `{teacher}`" in (wd / "reports" / "classifier.md").read_text()  # student vs teacher
    cards = list((wd / "subsets").glob("*/README.md"))
    assert len(cards) == len(subsets)
    for card in cards:
        assert f"teacher: `{teacher}`" in card.read_text() and "not an LLM" in card.read_text()
