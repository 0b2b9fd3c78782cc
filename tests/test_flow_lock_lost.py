"""A run that loses its lock stops (issue 18, item 3): before its next step, in the middle of a step, and
a same-host lock whose pid was given to another process is stale.

The takeover is what a second machine does: it rewrites W/_stages/.lock with its own owner. The
stages are the stand-ins of tests/test_flow.py (real Parquet, the real flow, the real lock).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline import flow
from pipeline.core.errors import LockLostError
from pipeline.core.workdir import Workdir
from pipeline.flow.lock import WorkdirLock, start_time
from tests.test_flow import Stages, _config


def _take_over(wd: Workdir) -> None:
    """A second machine takes the lock (as after this run's heartbeat looked stale to it)."""
    (wd.stages / ".lock").write_text(json.dumps({"owner": "second-run", "host": "machine-b", "pid": 7,
                                                 "heartbeat_at": time.time(), "lease_s": 60}))


class TakenOver(Stages):
    """Stand-ins whose `sample` step sees the lock taken over, then works (and writes) for a while."""

    def __init__(self, during: str) -> None:
        super().__init__()
        self.during = during
        self.wrote_after_takeover = False

    def load(self, stage):
        module = super().load(stage)
        if stage.name != self.during:
            return module
        inner = module.run

        def run(config, beam_argv):
            wd = Workdir.of(config.workdir)
            _take_over(wd)
            for _ in range(400):  # a long step: the heartbeat (lease/4) notices within a few beats
                time.sleep(0.05)
            self.wrote_after_takeover = True
            return inner(config, beam_argv)

        module.run = run
        return module


@pytest.fixture(autouse=True)
def short_lease(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PMC_CURATE_LOCK_LEASE_S", "0.4")


def test_a_step_stops_when_its_lock_is_taken_over_and_nothing_after_it_runs(tmp_path: Path) -> None:
    st = TakenOver("sample")
    cfg = _config(tmp_path)
    wd = Workdir.of(cfg.workdir)
    with pytest.raises(LockLostError, match="taken over by host machine-b pid 7.*stopped before its next write"):
        flow.run_flow(cfg, registry=st, echo=lambda s: None)
    assert not st.wrote_after_takeover  # interrupted mid-step, before its write
    assert LockLostError.__mro__[1] is BaseException  # an `except Exception` in a stage cannot swallow it
    assert st.calls == ["parse"]  # sample started (its marker below), annotate never did
    assert not wd.sample.exists() or not list(Path(wd.sample).glob("*.parquet"))
    # No marker written after the takeover: sample's stays as it was when the step started.
    assert flow.read_marker(wd, "sample")["status"] == "running"
    assert flow.read_marker(wd, "annotate") is None
    # The other run's lock is left alone.
    assert json.loads((wd.stages / ".lock").read_text())["owner"] == "second-run"


def test_the_flow_checks_the_lock_before_each_step(tmp_path: Path) -> None:
    """Even without the interrupt (a flow run from a thread), the next step does not start."""
    st = Stages()
    cfg = _config(tmp_path)
    wd = Workdir.of(cfg.workdir)
    prepared = flow.prepare(cfg, registry=st)
    with WorkdirLock(wd) as lock:
        real = prepared[0].module.run

        def parse_then_lose(config, beam_argv):
            rc = real(config, beam_argv)
            _take_over(wd)
            return rc

        prepared[0].module.run = parse_then_lose
        from pipeline.flow.run import _run_steps

        with pytest.raises(LockLostError):
            _run_steps(prepared, wd, (), (), False, lambda s: None, check=lock.check)
    assert st.calls == ["parse"]
    assert flow.read_marker(wd, "parse")["status"] == "running"  # no "finished" written over the other run


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
def test_a_same_host_lock_whose_pid_was_reused_is_stale(tmp_path: Path) -> None:
    wd = Workdir.of(tmp_path / "w")
    lock = WorkdirLock(wd)
    # A live process with the recorded start time: its lock is held.
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        mine = {"host": socket.gethostname(), "pid": child.pid, "pid_start": start_time(child.pid)}
        assert lock.stale_reason(mine) is None
        # The same pid, but the run that wrote the lock started at another time: the pid was reused.
        reused = {**mine, "pid_start": start_time(child.pid) - 1}
        assert "belongs to a process started later" in lock.stale_reason(reused)
        # Older locks without pid_start: the pid alone decides, as before.
        assert lock.stale_reason({"host": socket.gethostname(), "pid": child.pid}) is None
        # And the takeover happens: a second run acquires the lock left with a reused pid.
        (wd.stages / ".lock").parent.mkdir(parents=True, exist_ok=True)
        (wd.stages / ".lock").write_text(json.dumps({**reused, "owner": "old", "started_at": "then"}))
        messages: list[str] = []
        with WorkdirLock(wd, echo=messages.append) as taker:
            assert json.loads((wd.stages / ".lock").read_text())["owner"] == taker.me["owner"]
        assert "belongs to a process started later" in messages[0]
    finally:
        child.kill()
        child.wait()
    assert WorkdirLock(wd).me["pid_start"] == start_time(os.getpid())
