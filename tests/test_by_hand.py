"""Stages typed by hand follow the flow's rules (issue 18, items 2 and 3): the lease, running/finished
markers, and no stage built on a table whose writer did not finish."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.core.workdir import Workdir
from pipeline.flow import read_marker, write_marker
from pipeline.flow.lock import WorkdirLock
from tests.test_curate import build_workdir


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_a_hand_run_stage_writes_running_then_finished_and_releases_the_lease(tmp_path: Path) -> None:
    w = build_workdir(tmp_path / "w")
    assert main(["curate", "--workdir", str(w), "--recipe", "be-base", "--threads", "1"]) == 0
    m = read_marker(Workdir.of(w), "curate")
    assert m["status"] == "finished" and m["by_hand"] and m["pid"] and "be-base" in " ".join(m["argv"])
    assert not (w / "_stages" / ".lock").exists()


def test_curate_refuses_labels_whose_writer_was_killed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    w = build_workdir(tmp_path / "w", annotations=True)
    wd = Workdir.of(w)
    # What a hand-run propagate killed mid-way leaves: its marker says running, its process is gone.
    write_marker(wd, "propagate", {"step": "propagate", "command": "propagate", "status": "running",
                                   "pid": _dead_pid(), "host": socket.gethostname(), "started_at": "then"})
    assert main(["curate", "--workdir", str(w), "--recipe", "be-base"]) == 2
    err = capsys.readouterr().err
    assert "labels: its writer `propagate` is interrupted (its process is gone)" in err
    assert not (w / "subsets").exists() or not any((w / "subsets").iterdir())
    # Teacher labels are another table: curating from them is fine.
    write_marker(wd, "propagate", {"step": "propagate", "command": "propagate", "status": "failed"})
    assert main(["curate", "--workdir", str(w), "--recipe", "be-base"]) == 2
    assert main(["curate", "--workdir", str(w), "--recipe", "be-base", "--labels", "annotations", "--threads", "1"]) == 0
    write_marker(wd, "propagate", {"step": "propagate", "command": "propagate", "status": "finished"})
    assert main(["curate", "--workdir", str(w), "--recipe", "be-base", "--threads", "1"]) == 0


def test_a_hand_run_stage_waits_for_no_one_and_is_refused_while_another_run_holds_the_lease(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    w = build_workdir(tmp_path / "w")
    other = WorkdirLock(Workdir.of(w), lease_s=60)
    other.me["host"] = "machine-b"  # a flow on another machine, beating
    other.acquire()
    try:
        assert main(["curate", "--workdir", str(w), "--recipe", "be-base"]) == 2
        assert "another pmc-curate run" in capsys.readouterr().err
        assert json.loads((w / "_stages" / ".lock").read_text())["host"] == "machine-b"
    finally:
        other.release()
    assert main(["curate", "--workdir", str(w), "--recipe", "be-base", "--threads", "1"]) == 0
