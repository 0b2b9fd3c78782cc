"""The flow over the real stages: `pmc-curate run` from a YAML file, interrupted and resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pipeline import flow
from pipeline.cli import main
from pipeline.core.workdir import Workdir
from pipeline.flow import status as flow_status

REPO = Path(__file__).resolve().parent.parent


def _write_config(tmp_path: Path, inputs: list[str], size: int = 20, extra: dict | None = None) -> Path:
    cfg = {
        "workdir": str(tmp_path / "w"),
        "beam": {"runner": "DirectRunner"},
        "steps": {"parse": {"inputs": inputs, "min_tokens": 64}, "sample": {"size": size, "seed": 1}, **(extra or {})},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _mtimes(d: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(Path(d).glob("*.parquet"))}


@pytest.mark.shared_data
def test_run_resumes_after_a_stage_raised(tmp_path: Path, shared_sample: Path, monkeypatch, capsys) -> None:
    import pipeline.stages.sample

    files = sorted(str(p) for p in shared_sample.glob("*.xml"))[:12]
    config = _write_config(tmp_path, files)
    wd = Workdir.of(tmp_path / "w")

    def broken(args, beam_argv):
        raise RuntimeError("disk full")

    real_sample_run = pipeline.stages.sample.run
    monkeypatch.setattr(pipeline.stages.sample, "run", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        main(["run", "--config", str(config)])
    parse_marker = flow.read_marker(wd, "parse")
    assert parse_marker["status"] == "finished"
    assert parse_marker["outputs"]["paragraphs/*.parquet"]["rows"] > 20
    assert parse_marker["summary"]["articles"] >= 1  # the parse stage's own summary is kept
    assert flow.read_marker(wd, "sample")["status"] == "failed"
    before = _mtimes(wd.paragraphs)

    monkeypatch.setattr(pipeline.stages.sample, "run", real_sample_run)
    assert main(["run", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "[parse] finished" in out and "skipped" in out
    assert _mtimes(wd.paragraphs) == before  # parse did not run again
    assert flow.read_marker(wd, "parse") == parse_marker
    assert flow.read_marker(wd, "sample")["outputs"]["sample/*.parquet"]["rows"] == 20

    # status reads the same markers
    assert main(["status", "--workdir", str(wd.root), "--json"]) == 0
    entries = {e["step"]: e for e in json.loads(capsys.readouterr().out)}
    assert entries["parse"]["state"] == entries["sample"]["state"] == "finished"
    assert entries["sample"]["rows"] == {"sample/*.parquet": 20}


@pytest.mark.shared_data
def test_run_killed_mid_stage_is_redone_on_the_next_run(tmp_path: Path, shared_sample: Path) -> None:
    files = [str(p) for p in sorted(shared_sample.glob("*.xml"))]
    config = _write_config(tmp_path, files)
    wd = Workdir.of(tmp_path / "w")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "pipeline.cli", "run", "--config", str(config)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            m = flow.read_marker(wd, "parse")
            if m and m.get("status") == "running":
                break
            assert proc.poll() is None, "run ended before parse started"
            time.sleep(0.05)
        else:
            pytest.fail("parse never started")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # kill -9 the whole run, Beam workers included
        proc.wait()
    states = {e["step"]: e["state"] for e in flow_status.collect(wd)}
    assert states["parse"] == "interrupted"
    assert states["sample"] == "not run"

    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "[parse] running (last run was interrupted)" in done.stdout
    assert flow.read_marker(wd, "parse")["status"] == "finished"
    assert flow.read_marker(wd, "sample")["outputs"]["sample/*.parquet"]["rows"] == 20
    again = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0
    assert again.stdout.count("skipped") == 2
