"""The update's diff (update.py step 1) out of the launcher's memory: DuckDB, spilling to a local disk.

The inventory has a row per article version (8M on the live bucket) and so has W/versions. Held as
Python objects, both cost ~440 bytes a version (3.5 GB for 8M); here they live in a DuckDB database
file in a temporary folder, with a memory limit, and the join that finds new, changed and removed
versions spills to that folder when it does not fit. What comes back to Python is proportional to the
change, not to the bucket: the changed keys, the affected PMCIDs and their current entries.

    inventory parts --iter_part, streamed, 100k rows a batch--> inv(key, pmcid, version, json_key, etag, lm)
    W/versions/*.parquet --read_parquet--> state(key, pmcid, etag)
    inv FULL OUTER JOIN state ON key -> new | changed (another ETag) | removed
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from pipeline.core import storage
from pipeline.core.errors import ConfigError, RecordError, RejectReason
from pipeline.core.records import Reject
from pipeline.core.storage import Location
from pipeline.core.workdir import Workdir
from pipeline.sources import pmc_cloud as pc

STAGE = "parse"
BATCH_ROWS = 100_000
MEMORY_LIMIT = "256MB"  # DuckDB's; the launcher's peak adds Python and one batch (bench/bench_inventory.py)
_COLS = ("key", "pmcid", "version", "json_key", "etag", "last_modified")
_SCHEMA = pa.schema([(c, pa.int64() if c == "version" else pa.string()) for c in _COLS])


@dataclass
class Delta:
    """What changed between the previous run's state and the new inventory."""

    new: list[str] = field(default_factory=list)  # version keys
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    affected: set[str] = field(default_factory=set)  # PMCIDs

    def counts(self) -> dict[str, int]:
        return {"new": len(self.new), "changed": len(self.changed), "removed": len(self.removed),
                "affected_pmcids": len(self.affected)}


@dataclass
class InventoryDiff:
    delta: Delta
    entries: list[pc.Entry]  # every current version of an affected PMCID, by key
    rejects: list[Reject]  # one per missing or corrupt inventory part
    previous_versions: int  # versions W/versions holds (after --pmcids)


def _batches(index: pc.Index, keep: pc.PmcidFilter | None, rejects: list[Reject]) -> Any:
    """The inventory's entries as Arrow record batches (the listing's entries when there is no inventory)."""
    cols: dict[str, list[Any]] = {c: [] for c in _COLS}

    def add(e: pc.Entry) -> None:
        if keep is None or keep(e.pmcid):
            for c in _COLS:
                cols[c].append(getattr(e, c))

    def flush() -> pa.RecordBatch:
        b = pa.RecordBatch.from_pydict(cols, schema=_SCHEMA)
        for v in cols.values():
            v.clear()
        return b

    if not index.parts:
        for e in index.entries:
            add(e)
    for key in index.parts:
        loc = Location(index.root) / key
        try:
            with loc.open("rb") as f:
                for e in pc.iter_part(f, index.columns):
                    add(e)
                    if len(cols["key"]) >= BATCH_ROWS:
                        yield flush()
        except FileNotFoundError:
            rejects.append(Reject(str(loc), STAGE, RejectReason.INVENTORY_PART_MISSING.value,
                                  "the manifest names this part; it is not there"))
        except RecordError as e:  # the rows read before the damage are kept
            rejects.append(Reject(str(loc), STAGE, e.reason.value, e.detail))
    yield flush()


def _state_filter(con: Any, keep: pc.PmcidFilter | None) -> str:
    if keep is None:
        return ""
    if keep.ids is not None:
        con.register("keep_ids", pa.table({"pmcid": sorted(keep.ids)}))
        return " WHERE pmcid IN (SELECT pmcid FROM keep_ids)"
    n = "CAST(substr(pmcid, 4) AS BIGINT)"
    terms = ([f"{n} >= {int(keep.low)}"] if keep.low is not None else []) + \
        ([f"{n} <= {int(keep.high)}"] if keep.high is not None else [])
    return " WHERE " + " AND ".join(terms) if terms else ""


def diff_inventory(workdir: Workdir, index: pc.Index, keep: pc.PmcidFilter | None = None,
                   memory_limit: str = MEMORY_LIMIT, tmp_dir: str | None = None) -> InventoryDiff:
    """Step 1 of the update: the inventory against W/versions, in DuckDB (ConfigError without W/versions)."""
    files = workdir.table("versions").glob("*.parquet")
    if not files:
        raise ConfigError(f"--update: {workdir.root} has no W/versions from a previous PMC Cloud parse; "
                          "run once without --update first")
    tmp = tempfile.mkdtemp(prefix="pmc-curate-diff-", dir=tmp_dir)
    con = None
    try:
        con = storage.duckdb_connect(threads=2, memory_limit=memory_limit, database=f"{tmp}/diff.duckdb",
                                     temp_directory=f"{tmp}/spill")
        con.execute("SET preserve_insertion_order = false")
        con.execute("CREATE TABLE inv (key VARCHAR, pmcid VARCHAR, version BIGINT, json_key VARCHAR, "
                    "etag VARCHAR, last_modified VARCHAR)")
        rejects: list[Reject] = []
        for batch in _batches(index, keep, rejects):
            if batch.num_rows:
                con.register("batch", pa.Table.from_batches([batch]))
                con.execute("INSERT INTO inv SELECT * FROM batch")
                con.unregister("batch")
        where = _state_filter(con, keep)
        # No GROUP BY over the keys (keys are unique in both; a grouping of 2M strings ran out of a 64 MB
        # limit where the join spills): a duplicated key at most repeats a row of d, made distinct below.
        con.execute(f"CREATE TABLE state AS SELECT key, pmcid, etag FROM read_parquet($files){where}",
                    {"files": [str(f) for f in files]})
        con.execute("""
            CREATE TABLE d AS
            SELECT DISTINCT coalesce(i.key, s.key) AS key, coalesce(i.pmcid, s.pmcid) AS pmcid,
                   CASE WHEN s.key IS NULL THEN 'new' WHEN i.key IS NULL THEN 'removed' ELSE 'changed' END AS kind
            FROM inv i FULL OUTER JOIN state s ON i.key = s.key
            WHERE s.key IS NULL OR i.key IS NULL OR i.etag IS DISTINCT FROM s.etag""")
        delta = Delta()
        for key, kind in con.execute("SELECT key, kind FROM d ORDER BY key").fetchall():
            getattr(delta, kind).append(key)
        delta.affected = {p for (p,) in con.execute("SELECT DISTINCT pmcid FROM d").fetchall()}
        rows = con.execute("SELECT key, pmcid, version, json_key, etag, last_modified FROM inv "
                           "WHERE pmcid IN (SELECT pmcid FROM d) ORDER BY key").fetchall()
        entries = [pc.Entry(*r) for r in rows]
        (previous,) = con.execute("SELECT count(DISTINCT key) FROM state").fetchall()[0]
        return InventoryDiff(delta, entries, rejects, int(previous))
    finally:
        if con is not None:
            con.close()
        shutil.rmtree(tmp, ignore_errors=True)
