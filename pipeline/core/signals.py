"""SIGTERM and SIGHUP handled like Ctrl-C, and child processes that die with their parent.

`docker stop`, Kubernetes, a spot preemption and a closed terminal send SIGTERM or SIGHUP. Python's
default for both is to die on the spot: no `finally`, no marker, no lock release, an orphaned teacher
server. `as_interrupt()` turns them into `Terminated`, a KeyboardInterrupt, so every path Ctrl-C takes
(markers written `interrupted`, the lock released, child processes stopped, staging folders removed)
is taken for them too; the command exits 128 + the signal number, as a shell reports a killed process.

A long-running child (the offline teacher server) calls `die_with_parent` first: on Linux it asks the
kernel for SIGTERM when its parent dies (prctl PR_SET_PDEATHSIG), which also covers a parent killed
with SIGKILL, where no handler runs; `watch_parent` (a thread polling getppid) is the portable
fallback it runs too.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s is not None)
_PR_SET_PDEATHSIG = 1


class Terminated(KeyboardInterrupt):
    """The process was asked to stop by a signal (SIGTERM, SIGHUP): cleaned up like Ctrl-C."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def _raise(signum: int, frame: Any) -> None:
    raise Terminated(signum)


@contextlib.contextmanager
def as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise Terminated in the main thread (no-op in another thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _raise) for s in SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)


def die_with_parent(parent_pid: int) -> None:
    """Called by a child process first thing: SIGTERM it when its parent dies (Linux PR_SET_PDEATHSIG).

    Exits at once when `parent_pid` is already gone (it died before this call). Not a Popen preexec_fn:
    running Python between fork and exec can deadlock a process that has threads.
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(0)


def watch_parent(parent_pid: int, on_orphaned: Callable[[], None], interval_s: float = 1.0) -> threading.Thread:
    """A daemon thread that calls `on_orphaned` once the process `parent_pid` is no longer our parent."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(interval_s)
        on_orphaned()

    t = threading.Thread(target=watch, name="pmc-curate-parent-watchdog", daemon=True)
    t.start()
    return t
