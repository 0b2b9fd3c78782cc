"""The per-workdir lock on object stores: a lease with a heartbeat, refused while alive, taken over when stale."""

from __future__ import annotations

import json
import time

import pytest

from pipeline.core.errors import ConfigError
from pipeline.core.workdir import Workdir
from pipeline.flow.lock import WorkdirLock


def _die(lock: WorkdirLock) -> None:
    """What a machine that loses power does: stop beating, leave the lock file where it is."""
    lock._stop.set()
    assert lock._thread is not None
    lock._thread.join()


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_run_on_another_machine_is_refused_while_the_holder_beats_and_takes_over_when_it_dies(
        where: str, tmp_path, request) -> None:
    root = str(tmp_path / "w") if where == "local" else request.getfixturevalue("s3_workdir")
    wd = Workdir.of(root)
    messages: list[str] = []
    a = WorkdirLock(wd, lease_s=1.2)
    a.acquire()
    b = WorkdirLock(wd, lease_s=1.2, echo=messages.append)
    b.me["host"] = "machine-b"  # the same work directory, seen from a second machine
    time.sleep(2.0)  # longer than the lease: only the heartbeat keeps A's lock fresh
    with pytest.raises(ConfigError, match=r"another pmc-curate run \(pid \d+ on host .*last heartbeat \d+ s ago"):
        b.acquire()
    _die(a)
    time.sleep(1.6)
    b.acquire()  # A's heartbeat is older than its lease: stale
    assert messages and "taking over the lock" in messages[0] and "no heartbeat for" in messages[0]
    held = json.loads((wd.stages / ".lock").read_text())
    assert held["host"] == "machine-b" and held["owner"] == b.me["owner"]
    b.release()
    assert not (wd.stages / ".lock").exists()


def test_a_lock_without_heartbeat_from_another_host_is_stale_and_one_from_a_live_local_process_is_not(s3_workdir) -> None:
    import os
    import socket

    wd = Workdir.of(s3_workdir)
    lock = WorkdirLock(wd)
    assert lock.stale_reason({"host": "elsewhere", "pid": 1}) == "it has no heartbeat"
    assert lock.stale_reason({"host": "elsewhere", "pid": 1, "heartbeat_at": time.time(), "lease_s": 60}) is None
    assert lock.stale_reason({"host": socket.gethostname(), "pid": os.getppid()}) is None
    assert "is gone" in lock.stale_reason({"host": socket.gethostname(), "pid": 2**22 + 4321})


def test_the_holder_notices_when_its_lock_was_taken_over(s3_workdir) -> None:
    wd = Workdir.of(s3_workdir)
    a = WorkdirLock(wd, lease_s=0.8)
    a.acquire()
    (wd.stages / ".lock").write_text(json.dumps({"owner": "someone-else", "host": "machine-c", "pid": 7,
                                                 "heartbeat_at": time.time(), "lease_s": 60}))
    time.sleep(0.6)
    assert a.lost == "host machine-c pid 7"
    a.release()  # not ours any more: left alone
    assert json.loads((wd.stages / ".lock").read_text())["owner"] == "someone-else"
