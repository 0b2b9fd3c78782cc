"""Checkpoints of the teacher cache in the work directory, so finished calls survive the machine.

The SQLite cache (`cache.py`) lives on local disk and commits each call the moment it returns; a
`kill -9` loses nothing there, but losing the machine loses the file. So finished outcomes are also
copied into the work directory's store (local, s3:// or gs://) as immutable Parquet shards:

    W/cache/teacher/<ms>-<host>-<pid>-<token>-<seq>.parquet

Each shard holds only the outcomes not yet in an earlier shard (columns `cache.OUTCOME_COLUMNS`: the
cache key, ids, labels or reject reason and raw reply, tokens; never a header or a key). It is one
PUT (`Location.write_bytes`), so a reader sees the whole shard or none of it; the rows are marked
saved in SQLite only after the PUT returned, so a crash between the two repeats rows (harmless: import
is by key) and never loses one.

When: a shard is written as soon as half of `every` finished calls wait for one, and at least every
`seconds` while any wait; a call is not *started* while `every` finished calls wait (an upload that
is slower than half an interval's calls makes new calls wait, not the bound grow). Hence, per worker
process, calls finished but only on local disk + calls in flight <= every + concurrency - 1: the most
a resume on another machine can pay twice (docs/annotate.md).

On start, every shard in the store that this SQLite file has not imported yet is read into it, so a
fresh machine starts with every checkpointed call. One checkpointer per (cache file, store) and
process, shared by every client there: Beam may load several clients in one worker, and the driver's
final flush must not race the workers' thread in the same process.
"""

from __future__ import annotations

import atexit
import io
import logging
import os
import secrets as pysecrets
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pipeline.core import secrets
from pipeline.core.storage import Location
from pipeline.teacher.cache import OUTCOME_COLUMNS, RequestCache

log = logging.getLogger(__name__)

# Defaults of --checkpoint-every / --checkpoint-seconds. A resume on a new machine repays at most
# `every` calls + the calls in flight: 100 calls are cents at hosted 70B prices (~$0.0005 a call) and
# under a second of a 64-wide endpoint's throughput, while a shard of 50-100 rows costs one PUT
# (~20 KB; 400K calls -> ~8K PUTs, about $0.04 on S3) and one GET per fresh machine. 30 s bounds the
# loss in time for slow endpoints (the offline teacher takes seconds per call, 100 calls are minutes).
DEFAULT_EVERY = 100
DEFAULT_SECONDS = 30.0
MAX_FAILURES = 5  # consecutive failed uploads before calls stop (the store is gone: do not pay blind)
IMPORT_THREADS = 16


def _schema() -> Any:
    import pyarrow as pa

    ints = {"educational_score", "prompt_tokens", "completion_tokens", "attempts"}
    floats = {"latency_s", "created"}
    return pa.schema([(c, pa.int64() if c in ints else pa.float64() if c in floats else pa.string())
                      for c in OUTCOME_COLUMNS])  # fmt: skip


def _host() -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in socket.gethostname())[:40] or "host"


class Checkpointer:
    """Copies a RequestCache's finished outcomes to `store` in shards; imports the store's shards."""

    _shared: dict[tuple[str, str], Checkpointer] = {}
    _shared_lock = threading.Lock()

    @classmethod
    def shared(cls, cache_path: str, store: str, every: int = DEFAULT_EVERY, seconds: float = DEFAULT_SECONDS) -> Checkpointer:
        """The process's checkpointer for this cache file and store (created, and started, once)."""
        key = (os.path.abspath(cache_path), str(Location(store)))
        with cls._shared_lock:
            cp = cls._shared.get(key)
            if cp is None or cp._stopped:
                cp = cls._shared[key] = cls(RequestCache(cache_path), store, every, seconds)
                cp.start()
            else:  # a later run in this process with other flags
                cp.every, cp.trigger, cp.seconds = every, max(1, every // 2), seconds
            return cp

    def __init__(self, cache: RequestCache, store: str, every: int = DEFAULT_EVERY, seconds: float = DEFAULT_SECONDS) -> None:
        if every < 1 or seconds <= 0:
            raise ValueError("checkpoint interval must be at least 1 call and more than 0 seconds")
        self.cache = cache
        self.store = Location(store)
        self.every = every
        self.seconds = seconds
        self.trigger = max(1, every // 2)
        self.failed: str | None = None
        self.shards_written = 0
        self.rows_written = 0
        self._failures = 0
        self._waiting: set[str] = set()  # keys finished in this process, not yet known to be in a shard
        self._waiting_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = False
        self._last = time.monotonic()
        self._seq = 0
        self._prefix = f"{_host()}-{os.getpid()}-{pysecrets.token_hex(3)}"
        self._thread: threading.Thread | None = None

    # ---- the calls' side --------------------------------------------------------------------
    def finished(self, key: str) -> None:
        """A call's outcome was committed to SQLite: it waits for the next shard."""
        with self._waiting_lock:
            self._waiting.add(key)
            n = len(self._waiting)
        if n >= self.trigger:
            self._wake.set()

    def has_room(self) -> bool:
        """May a new call start? Not while `every` finished calls are only on local disk."""
        with self._waiting_lock:
            return len(self._waiting) < self.every

    @property
    def waiting(self) -> int:
        with self._waiting_lock:
            return len(self._waiting)

    # ---- shards -----------------------------------------------------------------------------
    def flush(self) -> int:
        """Write one shard of every outcome not yet saved (none when there is none); returns its rows."""
        import pyarrow as pa

        from pipeline.core.storage import write_parquet

        with self._flush_lock:
            self._last = time.monotonic()
            rows = self.cache.unsaved()
            if rows:
                self._seq += 1
                name = f"{int(time.time() * 1000):013d}-{self._prefix}-{self._seq:06d}.parquet"
                schema = _schema()
                cols = zip(*rows, strict=True)
                table = pa.Table.from_arrays([pa.array(list(c), type=f.type) for c, f in zip(cols, schema, strict=True)],
                                             schema=schema)  # fmt: skip
                write_parquet(table, self.store / name, compression="zstd")
                self.cache.mark_saved(name, rows)
                self.shards_written += 1
                self.rows_written += len(rows)
                log.debug("checkpoint %s: %d finished calls -> %s", name, len(rows), self.store)
            with self._waiting_lock:
                pending = set(self._waiting)
            still = self.cache.unsaved_among(pending) if pending else set()
            with self._waiting_lock:
                self._waiting -= pending - still  # saved by this shard, or by another process's
            return len(rows)

    def import_shards(self) -> int:
        """Read every shard of the store this cache has not imported; returns the outcomes added."""
        known = self.cache.known_shards()
        todo = [loc for loc in self.store.glob("*.parquet") if loc.name not in known]
        if not todo:
            return 0
        t0 = time.monotonic()

        def read(loc: Location) -> tuple[str, list[tuple[Any, ...]]]:
            import pyarrow.parquet as pq

            t = pq.read_table(io.BytesIO(loc.read_bytes()), columns=list(OUTCOME_COLUMNS))
            return loc.name, list(zip(*(t.column(c).to_pylist() for c in OUTCOME_COLUMNS), strict=True))

        added = 0
        with ThreadPoolExecutor(min(IMPORT_THREADS, len(todo))) as pool:
            for name, rows in pool.map(read, todo):
                added += self.cache.import_shard(name, rows)
        log.info("imported %d finished calls from %d checkpoint shards in %s (%.1fs)", added, len(todo), self.store,
                 time.monotonic() - t0)  # fmt: skip
        return added

    # ---- the background thread --------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="teacher-checkpoint", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def _run(self) -> None:
        while not self._stopped:
            self._wake.wait(timeout=max(0.05, self._last + self.seconds - time.monotonic()))
            self._wake.clear()
            if self._stopped:
                return
            try:
                self.flush()
                self._failures = 0
            except Exception as e:  # the store is unreachable: retry, then stop new calls
                self._failures += 1
                msg = secrets.redact(f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}")
                log.warning("checkpoint to %s failed (%d/%d): %s", self.store, self._failures, MAX_FAILURES, msg)
                if self._failures >= MAX_FAILURES:
                    self.failed = f"cannot write checkpoints to {self.store} ({msg}); run again when it is reachable"
                time.sleep(min(5.0, 0.2 * 2**self._failures))

    def close(self) -> None:
        """Stop the thread and write the last shard (best effort at interpreter exit)."""
        if self._stopped:
            return
        self._stopped = True
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)
        try:
            self.flush()
        except Exception as e:
            log.warning("final checkpoint to %s failed: %s", self.store, secrets.redact(str(e))[:300])
        self.cache.close()
