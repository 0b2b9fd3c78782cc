"""A quiet console and full logs on disk.

The console shows the project's own messages (INFO and up) and everybody else's warnings; `-v` shows
everything. Every command also writes its full log (Beam's, transformers', httpx's INFO lines included)
to `W/logs/<step>.log` in its work directory, local or remote (a remote log is written locally and
uploaded when the step ends). Every record, on the console and in files, has secrets masked.

Long steps report progress as heartbeat lines (`Heartbeat`), which work on every runner (a worker's
log), and console lines go through tqdm so they never break a progress bar.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from pipeline.core import secrets

OURS = ("pipeline", "classifiers", "beam_runners", "__main__")
FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _ConsoleFilter(logging.Filter):
    """Our INFO, everybody's WARNING: Beam, transformers, httpx and botocore INFO stay in the file."""

    def __init__(self, verbose: bool) -> None:
        super().__init__()
        self.verbose = verbose

    def filter(self, record: logging.LogRecord) -> bool:
        if self.verbose or record.levelno >= logging.WARNING:
            return True
        return record.levelno >= logging.INFO and record.name.split(".")[0] in OURS


class _TqdmHandler(logging.StreamHandler):
    """Writes above any progress bar tqdm draws, instead of through it, to the stderr of the moment (a
    test runner or a Beam worker may swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=sys.stderr)
        except ValueError:  # stderr already closed: a message at interpreter exit (Beam's atexit cleanup)
            pass
        except Exception:  # logging must never fail the run
            self.handleError(record)


def setup(verbose: bool = False) -> None:
    """Configure the console once per process (the CLI calls it)."""
    root = logging.getLogger()
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for h in [h for h in root.handlers if getattr(h, "_pmc_curate_console", False)]:
        root.removeHandler(h)
    console = _TqdmHandler()
    console.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s" if verbose else "%(message)s"))
    console.addFilter(_ConsoleFilter(verbose))
    console._pmc_curate_console = True  # type: ignore[attr-defined]
    root.addHandler(console)
    secrets.install_log_filter()


class _LazyFileHandler(logging.FileHandler):
    """Opens (and creates the folder of) its file at the first record: a command that stops before it
    logs anything (a typo in a flag) leaves no work directory behind."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, encoding="utf-8", delay=True)

    def _open(self):  # type: ignore[no-untyped-def]
        os.makedirs(os.path.dirname(self.baseFilename), exist_ok=True)
        return super()._open()


@contextlib.contextmanager
def to_workdir(workdir: object, name: str) -> Iterator[Path]:
    """Everything logged while inside goes (also) to W/logs/<name>.log; yields the local file."""
    from pipeline.core.workdir import Workdir

    wd = Workdir.of(workdir)  # type: ignore[arg-type]
    target = wd.root / "logs" / f"{name}.log"
    if target.is_remote:
        fd, tmp = tempfile.mkstemp(prefix=f"pmc-curate-{name}-", suffix=".log")
        os.close(fd)
        local = Path(tmp)
        with contextlib.suppress(FileNotFoundError, OSError):
            local.write_bytes(target.read_bytes())  # append to the step's earlier log
    else:
        local = target.local
    handler = _LazyFileHandler(local)
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter(FILE_FORMAT))
    handler.addFilter(secrets.RedactingFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield local
    finally:
        root.removeHandler(handler)
        handler.close()
        if target.is_remote:
            with contextlib.suppress(Exception):  # a lost log must not hide the step's own outcome
                if local.stat().st_size:
                    target.write_bytes(local.read_bytes())
            local.unlink(missing_ok=True)


class Heartbeat:
    """Counts work and logs a progress line at most every `every_s` seconds: items, rate, and where the
    total is known, the share done and an ETA. One per worker process; cheap to call per item."""

    def __init__(self, logger: logging.Logger, what: str, total: int | None = None, every_s: float = 15.0) -> None:
        self.log, self.what, self.total, self.every_s = logger, what, total, every_s
        self.n = 0
        self.t0 = self.last = time.monotonic()

    def tick(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= self.every_s:
            self.last = now
            self.log.info(self.line(now))

    def line(self, now: float | None = None) -> str:
        elapsed = max(1e-9, (now or time.monotonic()) - self.t0)
        rate = self.n / elapsed
        text = f"{self.what}: {self.n:,}"
        if self.total:
            eta = (self.total - self.n) / rate if rate > 0 else float("inf")
            text += f" of {self.total:,} ({100 * self.n / self.total:.0f}%), ETA {eta:,.0f} s"
        return text + f", {rate:,.1f}/s"
