"""What an engine costs on the demo's Beam stages: the parse of the embedded sample (examples/jats) and the
propagate of its paragraphs, on the in-process runner and on each installed engine (Prism, Flink), in
the same run. Each stage runs as a user runs it (`python -m pipeline.cli STAGE ... --preset NAME`, a fresh
process, so start-up is included); wall time and CPU time (the command and everything it started: the
Prism binary, the Flink JVM, SDK workers) are reported as ratios to the in-process runner, and as the
seconds an engine adds.

    .venv/bin/python bench/bench_engines.py --rounds 3
    .venv/bin/python bench/bench_engines.py --rounds 1 --stages parse      # smoke

An engine `make install` could not provide is skipped with what is missing (beam_runners/engines.py).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from beam_runners import engines  # noqa: E402

ENGINES = {"in-process": ([], lambda: None), "prism": (["--preset", "prism"], engines.missing_prism),
           "flink-local": (["--preset", "flink-local"], engines.missing_flink_job_server)}
EXAMPLES = REPO / "examples" / "jats"
TRAIN = ["--max-length", "64", "--max-steps", "4", "--epochs", "1", "--batch-size", "8",
         "--validation-fraction", "0.3", "--seed", "3"]


def cli(*args: str) -> tuple[float, float]:
    """Run `pmc-curate ARGS` in a fresh process; (wall s, CPU s of it and all it started)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=REPO, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise SystemExit(f"pmc-curate {' '.join(args)} failed:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def trained_workdir(root: Path) -> Path:
    """W with the sample's paragraphs and a small trained student (propagate's input)."""
    from pipeline.core.workdir import Workdir
    from pipeline.teacher.rules import sample_paragraphs, write_workdir

    ps = sample_paragraphs(EXAMPLES)
    write_workdir(Workdir.of(root), ps, ps[::2])
    cli("train", "--workdir", str(root), *TRAIN)
    return root


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="runs per stage and engine (the median is reported)")
    ap.add_argument("--stages", nargs="*", choices=["parse", "propagate"], default=["parse", "propagate"])
    ap.add_argument("--engines", nargs="*", choices=list(ENGINES), default=list(ENGINES))
    ap.add_argument("--out", default=str(REPO / "bench" / "out" / "engines.json"))
    args = ap.parse_args(argv)
    load0 = os.getloadavg()
    print(f"load average {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}, {os.cpu_count()} cores, {args.rounds} rounds")
    ready = {}
    for name in ["in-process", *(e for e in args.engines if e != "in-process")]:
        why = ENGINES[name][1]()
        if why:
            print(f"{name}: skipped: {why}")
        else:
            ready[name] = ENGINES[name][0]
    tmp = Path(tempfile.mkdtemp(prefix="bench-engines-"))
    results: dict[str, dict[str, dict[str, float]]] = {}
    try:
        model_w = trained_workdir(tmp / "trained") if "propagate" in args.stages else None
        for stage in args.stages:
            results[stage] = {}
            for name, preset in ready.items():
                walls, cpus = [], []
                for i in range(args.rounds):
                    w = tmp / f"{stage}-{name}-{i}"
                    if stage == "parse":
                        wall, cpu = cli("parse", str(EXAMPLES), "--workdir", str(w), *preset)
                    else:
                        shutil.copytree(model_w, w)
                        wall, cpu = cli("propagate", "--workdir", str(w), "--full", "--batch-size", "8", *preset)
                    walls.append(wall)
                    cpus.append(cpu)
                results[stage][name] = {"wall_s": statistics.median(walls), "cpu_s": statistics.median(cpus)}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n{'stage':<10} {'engine':<12} {'wall s':>8} {'cpu s':>8} {'wall ratio':>11} {'cpu ratio':>10} {'adds s':>8}")
    for stage, by_engine in results.items():
        ref = by_engine["in-process"]
        for name, r in by_engine.items():
            r["wall_ratio"] = round(r["wall_s"] / ref["wall_s"], 2)
            r["cpu_ratio"] = round(r["cpu_s"] / ref["cpu_s"], 2)
            r["adds_wall_s"] = round(r["wall_s"] - ref["wall_s"], 2)
            print(f"{stage:<10} {name:<12} {r['wall_s']:>8.2f} {r['cpu_s']:>8.2f} {r['wall_ratio']:>11.2f} "
                  f"{r['cpu_ratio']:>10.2f} {r['adds_wall_s']:>8.2f}")
    load1 = os.getloadavg()
    print(f"load average at the end {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"load_average_start": load0, "load_average_end": load1,
                                          "cores": os.cpu_count(), "rounds": args.rounds, "results": results},
                                         indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
