"""SQLite request cache: every finished teacher call is committed the moment it returns.

Key = (prompt version, prompt hash, model, paragraph input hash): a new prompt version, an edited
prompt, another model or an edited paragraph is a new call; anything else is replayed for free.
Two tables:

- `attempts`: every paid reply (valid or not), so a run killed between an invalid reply and its
  retry resumes at the next attempt instead of paying for the same attempt again;
- `outcomes`: the final result per key (labels, or a reject with reason and raw reply).

WAL journal + one commit per call: a `kill -9` loses at most the calls still in flight, never a
committed one (WAL with synchronous=NORMAL is durable against process crashes; FULL adds power-loss
durability at the cost of an fsync per call).

The file is machine-local. To survive the machine, finished outcomes are copied into the work
directory as immutable Parquet shards (`pipeline/teacher/checkpoint.py`): `outcomes.checkpoint`
names the shard that holds a row (NULL: only on this disk yet), table `shards` lists the shards
already imported here.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS attempts (
    key TEXT NOT NULL, n INTEGER NOT NULL, paragraph_id TEXT, finish_reason TEXT, content TEXT,
    prompt_tokens INTEGER, completion_tokens INTEGER, latency_s REAL, error TEXT, created REAL,
    PRIMARY KEY (key, n)
);
CREATE TABLE IF NOT EXISTS outcomes (
    key TEXT PRIMARY KEY, prompt_version TEXT, prompt_hash TEXT, model TEXT, input_hash TEXT,
    paragraph_id TEXT, status TEXT NOT NULL, reason TEXT, detail TEXT, raw TEXT,
    document_type TEXT, domain TEXT, educational_score INTEGER,
    prompt_tokens INTEGER, completion_tokens INTEGER, latency_s REAL, attempts INTEGER, created REAL
);
CREATE TABLE IF NOT EXISTS shards (name TEXT PRIMARY KEY, n_rows INTEGER, imported REAL);
"""

# The columns of an outcome, in order: what a checkpoint shard holds (no header, no key, no secret).
OUTCOME_COLUMNS = (
    "key", "prompt_version", "prompt_hash", "model", "input_hash", "paragraph_id", "status", "reason",
    "detail", "raw", "document_type", "domain", "educational_score", "prompt_tokens",
    "completion_tokens", "latency_s", "attempts", "created",
)  # fmt: skip


def cache_key(prompt_version: str, prompt_hash: str, model: str, input_hash: str) -> str:
    """The identity of one teacher call."""
    return f"{prompt_version}|{prompt_hash}|{model}|{input_hash}"


@dataclass
class CachedAttempt:
    """One paid reply that did not validate (kept so a resumed run continues at the next attempt)."""

    n: int
    finish_reason: str | None
    content: str | None
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    error: str | None


class RequestCache:
    """Thread-safe SQLite cache of teacher calls. One connection, guarded by a lock."""

    def __init__(self, path: str | Path, synchronous: str = "NORMAL") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._con = sqlite3.connect(str(self.path), check_same_thread=False, timeout=60, isolation_level=None)
        self._con.execute("PRAGMA journal_mode=WAL")
        self._con.execute(f"PRAGMA synchronous={synchronous}")
        self._con.execute("PRAGMA busy_timeout=60000")
        self._con.executescript(_SCHEMA)
        cols = {r[1] for r in self._con.execute("PRAGMA table_info(outcomes)")}
        if "checkpoint" not in cols:  # caches written before checkpoints existed: every row is unsaved
            self._con.execute("ALTER TABLE outcomes ADD COLUMN checkpoint TEXT")
        self._con.execute("CREATE INDEX IF NOT EXISTS outcomes_unsaved ON outcomes(key) WHERE checkpoint IS NULL")

    def get(self, key: str) -> dict[str, Any] | None:
        """The final outcome of a call, or None when it has not finished."""
        with self._lock:
            cur = self._con.execute("SELECT * FROM outcomes WHERE key = ?", (key,))
            row = cur.fetchone()
            if row is None:
                return None
            return dict(zip([c[0] for c in cur.description], row, strict=True))

    def has_many(self, keys: list[str]) -> set[str]:
        """Which of these keys already have an outcome (for the cost estimate)."""
        found: set[str] = set()
        with self._lock:
            for i in range(0, len(keys), 500):
                chunk = keys[i : i + 500]
                marks = ",".join("?" * len(chunk))
                found.update(r[0] for r in self._con.execute(f"SELECT key FROM outcomes WHERE key IN ({marks})", chunk))
        return found

    def attempts(self, key: str) -> list[CachedAttempt]:
        """Paid replies of an unfinished call, in order."""
        with self._lock:
            rows = self._con.execute(
                "SELECT n, finish_reason, content, prompt_tokens, completion_tokens, latency_s, error "
                "FROM attempts WHERE key = ? ORDER BY n",
                (key,),
            ).fetchall()
        return [CachedAttempt(*r) for r in rows]

    def add_attempt(self, key: str, paragraph_id: str, attempt: CachedAttempt) -> None:
        """Commit one paid reply at once."""
        with self._lock:
            self._con.execute(
                "INSERT OR REPLACE INTO attempts VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    key,
                    attempt.n,
                    paragraph_id,
                    attempt.finish_reason,
                    attempt.content,
                    attempt.prompt_tokens,
                    attempt.completion_tokens,
                    attempt.latency_s,
                    attempt.error,
                    time.time(),
                ),
            )

    def put(self, key: str, outcome: dict[str, Any]) -> None:
        """Commit the final outcome of a call at once (autocommit: one transaction per call)."""
        cols = [
            "key", "prompt_version", "prompt_hash", "model", "input_hash", "paragraph_id", "status", "reason",
            "detail", "raw", "document_type", "domain", "educational_score", "prompt_tokens",
            "completion_tokens", "latency_s", "attempts",
        ]  # fmt: skip
        values = [key] + [outcome.get(c) for c in cols[1:]] + [time.time()]
        with self._lock:
            self._con.execute(
                f"INSERT OR REPLACE INTO outcomes ({', '.join(cols)}, created) VALUES ({', '.join('?' * len(values))})",
                values,
            )

    # ---- checkpoints (pipeline/teacher/checkpoint.py) -------------------------------------------
    def unsaved(self) -> list[tuple[Any, ...]]:
        """Outcomes not yet in any checkpoint shard, as tuples in OUTCOME_COLUMNS order."""
        with self._lock:
            return self._con.execute(
                f"SELECT {', '.join(OUTCOME_COLUMNS)} FROM outcomes WHERE checkpoint IS NULL ORDER BY created"
            ).fetchall()

    def unsaved_among(self, keys: set[str]) -> set[str]:
        """Which of these keys are not yet in any checkpoint shard."""
        found: set[str] = set()
        ks = list(keys)
        with self._lock:
            for i in range(0, len(ks), 500):
                chunk = ks[i : i + 500]
                marks = ",".join("?" * len(chunk))
                found.update(r[0] for r in self._con.execute(
                    f"SELECT key FROM outcomes WHERE checkpoint IS NULL AND key IN ({marks})", chunk))  # fmt: skip
        return found

    def mark_saved(self, shard: str, rows: list[tuple[Any, ...]]) -> None:
        """Record that `shard` (already stored) holds these rows; a row rewritten since is left unsaved."""
        k, c = OUTCOME_COLUMNS.index("key"), OUTCOME_COLUMNS.index("created")
        with self._lock:
            self._con.execute("BEGIN IMMEDIATE")
            try:
                self._con.executemany(
                    "UPDATE outcomes SET checkpoint = ? WHERE key = ? AND created = ? AND checkpoint IS NULL",
                    [(shard, r[k], r[c]) for r in rows],
                )
                self._con.execute("INSERT OR REPLACE INTO shards VALUES (?,?,?)", (shard, len(rows), time.time()))
                self._con.execute("COMMIT")
            except BaseException:
                self._con.execute("ROLLBACK")
                raise

    def known_shards(self) -> set[str]:
        with self._lock:
            return {r[0] for r in self._con.execute("SELECT name FROM shards")}

    def import_shard(self, shard: str, rows: list[tuple[Any, ...]]) -> int:
        """Add a shard's outcomes (a key already here keeps its local row); returns the rows added."""
        marks = ",".join("?" * (len(OUTCOME_COLUMNS) + 1))
        with self._lock:
            self._con.execute("BEGIN IMMEDIATE")
            try:
                before = self._con.total_changes
                self._con.executemany(
                    f"INSERT OR IGNORE INTO outcomes ({', '.join(OUTCOME_COLUMNS)}, checkpoint) VALUES ({marks})",
                    [(*r, shard) for r in rows],
                )
                added = self._con.total_changes - before
                self._con.execute("INSERT OR REPLACE INTO shards VALUES (?,?,?)", (shard, len(rows), time.time()))
                self._con.execute("COMMIT")
            except BaseException:
                self._con.execute("ROLLBACK")
                raise
        return added

    def close(self) -> None:
        with self._lock:
            self._con.close()
