"""Enumerate a generated S3 Inventory of N article versions (default 8M, the live bucket's size) and choose
versions, on one core: time and peak memory of each phase, each in a fresh process.

    .venv/bin/python bench/bench_inventory.py [--rows 8000000] [--parts 8] [--multi 0.1]

Phase `enumerate`: every csv.gz part streamed through `pmc_cloud.iter_part` (what each ReadInventoryPart
element does; Beam runs parts in parallel, this is one core doing all of them). Phase `choose`: the
versions grouped by PMCID (what Beam's GroupByKey hands ChooseVersion; here an in-memory dict of ints)
and `pmc_cloud.choose_version` run on every group, with synthetic JSON flags (1 in 1000 retracted,
1 in 200 newest versions closed). Peak memory is the process's max RSS (includes the interpreter, ~60 MB).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import gzip
import io
import multiprocessing as mp
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadavg import load_line


def generate(root: Path, rows: int, parts: int, multi: float) -> list[Path]:
    """`rows` versions over `parts` csv.gz parts: PMC ids from 1e7, every 1/multi-th article with 2 versions."""
    paths = [root / f"part-{i:03d}.csv.gz" for i in range(parts)]
    with contextlib.ExitStack() as stack:
        outs = [stack.enter_context(gzip.open(p, "wt", compresslevel=1, newline="")) for p in paths]
        writers = [csv.writer(o, quoting=csv.QUOTE_ALL, lineterminator="\n") for o in outs]
        every = max(1, round(1 / multi)) if multi > 0 else 0
        n, pmcid = 0, 10_000_000
        while n < rows:
            nv = 2 if every and pmcid % every == 0 else 1
            for v in range(1, nv + 1):
                if n >= rows:
                    break
                writers[n % parts].writerow(["pmc-oa-opendata", f"metadata/PMC{pmcid}.{v}.json",
                                             "2026-01-08T11:47:59.000Z", f"{(pmcid * 31 + v):032x}"])
                n += 1
            pmcid += 1
    return paths


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
    args = ap.parse_args()
    print(load_line(), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        paths = generate(Path(tmp), args.rows, args.parts, args.multi)
        size = sum(p.stat().st_size for p in paths)
        print(f"generated {args.rows} rows in {args.parts} parts ({size / 2**20:.0f} MiB gzip) "
              f"in {time.perf_counter() - t0:.0f} s")
        ctx = mp.get_context("spawn")
        for fn in (_enumerate, _choose):
            q = ctx.Queue()
            proc = ctx.Process(target=fn, args=([str(p) for p in paths], q))
            proc.start()
            name, n, wall, cpu, rss = q.get()
            proc.join()
            print(f"{name:9s} {n:>9d} {'versions' if name == 'enumerate' else 'chosen'}  wall {wall:6.1f} s  "
                  f"cpu {cpu:6.1f} s  {args.rows / wall / 1e3:6.0f}k rows/s  peak RSS {rss:6.0f} MiB")


if __name__ == "__main__":
    io.DEFAULT_BUFFER_SIZE = 2**20
    main()
