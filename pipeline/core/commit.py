"""Publish a keyed change set into a table's part files, so that a glob over the folder, read at any moment,
shows each key's old rows or its new rows: never both, and never neither.

Object stores have no rename and no multi-object transaction, so a table cannot switch from one set of
files to another at once. What they do have is the atomic replacement of one object (a PUT, or a
multipart upload, is visible only once complete); locally, write-then-rename is the same. So instead of
writing new files beside the old ones and trimming the old ones afterwards (a kill between the two shows
every changed key twice), `substitute` rewrites each part file whole, with the changed keys' new rows
in place of their old ones, in one write:

- a key that some file already holds gets its new rows in that file (its *home*: the first file that
  holds it), in the same write that removes its old rows;
- a key no file holds (new) goes to `new_file`; a key with no new rows (removed) is only dropped;
- files that only lose rows are written first, homes last: a key whose old rows were split over several
  files (which the writers here avoid, see the parse stage) can be briefly incomplete, never doubled.

Re-running the same substitution after a kill at any point converges to the same files: a file already
rewritten holds the new rows, which are dropped and added again; `new_file` is named by the caller, so
a re-run finds and rewrites it instead of adding a second copy.

Pure except for file I/O through `pipeline.core.storage`; no Beam.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.core import storage
from pipeline.core.storage import Location, read_parquet

NO_KEY = ""  # the key of a row whose key column is null: always stale, always replaced


def read_all(files: Iterable[Location], schema: pa.Schema) -> pa.Table:
    """Several part files as one table of `schema` (an empty one when there are none)."""
    parts = [read_parquet(f).select(schema.names).cast(schema) for f in files]
    return pa.concat_tables(parts) if parts else schema.empty_table()


def keys(values: pa.ChunkedArray | pa.Array, prefix: bool = False) -> list[str]:
    """The key of each row: the value itself, or (prefix) the part before the first dot ("PMC1.2" -> "PMC1");
    null -> NO_KEY."""
    out = []
    for v in values.to_pylist():
        if v is None:
            out.append(NO_KEY)
        else:
            out.append(v.split(".")[0] if prefix else v)
    return out


def substitute(files: Sequence[Location], column: str, affected: set[str], staged: pa.Table, new_file: Location,
               prefix: bool = False) -> dict[str, int]:
    """Replace the rows of the `affected` keys in these part files by `staged`'s rows of those keys.

    `files`: the table's part files now (`new_file` among them when an earlier try wrote it). `staged`: the
    new rows; only those whose key is affected are placed. Returns counts: files rewritten, files removed
    (left empty), rows dropped, rows added, keys whose old rows were split over several files.
    """
    affected = set(affected) | ({NO_KEY} if prefix else set())
    value_set = pa.array(sorted(affected), pa.string())
    holders: dict[str, list[Location]] = {}
    ordered = sorted({str(f): f for f in files}.values(), key=str)
    for f in ordered:
        ks = keys(read_parquet(f, [column]).column(column), prefix)
        for k in set(ks) & affected:
            holders.setdefault(k, []).append(f)
    staged_keys = keys(staged.column(column), prefix)
    homes: dict[str, set[str]] = {}
    for k in set(staged_keys) & affected:
        homes.setdefault(str(holders[k][0] if k in holders else new_file), set()).add(k)
    touched = {str(f): f for fs in holders.values() for f in fs}
    if str(new_file) in homes:
        touched[str(new_file)] = new_file
    counts = {"files_rewritten": 0, "files_removed": 0, "rows_dropped": 0, "rows_added": 0,
              "split_keys": sum(1 for fs in holders.values() if len(fs) > 1)}
    # Files that only lose rows first, homes last: a split key may be briefly incomplete, never doubled.
    for name in sorted(touched, key=lambda n: (n in homes, n)):
        f = touched[name]
        exists = f.exists()  # only new_file may not (yet)
        old = read_parquet(f) if exists else staged.schema.empty_table()
        old_keys = pa.array(keys(old.column(column), prefix), pa.string())
        keep = old.filter(pc.invert(pc.is_in(old_keys, value_set=value_set)))
        mine = pa.array(sorted(homes.get(name, ())), pa.string())
        add = staged.filter(pc.is_in(pa.array(staged_keys, pa.string()), value_set=mine)) if len(mine) else staged.slice(0, 0)
        counts["rows_dropped"] += old.num_rows - keep.num_rows
        counts["rows_added"] += add.num_rows
        if keep.num_rows + add.num_rows == 0:
            if exists:
                f.unlink()
                counts["files_removed"] += 1
            continue
        schema = old.schema if exists else staged.schema
        out = pa.concat_tables([keep.cast(schema), add.select(schema.names).cast(schema)])
        storage.write_parquet(out, f, compression="zstd")  # one PUT / write and rename: old or new, whole
        counts["files_rewritten"] += 1
    return counts
