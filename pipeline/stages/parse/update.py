"""`pmc-curate parse SOURCE --workdir W --update`: bring W's tables to the newest inventory, touching only what changed.

1. The newest inventory (key -> ETag) is diffed against the state the previous run left in W/versions,
   in DuckDB spilling to disk (inventory_diff.py): the launcher's memory does not grow with the bucket.
2. The affected PMCIDs are those with a new, changed or removed version. All their current versions are
   fetched and the canonical version chosen again (ReadPmcCloud on just those entries), written as new
   part files (`part-u<stamp>-*`).
3. Then, only in the part files that held affected PMCIDs, their old rows are removed (each file
   rewritten in one PUT / rename; a file left empty is deleted). So `W/articles/*.parquet`,
   `W/paragraphs/*.parquet` and `W/versions/*.parquet` read as plain files are the current corpus, with
   no duplicate id and no text of a changed, removed or retracted article.
4. An article that was in W/articles and no longer is gets a tombstone row in W/tombstones
   (`removed`: no version left in the inventory; else why its newest version is not parsed).

Pure except for file I/O through `pipeline.storage`; no Beam.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc_arrow
import pyarrow.parquet as pq

from pipeline.core import storage
from pipeline.core.records import Reject, Tombstone, arrow_schema, as_row
from pipeline.core.storage import Location
from pipeline.core.workdir import Workdir
from pipeline.sources import pmc_cloud as pc
from pipeline.stages.parse.inventory_diff import Delta, diff_inventory

STAGE = "parse"
# table -> the column naming the article (rejects: the version key or PMCID, matched by prefix)
ID_COLUMNS = {"articles": "pmcid", "paragraphs": "article_id", "versions": "pmcid"}


def diff(state: dict[str, tuple[str, str | None]], entries: Iterable[pc.Entry]) -> Delta:
    """New, changed (another ETag) and removed version keys, and the PMCIDs they touch: the definition, in
    memory (state: key -> (pmcid, etag)). The launcher runs the same diff in DuckDB (inventory_diff.py);
    the tests and bench/bench_inventory.py compare the two."""
    d = Delta()
    seen: set[str] = set()
    for e in entries:
        seen.add(e.key)
        old = state.get(e.key)
        if old is None:
            d.new.append(e.key)
            d.affected.add(e.pmcid)
        elif old[1] != e.etag:
            d.changed.append(e.key)
            d.affected.add(e.pmcid)
    for key, (pmcid, _) in state.items():
        if key not in seen:
            d.removed.append(key)
            d.affected.add(pmcid)
    d.new.sort()
    d.changed.sort()
    d.removed.sort()
    return d


def _read(loc: Location, columns: list[str] | None = None) -> pa.Table:
    if not loc.is_remote:
        return pq.read_table(loc.local, columns=columns)
    with loc.open("rb") as f:
        return pq.read_table(f, columns=columns)


def _is_affected(values: pa.Array, affected: set[str], prefix: bool) -> pa.Array:
    if not prefix:
        return pc_arrow.is_in(values, value_set=pa.array(sorted(affected), pa.string()))
    # rejects: record_id is a version key ("PMC1.2") or a PMCID; an inventory-part reject (null) is always stale
    ids = [None if v is None else v.split(".")[0] for v in values.to_pylist()]
    return pa.array([True if i is None else i in affected for i in ids])


def drop_rows(files: Iterable[Location], column: str, affected: set[str], prefix: bool = False) -> int:
    """Remove the rows of the affected PMCIDs from these part files, rewriting only files that hold some."""
    dropped = 0
    for f in files:
        ids = _read(f, [column]).column(column).combine_chunks()
        mask = _is_affected(ids, affected, prefix)
        n = pc_arrow.sum(mask).as_py() or 0
        if not n:
            continue
        dropped += n
        if n == len(ids):
            f.unlink()
            continue
        t = _read(f)
        storage.write_parquet(t.filter(pc_arrow.invert(mask)), f, compression="zstd")
    return dropped


def stale_files(workdir: Workdir) -> dict[str, list[Location]]:
    """The part files before the update's own are written (those are the only ones to rewrite)."""
    out = {t: workdir.table(t).glob("*.parquet") for t in ID_COLUMNS}
    out["rejects"] = workdir.rejects.glob(f"{STAGE}-*.parquet")
    return out


def apply(workdir: Workdir, before: dict[str, list[Location]], affected: set[str]) -> dict[str, int]:
    """Step 3: drop the affected PMCIDs' old rows from the files that existed before the update ran."""
    dropped = {t: drop_rows(before[t], col, affected) for t, col in ID_COLUMNS.items()}
    dropped["rejects"] = drop_rows(before["rejects"], "record_id", affected, prefix=True)
    return dropped


def tombstones(workdir: Workdir, before_articles: set[str], affected: set[str], snapshot: str, stamp: str,
               current_keys: dict[str, list[str]]) -> int:
    """Step 4: a W/tombstones row for each affected article that was in W/articles and no longer is."""
    now = pmcids_in(workdir.articles.glob("*.parquet"), affected)
    gone = sorted((before_articles & affected) - now, key=lambda p: int(p[3:]))
    if not gone:
        return 0
    outcome: dict[str, tuple[str, str]] = {}
    gone_set = pa.array(gone, pa.string())
    for f in workdir.table("versions").glob("*.parquet"):
        t = _read(f, ["pmcid", "key", "version", "outcome"])
        for r in t.filter(pc_arrow.is_in(t.column("pmcid"), value_set=gone_set)).to_pylist():
            if r["pmcid"] in gone and (r["pmcid"] not in outcome or r["version"] > int(outcome[r["pmcid"]][0].split(".")[1])):
                outcome[r["pmcid"]] = (r["key"], r["outcome"])
    rows = []
    for p in gone:
        if not current_keys.get(p):
            rows.append(Tombstone(p, None, "removed", snapshot))
        else:
            key, why = outcome.get(p, (None, "rejected"))
            rows.append(Tombstone(p, key, why, snapshot))
    table = pa.Table.from_pylist([as_row(r) for r in rows], schema=arrow_schema(Tombstone))
    storage.write_parquet(table, workdir.table("tombstones") / f"part-u{stamp}.parquet", compression="zstd")
    return len(rows)


def pmcids_in(files: Iterable[Location], wanted: set[str]) -> set[str]:
    """The PMCIDs of `wanted` that these article files hold (one file's column in memory at a time)."""
    if not wanted:
        return set()
    value_set = pa.array(sorted(wanted), pa.string())
    found: set[str] = set()
    for f in files:
        col = _read(f, ["pmcid"]).column("pmcid")
        found.update(col.filter(pc_arrow.is_in(col, value_set=value_set)).to_pylist())
    return found


def run_update(workdir: Workdir, transform: Any, run_pipeline: Callable[[Any, str], None]) -> dict[str, Any]:
    """Steps 1-4 for a ReadPmcCloud transform; `run_pipeline(transform, tag)` runs Beam and writes the outputs."""
    index: pc.Index = transform.index
    d = diff_inventory(workdir, index, transform.pmcids)  # a partial run (--pmcids) updates its part only
    delta = d.delta
    current: dict[str, list[str]] = {}
    for e in d.entries:
        current.setdefault(e.pmcid, []).append(e.key)
    stamp = f"{index.snapshot}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}".replace(":", "")
    before = stale_files(workdir)
    before_articles = pmcids_in(before["articles"], delta.affected)
    transform.index = replace(index, parts=(), entries=tuple(d.entries))
    run_pipeline(transform, f"u{stamp}")
    dropped = apply(workdir, before, delta.affected)
    if d.rejects:
        t = pa.Table.from_pylist([as_row(r) for r in d.rejects], schema=arrow_schema(Reject))
        storage.write_parquet(t, workdir.rejects / f"{STAGE}-u{stamp}-inventory.parquet", compression="zstd")
    n_tomb = tombstones(workdir, before_articles, delta.affected, index.snapshot, stamp, current)
    return {**delta.counts(), "tombstones": n_tomb, "rows_dropped": dropped, "snapshot": index.snapshot,
            "previous_versions": d.previous_versions}
