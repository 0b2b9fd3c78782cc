"""SIGTERM and SIGHUP are handled like Ctrl-C; the offline teacher server dies with its parent (issue 18,
item 5). Real signals to real processes; the flow's stages are the stand-ins of tests/test_flow.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline import flow
from pipeline.core import signals
from pipeline.core.workdir import Workdir
from tests.test_flow import Stages, _config

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def _gone(pid: int, within_s: float = 15.0) -> bool:
    """Whether process `pid` has exited (or is a zombie nobody reaped) within `within_s` seconds."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state == "Z":
            return True
        time.sleep(0.1)
    return False


class SignalledDuring(Stages):
    """Stand-ins whose `sample` step receives a signal from outside while it works."""

    def __init__(self, signum: int) -> None:
        super().__init__()
        self.signum = signum
        self.finished = False

    def load(self, stage):
        module = super().load(stage)
        if stage.name == "sample":
            def run(config, beam_argv):
                self.calls.append("sample")
                os.kill(os.getpid(), self.signum)  # docker stop / a closed terminal
                for _ in range(200):
                    time.sleep(0.05)
                self.finished = True
                return 0

            module.run = run
        return module


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_take_the_ctrl_c_path(tmp_path: Path, signum: int) -> None:
    st = SignalledDuring(signum)
    cfg = _config(tmp_path)
    wd = Workdir.of(cfg.workdir)
    before = signal.getsignal(signum)
    with pytest.raises(signals.Terminated) as info, signals.as_interrupt():
        flow.run_flow(cfg, registry=st, echo=lambda s: None)
    assert signal.getsignal(signum) == before  # restored
    assert isinstance(info.value, KeyboardInterrupt) and info.value.exit_code == 128 + signum
    assert not st.finished and st.calls == ["parse", "sample"]
    marker = flow.read_marker(wd, "sample")
    assert marker["status"] == "interrupted" and signal.Signals(signum).name in marker["error"]
    assert not (wd.stages / ".lock").exists()  # the lock was released
    st.calls.clear()
    assert flow.run_flow(cfg, registry=Stages(), echo=lambda s: None) == 0  # and the next run resumes


_PARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", sys.argv[1]])
print(child.pid, flush=True)
time.sleep(120)
"""
_CHILD_PDEATHSIG = """
import os, time
from pipeline.core.signals import die_with_parent
die_with_parent(os.getppid())
time.sleep(120)
"""
_CHILD_WATCHDOG = """
import os, time
from pipeline.core.signals import watch_parent
watch_parent(os.getppid(), lambda: os._exit(0), interval_s=0.1)
time.sleep(120)
"""


@pytest.mark.parametrize("child", [_CHILD_PDEATHSIG, _CHILD_WATCHDOG], ids=["pdeathsig", "watchdog"])
def test_a_child_dies_with_its_parent_even_after_sigkill(child: str) -> None:
    parent = subprocess.Popen([sys.executable, "-c", _PARENT, child], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    try:
        assert parent.stdout is not None
        child_pid = int(parent.stdout.readline())
        time.sleep(1.0)  # the child has set itself up (imported, asked for the signal / started watching)
        assert not _gone(child_pid, within_s=0.2)
        parent.kill()  # SIGKILL: no handler, no finally in the parent
        parent.wait()
        assert _gone(child_pid), f"child {child_pid} outlived its parent"
    finally:
        parent.kill()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux")
def test_the_teacher_server_exits_at_once_when_its_parent_is_already_gone() -> None:
    """`--parent-pid` of a process that is not its parent: the server exits before loading its model."""
    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid that is nobody's parent now
    proc = subprocess.run([sys.executable, "-m", "pipeline.teacher.server", "--port", "0", "--parent-pid", str(gone.pid)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0 and "ready at" not in proc.stdout
