"""A stage typed by hand (`pmc-curate curate ...`) under the same rules as a step of `pmc-curate run`.

- It takes the work directory's lease (lock.py), as the flow does, so a hand-run stage and a flow (or
  two hand-run stages) never write one work directory at once, and a run that loses the lease stops.
- It writes its marker W/_stages/<command>.json: `running` first, `finished` (or `failed`,
  `interrupted`) last, so status and the next stage know a killed stage from a finished one. A stage
  that writes its own summary there (parse) keeps it.
- It refuses to start while a table it reads was left by a writer that did not finish (killed,
  failed, or still running), naming that writer: a subset built on half a labels table is worse
  than no subset.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from types import ModuleType
from typing import Any

from pipeline import stages
from pipeline.core import secrets, storage
from pipeline.core.errors import ConfigError, LockLostError
from pipeline.core.workdir import Workdir
from pipeline.flow import debris
from pipeline.flow.lock import WorkdirLock, alive
from pipeline.flow.markers import MARKER_VERSION, now, patterns, read_marker, write_marker

log = logging.getLogger(__name__)


def _table(pattern: str) -> str:
    return pattern.split("/", 1)[0]


def unfinished_writers(wd: Workdir, command: str, config: Any) -> list[str]:
    """One line per table `command` reads whose last writer (by its marker) did not finish."""
    stage = stages.BY_NAME[command]
    reads = {_table(p) for p in patterns(stage.reads, config)}
    problems = []
    for loc in wd.stages.glob("*.json") if wd.stages.is_dir() else []:
        m = read_marker(wd, loc.stem) or {}
        writer = stages.BY_NAME.get(str(m.get("command") or m.get("stage") or loc.stem))
        if writer is None or writer.name == command or "status" not in m:
            continue  # unknown, this very command, or a summary a stage wrote itself (it finished)
        written = {_table(p) for p in writer.writes if "{" not in p}
        both = sorted(reads & written)
        state = m["status"]
        if not both or state == "finished":
            continue
        if state == "running":
            if m.get("host") not in (None, socket.gethostname()):
                state = f"running on host {m.get('host')}"
            elif alive(m.get("pid")) and m.get("pid") != os.getpid():
                state = f"still running (pid {m.get('pid')})"
            else:
                state = "interrupted (its process is gone)"
        problems.append(f"{', '.join(both)}: its writer `{m.get('step', loc.stem)}` is {state} "
                        f"(started {m.get('started_at', '?')}); run it again to completion first")  # fmt: skip
    return problems


def run_by_hand(command: str, module: ModuleType, config: Any, beam_argv: list[str], argv: list[str]) -> int:
    """Run a stage from the command line: lease, refusal of unfinished inputs, running/finished markers."""
    wd = Workdir.of(config.workdir)
    storage.check_access(wd.root)  # a missing bucket or refused credentials: named before the lock or a marker
    problems = unfinished_writers(wd, command, config)
    if problems:
        raise ConfigError(f"{command} reads tables of {wd.root} that are not finished:\n"
                          + "\n".join(f"  - {p}" for p in problems))  # fmt: skip
    with WorkdirLock(wd, echo=log.warning, interrupt=True) as lock:
        debris.collect(wd)  # no other writer is at work now: what killed runs left can go
        base = {"marker_version": MARKER_VERSION, "step": command, "command": command, "by_hand": True,
                "argv": secrets.redact_argv([command, *argv]), "started_at": now(), "pid": os.getpid(),
                "host": socket.gethostname()}  # fmt: skip
        write_marker(wd, command, {**base, "status": "running"})
        t0 = time.perf_counter()

        def end(status: str, **extra: Any) -> None:
            # A stage that wrote its own summary over the marker (parse) keeps it.
            current = read_marker(wd, command) or {}
            if current.get("status") == "running" and current.get("pid") == os.getpid():
                write_marker(wd, command, {**base, "status": status, "ended_at": now(),
                                           "duration_s": round(time.perf_counter() - t0, 3), **extra})

        try:
            rc = int(module.run(config, beam_argv) or 0)
        except LockLostError:
            raise  # the other run owns the markers now
        except BaseException as e:
            lock.check()
            end("interrupted" if isinstance(e, KeyboardInterrupt) else "failed", error=f"{type(e).__name__}: {e}"[:2000])
            raise
        lock.check()
        end("finished" if rc == 0 else "failed", **({} if rc == 0 else {"error": f"exit code {rc}"}))
        return rc
