"""Run every benchmark of bench/ one after the other (`make bench`), or each at tiny sizes (`--smoke`).

    .venv/bin/python bench/run_all.py            # the figures of docs/benchmarks.md (an hour or more on 2 cores)
    .venv/bin/python bench/run_all.py --smoke    # every benchmark at tiny sizes, a few minutes
    .venv/bin/python bench/run_all.py --only parse propagate

The smoke run exists so a change that breaks a benchmark (a schema, a renamed function) fails the test
suite (tests/test_bench_smoke.py) instead of rotting until someone needs the figures. Its numbers mean
nothing. Each benchmark prints the load average it ran under; a figure measured with the load above the
number of cores is not comparable to one measured idle.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from loadavg import load_line  # noqa: E402

# name -> (script, arguments of the full run, arguments of the smoke run; {tmp}: a scratch folder, so a
# smoke run never overwrites the results of a full one)
BENCHMARKS: dict[str, tuple[str, list[str], list[str]]] = {
    "parse": ("bench_parse.py", ["--rounds", "9"], ["--rounds", "1"]),
    "parse-remote": ("bench_parse_remote.py", ["--copies", "4", "--rounds", "3", "--multi"],
                     ["--copies", "1", "--rounds", "1", "--out", "{tmp}/parse_remote.json"]),
    "inventory": ("bench_inventory.py", [], ["--rows", "20000", "--parts", "2"]),
    "latency": ("bench_latency.py", ["--copies", "3", "--concurrency", "1", "4", "16", "32", "--rounds", "2"],
                ["--smoke", "--out", "{tmp}/latency.json"]),
    "annotate": ("bench_annotate.py", ["--seconds", "3", "--beam"],
                 ["--seconds", "0.2", "--concurrency", "1", "8", "--latency", "0.01"]),
    "propagate": ("bench_propagate.py", ["--threads", "2", "--limit", "300", "--max-length", "512", "--batch-size", "32"],
                  ["--smoke"]),
    "cpu-paths": ("exp_cpu_paths.py", ["--limit", "150", "--max-length", "512", "--batch-size", "1", "--threads", "1",
                                       "--rounds", "2", "--profile"],
                  ["--smoke", "--profile"]),
    "dedup": ("bench_dedup.py", ["--paragraphs", "1000000"], ["--smoke"]),
    "shards": ("bench_shards.py", [], ["--smoke"]),
    "scaling": ("bench_scaling.py", ["parse", "--factors", "1,10", "--workers", "1,2"], ["parse", "--smoke"]),
    "curate": ("bench_curate.py", ["--paragraphs", "2000000", "--threads", "2"],
               ["--paragraphs", "3000", "--threads", "1", "--recipes", "be-base", "be-all", "--engines", "duckdb",
                "--out", "{tmp}/curate"]),
    "remote": ("bench_remote.py", ["--paragraphs", "1000000", "--scale", "50000"],
               ["--paragraphs", "2000", "--annotations", "200", "--scale", "0", "--out", "{tmp}/remote",
                "--json", "{tmp}/remote.json"]),
    "engines": ("bench_engines.py", ["--rounds", "3"],
                ["--rounds", "1", "--stages", "parse", "--out", "{tmp}/engines.json"]),
}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: check that every benchmark still runs")
    ap.add_argument("--only", nargs="*", choices=list(BENCHMARKS), default=list(BENCHMARKS))
    args = ap.parse_args(argv)
    failed = []
    tmp = tempfile.mkdtemp(prefix="pmc-curate-bench-")
    for name in args.only:
        script, full, smoke = BENCHMARKS[name]
        cmd = [sys.executable, str(BENCH / script), *(a.replace("{tmp}", tmp) for a in (smoke if args.smoke else full))]
        print(f"== {name}: {' '.join(cmd[1:])} ({load_line()})", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call(cmd)
        print(f"== {name}: exit {rc} in {time.perf_counter() - t0:.1f} s", flush=True)
        if rc:
            failed.append(name)
    shutil.rmtree(tmp, ignore_errors=True)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
