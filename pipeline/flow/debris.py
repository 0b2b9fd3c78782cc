"""What killed runs leave in a work directory, collected by the next writer.

A writer holds the work directory's lease (lock.py), so no other writer is at work when it starts: what
these patterns match was left by a process that died before its own cleanup (`kill -9`, a lost machine).

    W/<folder>/beam-temp-*        Beam's temporary files of a write that never finished; they end in
                                  .parquet, so a glob over W/<table>/**/*.parquet would read them
    W/<folder>/.NAME.tmp-PID-*    a file or folder written under a temporary name (Location.write_bytes,
    W/<folder>/.NAME.old-PID-*    storage.local_staging) and the previous copy of a swapped folder
    W/.NAME.tmp-PID-*             the new folder of a table a stage was rewriting (Workdir.rewriting),
                                  or the old one it had just swapped out
    W/NAME.tmp-PID, W/NAME.old-PID   the same for Location.upload_from of a local work directory
    local cache staging/*          the local build folders of outputs uploaded to s3:// or gs://

First, what a kill left half done is finished: a folder a two-rename swap had moved aside
(`.NAME.old-PID-*`, where the system lacks an atomic exchange), NAME missing, is put back; a folder an
object-store publish was replacing (`W/<folder>/.NAME.publishing`, see `storage.publish`) is completed
from its shadow copy, which is then no longer debris.

W/_staging/ is not touched here: it belongs to a stage's journal (parse --update finishes or discards it).
"""

from __future__ import annotations

import logging
import os
import re

from pipeline.core import storage
from pipeline.core.storage import Location
from pipeline.core.workdir import TABLE_NAMES, Workdir
from pipeline.flow.lock import alive

log = logging.getLogger(__name__)

FOLDERS = (*TABLE_NAMES, "subsets", "exports", "model", "reports", "_stages")
_HIDDEN = re.compile(r"^\..+\.(?:tmp|old)-(\d+)(?:-[0-9a-f]{8})?$")
_SIBLING = re.compile(r"^[^.].*\.(?:tmp|old)-(\d+)$")
_OLD = re.compile(r"^\.(.+)\.old-(\d+)-[0-9a-f]{8}$")  # a folder swapped out by two renames (storage.publish)


def _entries(folder: Location) -> list[Location]:
    try:
        return folder.iterdir() if folder.is_remote or folder.is_dir() else []
    except (FileNotFoundError, NotADirectoryError):
        return []


def _dead_tmp(e: Location, pattern: re.Pattern[str]) -> bool:
    """A temporary name whose writer is gone (locally a live PID is still writing: this process's heartbeat)."""
    m = pattern.match(e.name)
    return bool(m) and (e.is_remote or not alive(int(m.group(1))))


def _listing(wd: Workdir) -> list[tuple[Location, list[Location]]]:
    """W, its table and output folders and each export's folder (W/exports/NAME/FORMAT), each with its
    entries: one listing a folder."""
    top = [(f, _entries(f)) for f in (wd.root, *(wd.root / n for n in FOLDERS))]
    exports = next(entries for f, entries in top if f.name == "exports")
    return top + [(e, _entries(e)) for e in exports if not e.name.startswith(".")]


def unfinished_publishes(wd: Workdir, listing: list[tuple[Location, list[Location]]] | None = None) -> list[Location]:
    """Folders whose object-store publish was killed half way (their `.NAME.publishing` journal is left)."""
    return [folder / e.name[1:-len(storage.PUBLISHING)] for folder, entries in listing or _listing(wd)
            for e in entries if e.name.startswith(".") and e.name.endswith(storage.PUBLISHING)]


def find(wd: Workdir, listing: list[tuple[Location, list[Location]]] | None = None) -> list[Location]:
    """The debris of killed runs in W."""
    (_, top), *folders = listing or _listing(wd)
    out = [e for e in top if _dead_tmp(e, _SIBLING) or _dead_tmp(e, _HIDDEN)]
    for _, entries in folders:
        out += [e for e in entries if e.name.startswith("beam-temp-") or _dead_tmp(e, _HIDDEN)]
    staging = wd.local_cache / "staging"
    if staging.is_dir():
        out += [Location(p) for p in sorted(staging.iterdir())]
    return out


def swapped_out(wd: Workdir, listing: list[tuple[Location, list[Location]]] | None = None) -> list[tuple[Location, Location]]:
    """Local folders a two-rename swap moved aside (`.NAME.old-PID-*`) and a kill kept from being replaced:
    (the folder moved aside, where it belongs), when NAME is missing and PID is gone."""
    out = []
    for folder, entries in listing or _listing(wd):
        for e in entries:
            m = _OLD.match(e.name)
            if m and not e.is_remote and not alive(int(m.group(2))) and not (folder / m.group(1)).exists():
                out.append((e, folder / m.group(1)))
    return out


def collect(wd: Workdir) -> list[str]:
    """Finish what killed runs left half done, then remove their debris; what was removed (logged)."""
    listing = _listing(wd)
    back = swapped_out(wd, listing)
    for aside, final in back:
        log.warning("putting back %s, which a killed run had moved aside to swap in its new version", final)
        os.replace(aside.local, final.local)
    finals = unfinished_publishes(wd, listing)
    for final in finals:
        log.warning("finishing the publish of %s, which a killed run left half done", final)
        storage.finish_publish(final)
    removed = []
    for loc in find(wd, _listing(wd) if finals or back else listing):  # what was finished is no longer debris
        if loc.is_file():
            loc.unlink()
        else:
            loc.rmtree()
        removed.append(str(loc))
    if removed:
        log.warning("removed %d leftover(s) of killed runs: %s", len(removed), ", ".join(removed[:5])
                    + (" ..." if len(removed) > 5 else ""))
    return removed
