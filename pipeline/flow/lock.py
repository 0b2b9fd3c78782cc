"""One `pmc-curate run` per work directory, on a local disk or an object store, across machines.

Object stores have no atomic rename and no file locks, so the lock is a lease:
- `W/_stages/.lock` is created only if absent (O_EXCL locally, If-None-Match on S3, ifGenerationMatch=0
  on GCS) and then read back, so a store that let two creations through still has one winner;
- the holder rewrites its `heartbeat_at` every `lease_s / 4` seconds from a background thread;
- a lock is stale when its process is gone (same host: the pid is checked, and its start time, so a pid
  the system gave to another process since is not taken for the run) or when its heartbeat is older
  than its lease (another host: a machine that died stops beating). A stale lock is taken over, with a
  message naming the run that left it;
- a holder whose lock was taken over stops: `check()` raises LockLostError before each step and marker
  write of the flow, and with `interrupt=True` the heartbeat also interrupts the main thread (SIGUSR1,
  whose handler raises LockLostError), so a stage in the middle of its work stops before its next write.
The lease (default 120 s, `PMC_CURATE_LOCK_LEASE_S`) bounds how long a dead machine blocks the next
run; clocks of the two machines must agree to well within it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pipeline.core.errors import ConfigError, LockLostError
from pipeline.core.workdir import Workdir

log = logging.getLogger(__name__)

DEFAULT_LEASE_S = 120.0  # long enough for a stalled request to the store, short enough to resume soon after a crash


def alive(pid: Any) -> bool:
    """Whether a process with this id exists on this machine."""
    try:
        os.kill(int(pid), 0)
    except PermissionError:
        return True
    except (OSError, TypeError, ValueError):
        return False
    return True


def start_time(pid: Any) -> int | None:
    """When process `pid` started, in clock ticks since boot (Linux /proc); None where unknown.

    (pid, start time) names one process for the life of the machine: a pid reused by another process
    comes with another start time.
    """
    try:
        stat = open(f"/proc/{int(pid)}/stat", encoding="ascii", errors="replace").read()  # noqa: SIM115
        return int(stat.rsplit(")", 1)[1].split()[19])  # field 22; the command name may hold spaces
    except (OSError, ValueError, IndexError, TypeError):
        return None


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")


class WorkdirLock:
    """The lease on a work directory; use as a context manager."""

    def __init__(self, wd: Workdir, lease_s: float | None = None, echo: Callable[[str], None] | None = None,
                 interrupt: bool = False) -> None:
        self.wd = wd
        self.loc = wd.stages / ".lock"
        self.lease_s = float(lease_s or os.environ.get("PMC_CURATE_LOCK_LEASE_S") or DEFAULT_LEASE_S)
        self.echo = echo or log.warning
        self.me: dict[str, Any] = {"owner": uuid.uuid4().hex, "pid": os.getpid(), "host": socket.gethostname(),
                                   "pid_start": start_time(os.getpid()), "started_at": _iso(time.time()),
                                   "lease_s": self.lease_s}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost: str | None = None  # set when another run took the lock over while we held it
        # Interrupt the main thread when the lock is lost (only where a signal handler can be installed).
        self.interrupt = interrupt and threading.current_thread() is threading.main_thread()
        self._main = threading.main_thread().ident
        self._previous_handler: Any = None

    # ------------------------------------------------------------------------------------- state
    def _read(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.loc.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}  # unreadable: written by something else, treat as stale
        return data if isinstance(data, dict) else {}

    def _payload(self) -> bytes:
        return json.dumps({**self.me, "heartbeat_at": time.time()}).encode()

    def stale_reason(self, other: dict[str, Any]) -> str | None:
        """Why a lock someone else holds may be taken over, or None while its holder is alive."""
        if not other:
            return "its lock file is unreadable"
        if other.get("owner") and other.get("owner") == self.me["owner"]:
            return "it is ours"
        if other.get("host") == self.me["host"]:
            if other.get("pid") == self.me["pid"]:
                return "it was left by this process"
            if not alive(other.get("pid")):
                return f"its process {other.get('pid')} is gone"
            then, current = other.get("pid_start"), start_time(other.get("pid"))
            if then is not None and current is not None and then != current:
                return f"its process {other.get('pid')} is gone (that pid now belongs to a process started later)"
            return None
        beat = other.get("heartbeat_at")
        if not isinstance(beat, int | float):
            return "it has no heartbeat"
        age = time.time() - beat
        lease = float(other.get("lease_s") or self.lease_s)
        return f"no heartbeat for {age:.0f} s (lease {lease:.0f} s)" if age > lease else None

    # --------------------------------------------------------------------------------- acquiring
    def acquire(self) -> None:
        for _ in range(3):
            if self.loc.create_exclusive(self._payload()):
                time.sleep(0.05)  # let a racing creation on a store without preconditions land first
                now = self._read() or {}
                if now.get("owner") != self.me["owner"]:
                    raise self._refusal(now)
                self._start_heartbeat()
                return
            other = self._read()
            if other is None:
                continue  # released between our attempt and the read
            reason = self.stale_reason(other)
            if reason is None:
                raise self._refusal(other)
            self.echo(f"taking over the lock on {self.wd.root} left by host {other.get('host', '?')} "
                      f"pid {other.get('pid', '?')} (started {other.get('started_at', '?')}): {reason}")
            self.loc.unlink()
        raise ConfigError(f"could not take the lock {self.loc}: other runs keep taking it; stop them first")

    def _refusal(self, other: dict[str, Any]) -> ConfigError:
        beat = other.get("heartbeat_at")
        ago = f", last heartbeat {time.time() - beat:.0f} s ago" if isinstance(beat, int | float) else ""
        where = f"pid {other.get('pid')}" + ("" if other.get("host") == self.me["host"] else f" on host {other.get('host')}")
        return ConfigError(f"another pmc-curate run ({where}, since {other.get('started_at')}{ago}) is working in "
                           f"{self.wd.root}; wait for it or stop it first (a dead run's lock expires "
                           f"{float(other.get('lease_s') or self.lease_s):.0f} s after its last heartbeat)")

    # -------------------------------------------------------------------------------- heartbeat
    def _start_heartbeat(self) -> None:
        self._thread = threading.Thread(target=self._beat, name="pmc-curate-lock-heartbeat", daemon=True)
        self._thread.start()

    def _taken_over(self) -> dict[str, Any] | None:
        """The lock's content when it names another owner; None while it is ours, gone, or cannot be read
        now (a lost endpoint is the storage layer's error to report, not a takeover)."""
        try:
            data = json.loads(self.loc.read_text())
        except (OSError, ValueError):
            return None
        if isinstance(data, dict) and data.get("owner") and data.get("owner") != self.me["owner"]:
            return data
        return None

    def _beat(self) -> None:
        while not self._stop.wait(self.lease_s / 4):
            try:
                now = self._taken_over()
                if now is not None:
                    self.lost = f"host {now.get('host')} pid {now.get('pid')}"
                    log.error("the lock on %s was taken over by %s; this run no longer holds it", self.wd.root, self.lost)
                    if self.interrupt and self._main is not None:
                        signal.pthread_kill(self._main, signal.SIGUSR1)  # the handler raises LockLostError
                    return
                self.loc.write_bytes(self._payload())
            except Exception as e:  # a failed beat is retried at the next interval; the lease covers 3 misses
                log.warning("lock heartbeat on %s failed: %s", self.wd.root, e)

    def error(self) -> LockLostError:
        return LockLostError(
            f"the lock on {self.wd.root} was taken over by {self.lost} (another pmc-curate run); this run stopped "
            "before its next write. Let that run finish, or stop it, then run again: finished steps are kept"
        )

    def check(self) -> None:
        """Raise LockLostError when another run took the lock over: call before writing to the work directory."""
        if self.lost is None and self._thread is not None and not self._stop.is_set():
            now = self._taken_over()
            if now is not None:
                self.lost = f"host {now.get('host')} pid {now.get('pid')}"
        if self.lost is not None:
            raise self.error()

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.lost is not None:
            raise self.error()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        now = self._read()
        if now is not None and now.get("owner") == self.me["owner"]:
            self.loc.unlink()

    def __enter__(self) -> WorkdirLock:
        self.acquire()
        if self.interrupt:
            self._previous_handler = signal.signal(signal.SIGUSR1, self._on_signal)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.release()
        finally:
            if self.interrupt:
                with contextlib.suppress(ValueError, TypeError):
                    signal.signal(signal.SIGUSR1, self._previous_handler or signal.SIG_DFL)
