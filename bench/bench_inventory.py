"""Enumerate a generated S3 Inventory of N article versions (default 8M, the live bucket's size) and choose
versions, on one core: time and peak memory of each phase, each in a fresh process.

    .venv/bin/python bench/bench_inventory.py [--rows 8000000] [--parts 8] [--multi 0.1] [--phases ...]

Phase `enumerate`: every csv.gz part streamed through `pmc_cloud.iter_part` (what each ReadInventoryPart
element does; Beam runs parts in parallel, this is one core doing all of them). Phase `choose`: the
versions grouped by PMCID (what Beam's GroupByKey hands ChooseVersion; here an in-memory dict of ints)
and `pmc_cloud.choose_version` run on every group, with synthetic JSON flags (1 in 1000 retracted,
1 in 200 newest versions closed). Peak memory is the process's max RSS (includes the interpreter, ~60 MB).

Phases `diff-memory` and `diff-duckdb`: `parse --update`'s step 1 against a generated W/versions (the same
versions, 1 in 100 with another ETag, 1 in 150 of the inventory's not in it: new, and 1,000 versions only
in it: removed), in 8 Parquet files. `diff-memory` is how the update diffed until issue 20 (W/versions
read into a dict key -> (pmcid, etag), every inventory Entry in a list, `update.diff`); `diff-duckdb` is
`inventory_diff.diff_inventory`, what it runs now (DuckDB with a 256 MB limit, spilling to a temporary
folder). Both must find the same changes (the counts are compared).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import gzip
import io
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadavg import load_line


def generate(root: Path, rows: int, parts: int, multi: float, state: bool = False) -> list[Path]:
    """`rows` versions over `parts` csv.gz parts: PMC ids from 1e7, every 1/multi-th article with 2 versions.
    With `state`, also W/versions under root/w/versions/ (see the module's docstring)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    paths = [root / f"part-{i:03d}.csv.gz" for i in range(parts)]
    (root / "w" / "versions").mkdir(parents=True, exist_ok=True)
    cols = ("key", "pmcid", "version", "etag", "snapshot", "outcome")
    schema = pa.schema([(c, pa.int64() if c == "version" else pa.string()) for c in cols])
    with contextlib.ExitStack() as stack:
        outs = [stack.enter_context(gzip.open(p, "wt", compresslevel=1, newline="")) for p in paths]
        writers = [csv.writer(o, quoting=csv.QUOTE_ALL, lineterminator="\n") for o in outs]
        pqw = [stack.enter_context(pq.ParquetWriter(root / "w" / "versions" / f"part-{i:03d}.parquet", schema))
               for i in range(parts)] if state else []
        buf: list[dict[str, list]] = [{c: [] for c in cols} for _ in pqw]

        def put(i: int, key: str, pmcid: int, v: int, etag: str) -> None:
            b = buf[i]
            for c, x in zip(cols, (key, f"PMC{pmcid}", v, etag, "2026-01-07", "parsed"), strict=True):
                b[c].append(x)
            if len(b["key"]) >= 200_000:
                pqw[i].write_table(pa.table(b, schema=schema))
                for x in b.values():
                    x.clear()

        every = max(1, round(1 / multi)) if multi > 0 else 0
        n, pmcid = 0, 10_000_000
        while n < rows:
            nv = 2 if every and pmcid % every == 0 else 1
            for v in range(1, nv + 1):
                if n >= rows:
                    break
                etag = f"{(pmcid * 31 + v):032x}"
                writers[n % parts].writerow(["pmc-oa-opendata", f"metadata/PMC{pmcid}.{v}.json",
                                             "2026-01-08T11:47:59.000Z", etag])
                if state and n % 150 != 7:  # else new
                    put(n % parts, f"PMC{pmcid}.{v}", pmcid, v, etag if n % 100 else "0" * 32)  # changed
                n += 1
            pmcid += 1
        for k in range(1000 if state else 0):  # removed: only in W/versions
            put(k % parts, f"PMC{pmcid + k}.1", pmcid + k, 1, "f" * 32)
        for i, b in enumerate(buf):
            if b["key"]:
                pqw[i].write_table(pa.table(b, schema=schema))
    return paths


def _diff_memory(paths: list[str], q: mp.Queue) -> None:
    """The update's diff before issue 20: W/versions in a dict, the inventory's entries in a list."""
    import pyarrow.parquet as pq

    from pipeline.sources.pmc_cloud import iter_part
    from pipeline.stages.parse.update import diff

    t0, c0 = time.perf_counter(), time.process_time()
    state: dict[str, tuple[str, str | None]] = {}
    for f in sorted(Path(paths[0]).parent.joinpath("w", "versions").glob("*.parquet")):
        t = pq.read_table(f, columns=["key", "pmcid", "etag"])
        for k, p, e in zip(*(t.column(c).to_pylist() for c in ("key", "pmcid", "etag")), strict=True):
            state[k] = (p, e)
    entries = []
    for p in paths:
        with open(p, "rb") as f:
            entries.extend(iter_part(f))
    d = diff(state, entries)
    q.put(("diff-memory", d.counts(), time.perf_counter() - t0, time.process_time() - c0,
           resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


MEMORY_LIMIT = "256MB"  # --memory-limit: DuckDB's, for diff-duckdb


def _diff_duckdb(paths: list[str], q: mp.Queue, memory_limit: str = MEMORY_LIMIT) -> None:
    """The update's diff now: inventory_diff.diff_inventory (DuckDB, spilling to disk)."""
    from pipeline.core.workdir import Workdir
    from pipeline.sources.pmc_cloud import Index
    from pipeline.stages.parse.inventory_diff import diff_inventory

    root = Path(paths[0]).parent
    t0, c0 = time.perf_counter(), time.process_time()
    d = diff_inventory(Workdir.of(str(root / "w")), Index(str(root), "2026-01-08",
                                                          parts=tuple(Path(p).name for p in paths)),
                       tmp_dir=str(root), memory_limit=memory_limit)
    q.put(("diff-duckdb", d.delta.counts(), time.perf_counter() - t0, time.process_time() - c0,
           resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def _enumerate(paths: list[str], q: mp.Queue) -> None:
    from pipeline.sources.pmc_cloud import iter_part

    t0, c0 = time.perf_counter(), time.process_time()
    n = 0
    for p in paths:
        with open(p, "rb") as f:
            for _ in iter_part(f):
                n += 1
    q.put(("enumerate", n, time.perf_counter() - t0, time.process_time() - c0,
           resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def _choose(paths: list[str], q: mp.Queue) -> None:
    from pipeline.sources.pmc_cloud import Entry, VersionMeta, choose_version, iter_part

    t0, c0 = time.perf_counter(), time.process_time()
    groups: dict[int, int | tuple[int, ...]] = {}  # pmcid -> its version, or versions (compact: most have one)
    for p in paths:
        with open(p, "rb") as f:
            for e in iter_part(f):
                k = int(e.pmcid[3:])
                old = groups.get(k)
                groups[k] = e.version if old is None else (*(old if isinstance(old, tuple) else (old,)), e.version)
    chosen = 0
    for pmcid, vs in groups.items():
        versions = vs if isinstance(vs, tuple) else (vs,)
        top = max(versions)
        metas = [VersionMeta(Entry(f"PMC{pmcid}.{v}", f"PMC{pmcid}", v, f"metadata/PMC{pmcid}.{v}.json"),
                             is_open_access=not (v == top and v > 1 and pmcid % 200 == 0), is_manuscript=False,
                             is_retracted=pmcid % 1000 == 7, license_code="CC BY", xml_url=None)
                 for v in versions]
        if choose_version(metas).chosen is not None:
            chosen += 1
    q.put(("choose", chosen, time.perf_counter() - t0, time.process_time() - c0,
           resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=8_000_000)
    ap.add_argument("--parts", type=int, default=8)
    ap.add_argument("--multi", type=float, default=0.1, help="share of articles with a second version")
    ap.add_argument("--phases", nargs="+", choices=list(PHASES), default=list(PHASES))
    ap.add_argument("--memory-limit", default=MEMORY_LIMIT, help="DuckDB's memory limit in diff-duckdb")
    args = ap.parse_args()
    print(load_line(), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        paths = generate(Path(tmp), args.rows, args.parts, args.multi,
                         state=any(p.startswith("diff") for p in args.phases))
        size = sum(p.stat().st_size for p in paths)
        print(f"generated {args.rows} rows in {args.parts} parts ({size / 2**20:.0f} MiB gzip) "
              f"in {time.perf_counter() - t0:.0f} s")
        ctx = mp.get_context("spawn")
        counts = {}
        for fn in (PHASES[p] for p in args.phases):
            q = ctx.Queue()
            extra = (args.memory_limit,) if fn is _diff_duckdb else ()
            proc = ctx.Process(target=fn, args=([str(p) for p in paths], q, *extra))
            proc.start()
            name, n, wall, cpu, rss = q.get()
            proc.join()
            if name.startswith("diff"):
                counts[name] = n
                n = sum(n[k] for k in ("new", "changed", "removed"))
            what = {"enumerate": "versions", "choose": "chosen"}.get(name, "changes")
            print(f"{name:11s} {n:>9d} {what}  wall {wall:6.1f} s  cpu {cpu:6.1f} s  "
                  f"{args.rows / wall / 1e3:6.0f}k rows/s  peak RSS {rss:6.0f} MiB  (load {os.getloadavg()[0]:.2f})")
        if len(counts) == 2:
            a, b = counts.values()
            assert a == b, counts  # both diffs find the same changes
            print(f"diff counts: {a}")


PHASES = {"enumerate": _enumerate, "choose": _choose, "diff-memory": _diff_memory, "diff-duckdb": _diff_duckdb}


if __name__ == "__main__":
    io.DEFAULT_BUFFER_SIZE = 2**20
    main()
