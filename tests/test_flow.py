"""The flow's resume logic: markers, fingerprints, skip/redo decisions, config -> flags mapping.

Stages here are small stand-ins with the real stage interface (Config / run) that write real
Parquet tables, so the flow's decisions can be checked exactly and fast; tests/test_flow_stages.py
runs the same flow over the real stages.
"""

from __future__ import annotations

import json
import os
import types
from dataclasses import dataclass, replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import flow, stages
from pipeline.core.errors import ConfigError
from pipeline.core.options import option
from pipeline.core.workdir import Workdir
from pipeline.flow import status as flow_status


@dataclass
class ParseConfig:
    inputs: list[str] = option(positional=True, input_path=True, help="input files")
    workdir: str = option("", fixed=True, help="work directory")
    min_tokens: int = option(64, help="minimum tokens")


@dataclass
class SampleConfig:
    workdir: str = option("", fixed=True, help="work directory")
    size: int = option(10, help="paragraphs")
    seed: int = option(0, help="seed")


@dataclass
class AnnotateConfig:
    workdir: str = option("", fixed=True, help="work directory")
    concurrency: int = option(4, speed_only=True, help="requests in flight")
    dry: bool = option(False, help="estimate only")


class Stages:
    """Stand-in parse/sample/annotate stages that count their calls and can be told to fail."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.fail: set[str] = set()
        self.beam_argv: dict[str, list[str]] = {}

    def _module(self, name: str, config_cls: type, body) -> types.ModuleType:
        m = types.ModuleType(f"fake_{name}")

        def run(config, beam_argv: list[str]) -> int:
            self.calls.append(name)
            self.beam_argv[name] = beam_argv
            if name in self.fail:
                raise RuntimeError(f"{name} broke")
            return body(config, beam_argv)

        m.Config = config_cls
        m.run = run
        return m

    def get(self, name: str) -> stages.Stage:
        """The real stage's reads and writes; only parse runs on Beam here."""
        return replace(stages.get(name), module=f"fake_{name}", beam=name == "parse")

    def load(self, stage: stages.Stage) -> types.ModuleType:
        def parse_run(args, beam_argv):
            wd = Workdir.of(args.workdir)
            texts = []
            for i in args.inputs:
                texts += Path(i).read_text().split()
            wd.reset_table("paragraphs")
            pq.write_table(pa.table({"id": [f"p{i}" for i in range(len(texts))], "text": texts}),
                           wd.paragraphs / "part-0.parquet")
            wd.rejects.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.table({"source": ["x", "y", "z"], "stage": ["parse"] * 3,
                                     "reason": ["malformed_xml", "malformed_xml", "empty_file"],
                                     "detail": ["", "", ""]}), wd.rejects / "parse-0.parquet")
            return 0

        def sample_run(args, beam_argv):
            wd = Workdir.of(args.workdir)
            t = pq.read_table(wd.paragraphs)
            wd.reset_table("sample")
            pq.write_table(t.slice(0, args.size), wd.sample / "part-0.parquet")
            return 0

        def annotate_run(args, beam_argv):
            wd = Workdir.of(args.workdir)
            t = pq.read_table(wd.sample)
            wd.reset_table("annotations")
            pq.write_table(t.append_column("score", pa.array([3] * t.num_rows)), wd.annotations / "part-0.parquet")
            return 0

        table = {
            "parse": (ParseConfig, parse_run),
            "sample": (SampleConfig, sample_run),
            "annotate": (AnnotateConfig, annotate_run),
        }
        if stage.name not in table:
            raise ConfigError(f"no stand-in for the {stage.name} stage")
        return self._module(stage.name, *table[stage.name])


def _config(tmp_path: Path, size: int = 3, **extra) -> flow.FlowConfig:
    inp = tmp_path / "in.txt"
    if not inp.exists():
        inp.write_text("alpha beta gamma delta epsilon")
    steps = {"parse": {"inputs": [str(inp)]}, "sample": {"size": size}, "annotate": {"concurrency": 2}, **extra}
    return flow.config_from_dict({"workdir": str(tmp_path / "w"), "steps": steps})


def test_interrupted_flow_resumes_at_the_failed_step(tmp_path: Path) -> None:
    st = Stages()
    st.fail = {"annotate"}
    cfg = _config(tmp_path)
    with pytest.raises(RuntimeError, match="annotate broke"):
        flow.run_flow(cfg, registry=st, echo=lambda s: None)
    assert st.calls == ["parse", "sample", "annotate"]
    wd = Workdir.of(cfg.workdir)
    assert flow.read_marker(wd, "parse")["status"] == "finished"
    failed = flow.read_marker(wd, "annotate")
    assert failed["status"] == "failed" and "annotate broke" in failed["error"]
    parse_marker = flow.read_marker(wd, "parse")

    st.fail.clear()
    st.calls.clear()
    assert flow.run_flow(cfg, registry=st, echo=lambda s: None) == 0
    assert st.calls == ["annotate"]  # finished steps skipped, the failed one redone
    assert flow.read_marker(wd, "parse") == parse_marker
    done = flow.read_marker(wd, "annotate")
    assert done["status"] == "finished"
    assert done["outputs"]["annotations/*.parquet"]["rows"] == 3

    st.calls.clear()
    assert flow.run_flow(cfg, registry=st, echo=lambda s: None) == 0
    assert st.calls == []


def test_changes_redo_the_changed_step_and_everything_after(tmp_path: Path) -> None:
    st = Stages()
    wd = Workdir.of(tmp_path / "w")
    flow.run_flow(_config(tmp_path), registry=st, echo=lambda s: None)
    assert st.calls == ["parse", "sample", "annotate"]

    st.calls.clear()  # a config change in the middle
    flow.run_flow(_config(tmp_path, size=2), registry=st, echo=lambda s: None)
    assert st.calls == ["sample", "annotate"]
    assert flow.read_marker(wd, "annotate")["outputs"]["annotations/*.parquet"]["rows"] == 2

    st.calls.clear()  # a knob that only changes speed is not a reason to redo
    cfg = _config(tmp_path, size=2)
    cfg.steps[2].flags["concurrency"] = 64
    flow.run_flow(cfg, registry=st, echo=lambda s: None)
    assert st.calls == []

    st.calls.clear()  # the input file changed
    (tmp_path / "in.txt").write_text("one two three four five six")
    flow.run_flow(_config(tmp_path, size=2), registry=st, echo=lambda s: None)
    assert st.calls == ["parse", "sample", "annotate"]

    st.calls.clear()  # an output deleted by hand
    for f in wd.sample.glob("*.parquet"):
        f.unlink()
    flow.run_flow(_config(tmp_path, size=2), registry=st, echo=lambda s: None)
    assert st.calls == ["sample", "annotate"]

    st.calls.clear()  # a table rewritten outside the flow invalidates its readers
    pq.write_table(pa.table({"id": ["q"], "text": ["x"]}), wd.paragraphs / "part-0.parquet")
    flow.run_flow(_config(tmp_path, size=2), registry=st, echo=lambda s: None)
    assert st.calls == ["sample", "annotate"]

    st.calls.clear()
    flow.run_flow(_config(tmp_path, size=2), registry=st, force=["sample"], echo=lambda s: None)
    assert st.calls == ["sample", "annotate"]


def test_a_crash_inside_a_redone_step_leaves_no_stale_finished_step_after_it(tmp_path: Path) -> None:
    st = Stages()
    wd = Workdir.of(tmp_path / "w")
    flow.run_flow(_config(tmp_path), registry=st, echo=lambda s: None)
    st.fail = {"sample"}
    with pytest.raises(RuntimeError):
        flow.run_flow(_config(tmp_path, size=2), registry=st, echo=lambda s: None)
    assert flow.read_marker(wd, "annotate") is None
    st.fail.clear()
    st.calls.clear()
    flow.run_flow(_config(tmp_path, size=2), registry=st, echo=lambda s: None)
    assert st.calls == ["sample", "annotate"]


def test_beam_options_reach_beam_stages_only_layered_config_cli_step(tmp_path: Path) -> None:
    st = Stages()
    cfg = _config(tmp_path)
    cfg.beam = {"runner": "DirectRunner", "direct_num_workers": 1}
    cfg.steps[0].beam = {"direct_num_workers": 2}
    flow.run_flow(cfg, ["--direct_running_mode=multi_processing"], registry=st, echo=lambda s: None)
    assert st.beam_argv["parse"] == ["--runner=DirectRunner", "--direct_num_workers=1",
                                     "--direct_running_mode=multi_processing", "--direct_num_workers=2"]
    assert st.beam_argv["sample"] == [] and st.beam_argv["annotate"] == []
    cfg.steps[1].beam = {"runner": "X"}
    with pytest.raises(ConfigError, match="does not run on Beam"):
        flow.run_flow(cfg, registry=st, echo=lambda s: None)


def test_dry_run_runs_nothing_and_says_why(tmp_path: Path) -> None:
    st = Stages()
    out: list[str] = []
    flow.run_flow(_config(tmp_path), registry=st, dry_run=True, echo=out.append)
    assert st.calls == []
    assert any("would run (not run before)" in line for line in out)
    assert not (tmp_path / "w" / "_stages").exists()


def test_a_step_that_cannot_be_prepared_stops_the_flow_before_anything_runs(tmp_path: Path) -> None:
    st = Stages()
    cfg = _config(tmp_path, train={"epochs": 1})
    with pytest.raises(ConfigError, match="train"):
        flow.run_flow(cfg, registry=st, echo=lambda s: None)
    assert st.calls == []  # checked before anything ran


def test_unknown_key_fails_at_start_up_naming_the_step(tmp_path: Path) -> None:
    st = Stages()
    cfg = _config(tmp_path)
    cfg.steps[2].flags["concurency"] = 3
    with pytest.raises(ConfigError, match=r"step annotate: unknown key 'concurency'.*concurrency"):
        flow.run_flow(cfg, registry=st, echo=lambda s: None)
    assert st.calls == []


def test_config_lists_become_named_steps_and_beam_options_layer(tmp_path: Path) -> None:
    cfg = flow.config_from_dict({
        "workdir": "w",
        "beam": {"runner": "DirectRunner", "direct_num_workers": 2, "save_main_session": True},
        "steps": {"curate": [{"recipe": "be-base"}, {"recipe": "recipes/my.sql", "beam": {"runner": "X"}}]},
    })
    assert [s.name for s in cfg.steps] == ["curate-be-base", "curate-my"]
    assert cfg.steps[1].beam == {"runner": "X"}
    assert flow.beam_to_argv(cfg.beam) == ["--runner=DirectRunner", "--direct_num_workers=2", "--save_main_session"]
    with pytest.raises(ConfigError, match="unique"):
        flow.config_from_dict({"workdir": "w", "steps": {"curate": [{"recipe": "a", "step": "x"},
                                                                    {"recipe": "b", "step": "x"}]}})
    with pytest.raises(ConfigError, match="unknown top-level"):
        flow.config_from_dict({"workdir": "w", "stages": {}})
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        flow.load_config(bad)


def test_status_shows_states_counts_and_rejects_per_reason(tmp_path: Path, capsys) -> None:
    st = Stages()
    st.fail = {"annotate"}
    cfg = _config(tmp_path)
    with pytest.raises(RuntimeError):
        flow.run_flow(cfg, registry=st, echo=lambda s: None)
    wd = Workdir.of(cfg.workdir)
    entries = {e["step"]: e for e in flow_status.collect(wd)}
    assert entries["parse"]["state"] == "finished"
    assert entries["parse"]["rows"]["paragraphs/*.parquet"] == 5
    assert entries["parse"]["rejects"] == {"malformed_xml": 2, "empty_file": 1}
    assert entries["annotate"]["state"] == "failed"
    assert entries["train"]["state"] == "not run"
    # a marker left "running" by a process that no longer exists reads as interrupted
    m = flow.read_marker(wd, "annotate")
    flow.write_marker(wd, "annotate", {**m, "status": "running", "pid": 2**22 + 12345})
    assert {e["step"]: e for e in flow_status.collect(wd)}["annotate"]["state"] == "interrupted"

    assert flow_status.run(flow_status.Config(workdir=cfg.workdir, json=False), []) == 0
    text = capsys.readouterr().out
    assert "malformed_xml 2" in text and "interrupted" in text
    assert flow_status.run(flow_status.Config(workdir=cfg.workdir, json=True), []) == 0
    assert json.loads(capsys.readouterr().out)[0]["step"] == "parse"


def test_a_second_run_on_the_same_workdir_is_refused_while_the_first_is_alive(tmp_path: Path) -> None:
    import socket

    st = Stages()
    cfg = _config(tmp_path)
    flow.run_flow(cfg, registry=st, echo=lambda s: None)
    wd = Workdir.of(cfg.workdir)
    m = flow.read_marker(wd, "sample")
    flow.write_marker(wd, "sample", {**m, "status": "running", "pid": os.getppid(), "host": socket.gethostname()})
    with pytest.raises(ConfigError, match="another process"):
        flow.run_flow(cfg, registry=st, echo=lambda s: None)


@pytest.mark.parametrize("name", ["demo.yaml", "full-corpus.yaml", "update.yaml"])
def test_example_configs_use_only_real_flags_of_the_real_stages(name: str) -> None:
    from tests.conftest import EXAMPLES

    cfg = flow.load_config(EXAMPLES / name)
    prepared = flow.prepare(cfg)  # every key checked against the stage's own Config
    commands = [p.step.command for p in prepared]
    if name == "update.yaml":  # update, then propagate the delta, then curate
        assert commands[:2] == ["parse", "propagate"] and prepared[0].config.update is True
        assert prepared[1].config.full is False and "curate" in commands
        return
    assert commands[:3] == ["parse", "sample", "annotate"] and "report" in commands
    for p in prepared:
        assert p.config.workdir == cfg.workdir


def test_a_workdir_on_a_filesystem_we_do_not_know_is_refused_with_the_accepted_schemes() -> None:
    cfg = flow.config_from_dict({"workdir": "hdfs://cluster/w", "steps": {"parse": {"inputs": ["x"]}}})
    with pytest.raises(ConfigError, match=r"unsupported filesystem hdfs://.*s3://bucket/prefix or gs://bucket/prefix"):
        flow.run_flow(cfg, echo=lambda s: None)


def test_status_of_stages_run_by_hand(tmp_path: Path) -> None:
    wd = Workdir.of(tmp_path / "w")
    wd.reset_table("paragraphs")
    pq.write_table(pa.table({"id": ["a", "b"]}), wd.paragraphs / "part-0.parquet")
    wd.stages.mkdir(parents=True)
    (wd.stages / "parse.json").write_text(json.dumps({"stage": "parse", "articles": 1}))  # the stage's own summary
    wd.reset_table("labels")
    pq.write_table(pa.table({"id": ["a"]}), wd.labels / "part-0.parquet")  # no marker at all
    entries = {e["step"]: e for e in flow_status.collect(wd)}
    assert entries["parse"]["state"] == "finished (by hand)"
    assert entries["parse"]["rows"]["paragraphs/*.parquet"] == 2
    assert entries["propagate"]["state"] == "present (no marker)"
    assert entries["propagate"]["rows"] == {"labels/*.parquet": 1}
    assert entries["sample"]["state"] == "not run"


def test_one_flow_per_workdir_and_a_stale_lock_is_taken_over(tmp_path: Path) -> None:
    import socket

    st = Stages()
    cfg = _config(tmp_path)
    lock = tmp_path / "w" / "_stages" / ".lock"
    lock.parent.mkdir(parents=True)
    lock.write_text(json.dumps({"pid": os.getppid(), "host": socket.gethostname()}))
    with pytest.raises(ConfigError, match="another pmc-curate run"):
        flow.run_flow(cfg, registry=st, echo=lambda s: None)
    assert st.calls == []
    lock.write_text(json.dumps({"pid": 2**22 + 4321, "host": socket.gethostname()}))  # its process is gone
    assert flow.run_flow(cfg, registry=st, echo=lambda s: None) == 0
    assert not lock.exists()
