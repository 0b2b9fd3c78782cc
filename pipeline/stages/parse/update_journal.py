"""The journal of `parse --update`: where an update stands, so that a killed one is finished, not repeated or lost.

    W/_stages/state/parse-update.json   {"stamp": ..., "phase": "staging" | "publishing" | "published"}
    W/_staging/parse-u<stamp>/          the update's staged tables (same layout as W) and affected.parquet

- `staging`: Beam is writing the staged tables. Nothing under W/<table>/ has changed. A killed run's
  staged output is discarded by the next run, which diffs and parses again.
- `publishing`: the staged tables are complete and are being substituted into W's part files
  (`pipeline.core.commit.substitute`). The next run finishes the publish from the staged tables (a
  substitution repeated on an already rewritten file is a no-op), then diffs as usual.
- `published`: only the staging folder is left to remove.

A full parse (no `--update`) rebuilds every table, so it discards a pending update. `status` reports
a pending one (`pending`).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from pipeline.core import storage
from pipeline.core.commit import read_all, substitute
from pipeline.core.records import Article, Paragraph, Reject, SourceVersion, arrow_schema
from pipeline.core.workdir import Workdir

log = logging.getLogger(__name__)

STAGE = "parse"
# (table, the column naming the article, its record, its files, the name prefix of a new file), published
# in this order: an article's row changes after its paragraphs and versions. Rejects: parse's own files;
# record_id is a version key or a PMCID, matched by the part before the dot.
TABLES = (("paragraphs", "article_id", Paragraph, "*.parquet", "part"),
          ("versions", "pmcid", SourceVersion, "*.parquet", "part"),
          ("rejects", "record_id", Reject, f"{STAGE}-*.parquet", STAGE),
          ("articles", "pmcid", Article, "*.parquet", "part"))


def _journal(workdir: Workdir) -> storage.Location:
    return workdir.state("parse-update")


def staging(workdir: Workdir, stamp: str) -> Workdir:
    return Workdir(workdir.root / "_staging" / f"parse-u{stamp}")


def pending(workdir: Workdir) -> dict[str, Any] | None:
    """The journal of an update that did not end, or None."""
    loc = _journal(workdir)
    try:
        return json.loads(loc.read_text())
    except FileNotFoundError:
        return None
    except ValueError:
        return {"phase": "unreadable", "stamp": None}


def _write(workdir: Workdir, stamp: str, phase: str) -> None:
    _journal(workdir).write_text(json.dumps(
        {"stamp": stamp, "phase": phase, "at": datetime.now(UTC).isoformat(timespec="seconds")}))


def begin(workdir: Workdir, stamp: str) -> Workdir:
    """Open an update: the journal first (so a kill from here on is seen), then an empty staging folder."""
    _write(workdir, stamp, "staging")
    out = staging(workdir, stamp)
    out.root.rmtree()
    return out


def publish(workdir: Workdir, stamp: str, affected: set[str]) -> dict[str, int]:
    """Record the affected PMCIDs beside the staged tables, mark the update `publishing`, publish, clean up."""
    staged = staging(workdir, stamp)
    ids = pa.table({"pmcid": pa.array(sorted(affected), pa.string())})
    storage.write_parquet(ids, staged.root / "affected.parquet", compression="zstd")
    _write(workdir, stamp, "publishing")
    counts = _publish(workdir, stamp)
    _close(workdir, stamp)
    return counts


def _publish(workdir: Workdir, stamp: str) -> dict[str, int]:
    staged = staging(workdir, stamp)
    affected = set(storage.read_parquet(staged.root / "affected.parquet").column("pmcid").to_pylist())
    total = {"files_rewritten": 0, "files_removed": 0, "rows_dropped": 0, "rows_added": 0, "split_keys": 0}
    for table, column, record, pattern, name in TABLES:
        rows = read_all(staged.table(table).glob(pattern), arrow_schema(record))
        counts = substitute(workdir.table(table).glob(pattern), column, affected, rows,
                            workdir.table(table) / f"{name}-u{stamp}-new.parquet", prefix=table == "rejects")
        for k, v in counts.items():
            total[k] += v
        if counts["split_keys"]:
            log.warning("parse --update: %d articles had rows in several %s files; their old rows were removed "
                        "from the other files first (never shown twice)", counts["split_keys"], table)
    for f in staged.table("tombstones").glob("*.parquet"):  # one file, under a name of the update's own
        (workdir.table("tombstones") / f.name).write_bytes(f.read_bytes())
    return total


def _close(workdir: Workdir, stamp: str) -> None:
    _write(workdir, stamp, "published")
    staging(workdir, stamp).root.rmtree()
    _journal(workdir).unlink()


def _staged(workdir: Workdir) -> list[storage.Location]:
    """Every update's staging folder in W/_staging (one listing)."""
    root = workdir.root / "_staging"
    if not (root.is_remote or root.is_dir()):
        return []
    return [e for e in root.iterdir() if e.name.startswith("parse-u")]


def finish_pending(workdir: Workdir) -> str | None:
    """Finish what a killed update left (see the module's doc); returns what was done, or None."""
    j = pending(workdir)
    if j is None:
        discard(workdir)  # staging folders no journal names: a run killed while removing one
        return None
    stamp, phase = j.get("stamp"), j.get("phase")
    if phase == "publishing" and stamp:
        log.warning("parse --update: the update of %s was killed while publishing; finishing it first", stamp)
        _publish(workdir, stamp)
        _close(workdir, stamp)
        return f"finished publishing the update of {stamp}"
    if phase == "published" and stamp:
        _close(workdir, stamp)
        return None
    log.warning("parse --update: the update of %s was killed while parsing; its staged output is discarded", stamp)
    discard(workdir)
    return f"discarded the unpublished update of {stamp}"


def discard(workdir: Workdir) -> None:
    """Remove a pending update's staging folders and journal (a full parse rebuilds every table)."""
    for folder in _staged(workdir):
        log.info("parse --update: removing %s, left by an update that will not be finished", folder)
        folder.rmtree()
    _journal(workdir).unlink()
