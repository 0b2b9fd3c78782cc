"""`pmc-curate parse SOURCE --workdir W --update`: bring W's tables to the newest inventory, touching only what changed.

1. A previous update that was killed is finished first (update_journal.py): rolled forward if it was
   publishing, its staged output discarded if it was still parsing.
2. The newest inventory (key -> ETag) is diffed against the state the previous run left in W/versions,
   in DuckDB spilling to disk (inventory_diff.py): the launcher's memory does not grow with the bucket.
3. The affected PMCIDs are those with a new, changed or removed version. All their current versions are
   fetched and the canonical version chosen again (ReadPmcCloud on just those entries), written to a
   staging folder outside the tables (`W/_staging/parse-u<stamp>/<table>/`): a glob over
   `W/<table>/**/*.parquet` does not see it.
4. An article that was in W/articles and is not in the staged articles gets a tombstone row
   (`removed`: no version left in the inventory; else why its newest version is not parsed), staged too.
5. Publish (`pipeline.core.commit.substitute`): each part file holding an affected article is rewritten
   whole, in one PUT / write-and-rename, with the article's new rows in place of its old ones; new
   articles go to one new file a table. Killed at any point, a glob shows every article once (old or
   new version, its paragraphs with it) and no paragraph twice; the next `--update` finishes the publish.

Pure except for file I/O through `pipeline.storage`; no Beam.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc_arrow

from pipeline.core import storage
from pipeline.core.commit import read_all
from pipeline.core.records import Reject, SourceVersion, Tombstone, arrow_schema, as_row
from pipeline.core.storage import Location
from pipeline.core.workdir import Workdir
from pipeline.sources import pmc_cloud as pc
from pipeline.stages.parse import update_journal as journal
from pipeline.stages.parse.inventory_diff import Delta, diff_inventory

STAGE = "parse"


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


def pmcids_in(files: Iterable[Location], wanted: set[str]) -> set[str]:
    """The PMCIDs of `wanted` that these article files hold (one file's column in memory at a time)."""
    if not wanted:
        return set()
    value_set = pa.array(sorted(wanted), pa.string())
    found: set[str] = set()
    for f in files:
        col = storage.read_parquet(f, ["pmcid"]).column("pmcid")
        found.update(col.filter(pc_arrow.is_in(col, value_set=value_set)).to_pylist())
    return found




def tombstones(staged: Workdir, before_articles: set[str], affected: set[str], snapshot: str,
               current_keys: dict[str, list[str]]) -> pa.Table:
    """Step 4: a tombstone row for each affected article that was in W/articles and is not staged."""
    now = pmcids_in(staged.articles.glob("*.parquet"), affected)
    gone = sorted((before_articles & affected) - now, key=lambda p: int(p[3:]))
    outcome: dict[str, tuple[str, str]] = {}
    if gone:
        versions = read_all(staged.table("versions").glob("*.parquet"), arrow_schema(SourceVersion))
        picked = versions.filter(pc_arrow.is_in(versions.column("pmcid"), value_set=pa.array(gone, pa.string())))
        for r in picked.select(["pmcid", "key", "version", "outcome"]).to_pylist():
            if r["pmcid"] not in outcome or r["version"] > int(outcome[r["pmcid"]][0].split(".")[1]):
                outcome[r["pmcid"]] = (r["key"], r["outcome"])
    rows = []
    for p in gone:
        if not current_keys.get(p):
            rows.append(Tombstone(p, None, "removed", snapshot))
        else:
            key, why = outcome.get(p, (None, "rejected"))
            rows.append(Tombstone(p, key, why, snapshot))
    return pa.Table.from_pylist([as_row(r) for r in rows], schema=arrow_schema(Tombstone))


def run_update(workdir: Workdir, transform: Any, run_pipeline: Callable[[Any, str, Workdir], None],
               dry_run: bool = False) -> dict[str, Any]:
    """Steps 1-5 for a ReadPmcCloud transform; `run_pipeline(transform, tag, out)` runs Beam and writes the
    outputs under the work directory `out` (here the staging folder). A dry run (--dry-run FILE) builds the
    update's job and writes nothing to W (run_pipeline raises DryRunFinished)."""
    healed = None if dry_run else journal.finish_pending(workdir)
    index: pc.Index = transform.index
    d = diff_inventory(workdir, index, transform.pmcids)  # a partial run (--pmcids) updates its part only
    delta = d.delta
    current: dict[str, list[str]] = {}
    for e in d.entries:
        current.setdefault(e.pmcid, []).append(e.key)
    stamp = f"{index.snapshot}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}".replace(":", "")
    staged = journal.staging(workdir, stamp) if dry_run else journal.begin(workdir, stamp)
    transform.index = replace(index, parts=(), entries=tuple(d.entries))
    run_pipeline(transform, f"u{stamp}", staged)
    if d.rejects:
        t = pa.Table.from_pylist([as_row(r) for r in d.rejects], schema=arrow_schema(Reject))
        storage.write_parquet(t, staged.rejects / f"{STAGE}-u{stamp}-inventory.parquet", compression="zstd")
    before_articles = pmcids_in(workdir.articles.glob("*.parquet"), delta.affected)
    tomb = tombstones(staged, before_articles, delta.affected, index.snapshot, current)
    if tomb.num_rows:
        storage.write_parquet(tomb, staged.table("tombstones") / f"part-u{stamp}.parquet", compression="zstd")
    published = journal.publish(workdir, stamp, delta.affected)
    out = {**delta.counts(), "tombstones": tomb.num_rows, "rows_dropped": published["rows_dropped"],
           "publish": published, "snapshot": index.snapshot, "previous_versions": d.previous_versions}
    if healed:
        out["finished_interrupted_update"] = healed
    return out
