"""Scaling of the Beam stages on this machine: workers (1, 2, ...) and corpus size (1x, 10x, ...).

    python bench/bench_scaling.py parse --factors 10 --workers 1,2                # 1 vs 2 worker processes
    python bench/bench_scaling.py parse --factors 1,3,10,30 --workers 0          # time vs corpus size
    python bench/bench_scaling.py propagate --factors 1 --workers 1,2 --model-workdir W  # needs W/model

CPU seconds (user + system of the command and the worker processes it waited for) give a per-core
rate that a busy machine distorts far less than wall time: the cost model (docs/scaling.md) uses it.
Each measurement runs the real command (`pmc-curate parse|propagate ...`) in a fresh process, the way a
user runs it, on a corpus made by bench/make_corpus.py from the real sample. Reported per run: wall
time of the command, the stage's own pipeline time where it records one, throughput, and the 1-minute
load average before the run (the machine is shared: a load above the core count distorts the figures).
Workers: `0` = DirectRunner in-process (one thread, no worker processes); `N` >= 1 =
`--direct_running_mode=multi_processing --direct_num_workers=N`. Speed-up is over the first setting
listed; scaling efficiency = speed-up / (N / N_first), so `--workers 1,2` compares like with like.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
import make_corpus  # noqa: E402

SOURCE = REPO.parent / "shared" / "data" / "pmc-oa-sample"


def corpus(root: Path, factor: int) -> Path:
    """The corpus of `factor` copies of the sample, generated once and reused."""
    out = root / f"corpus-{factor}x"
    done = out / ".complete"
    if not done.exists():
        shutil.rmtree(out, ignore_errors=True)
        make_corpus.write(SOURCE, out, factor)
        done.write_text("ok")
    return out


def runner_flags(workers: int) -> list[str]:
    if workers == 0:
        return ["--runner=DirectRunner", "--direct_running_mode=in_memory"]
    return ["--runner=DirectRunner", "--direct_running_mode=multi_processing", f"--direct_num_workers={workers}"]


def _run(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the command and the worker processes it waited for)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{r.stderr[-3000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def bench_parse(root: Path, factor: int, workers: int) -> dict:
    src = corpus(root, factor)
    files = [p for p in src.iterdir() if p.suffix in (".xml", ".nxml")]
    mb = sum(p.stat().st_size for p in files) / 2**20
    wd = root / f"w-parse-{factor}x-{workers}w"
    shutil.rmtree(wd, ignore_errors=True)
    load = os.getloadavg()[0]
    wall, cpu = _run([sys.executable, "-m", "pipeline.cli", "parse", str(src), "--workdir", str(wd), *runner_flags(workers)])
    marker = json.loads((wd / "_stages" / "parse.json").read_text())
    stage_s = float(marker.get("seconds") or wall)
    return {"stage": "parse", "factor": factor, "workers": workers, "files": len(files), "mb": round(mb, 1),
            "paragraphs": marker.get("paragraphs"), "wall_s": round(wall, 2), "stage_s": round(stage_s, 2),
            "files_per_s": round(len(files) / stage_s, 1), "mb_per_s": round(mb / stage_s, 2),
            "cpu_s": round(cpu, 1), "mb_per_cpu_s": round(mb / cpu, 2), "load_before": round(load, 2)}


def bench_propagate(root: Path, factor: int, workers: int, model_workdir: Path) -> dict:
    """Propagate over the paragraphs of the factor-x corpus with the student trained in model_workdir."""
    parsed = root / f"w-parse-{factor}x-0w"
    if not (parsed / "paragraphs").is_dir():
        bench_parse(root, factor, 0)
    wd = root / f"w-prop-{factor}x-{workers}w"
    shutil.rmtree(wd, ignore_errors=True)
    wd.mkdir(parents=True)
    for table in ("articles", "paragraphs"):
        shutil.copytree(parsed / table, wd / table)
    load = os.getloadavg()[0]
    wall, cpu = _run([sys.executable, "-m", "pipeline.cli", "propagate", "--workdir", str(wd),
                 "--model", str(model_workdir / "model"), "--device", "cpu", *runner_flags(workers)])
    import pyarrow.parquet as pq

    rows = sum(pq.read_metadata(p).num_rows for p in (wd / "labels").glob("*.parquet"))
    return {"stage": "propagate", "factor": factor, "workers": workers, "paragraphs": rows,
            "wall_s": round(wall, 2), "paragraphs_per_s": round(rows / wall, 1), "cpu_s": round(cpu, 1),
            "paragraphs_per_cpu_s": round(rows / cpu, 1), "load_before": round(load, 2)}


def load_line() -> str:
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    return (f"cores: {os.cpu_count()}, load average now: {load:.2f}"
            + (" ** above the core count: wall times are not comparable to an idle run **" if load > cores else ""))


def smoke() -> int:
    """The parse measurement on 3 real articles, in process: checks the script and the CLI it drives still agree."""
    import tempfile

    global SOURCE
    print(load_line())
    with tempfile.TemporaryDirectory(prefix="pmc-curate-scaling-smoke-") as tmp:
        src = Path(tmp) / "source"
        src.mkdir()
        for f in sorted(p for p in SOURCE.iterdir() if p.suffix in (".xml", ".nxml"))[:3]:
            shutil.copy(f, src / f.name)
        SOURCE = src
        r = bench_parse(Path(tmp), 1, 0)
        print(json.dumps(r))
        if not r.get("paragraphs"):
            raise SystemExit("smoke: parse wrote no paragraphs")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("stage", choices=["parse", "propagate"])
    ap.add_argument("--factors", default="1,10")
    ap.add_argument("--workers", default="1,2", help="0 = in-process; N = N worker processes")
    ap.add_argument("--repeat", type=int, default=1, help="runs per setting; the fastest is kept")
    ap.add_argument("--root", type=Path, default=Path("/tmp/pmc-curate-bench"))
    ap.add_argument("--model-workdir", type=Path, help="propagate: a work directory holding model/")
    ap.add_argument("--out", type=Path, help="append results as JSON lines here")
    ap.add_argument("--smoke", action="store_true",
                    help="parse only: 3 articles, in process, in a temporary root (seconds; the figures mean nothing)")
    args = ap.parse_args(argv)
    if args.smoke:
        return smoke()
    args.root.mkdir(parents=True, exist_ok=True)
    results = []
    print(load_line())
    for factor in [int(f) for f in args.factors.split(",")]:
        base: float | None = None
        worker_list = [int(w) for w in args.workers.split(",")]
        for workers in worker_list:
            runs = []
            for _ in range(args.repeat):
                if args.stage == "parse":
                    runs.append(bench_parse(args.root, factor, workers))
                else:
                    if not args.model_workdir:
                        raise SystemExit("propagate needs --model-workdir (a work directory with a trained model/)")
                    runs.append(bench_propagate(args.root, factor, workers, args.model_workdir))
            key = "stage_s" if args.stage == "parse" else "wall_s"
            r = min(runs, key=lambda x: x[key])
            if base is None:
                base = r[key]
            r["speedup"] = round(base / r[key], 2)
            r["efficiency"] = round(r["speedup"] / (max(workers, 1) / max(worker_list[0], 1)), 2)
            results.append(r)
            print(json.dumps(r), flush=True)
            if args.out:
                with args.out.open("a") as f:
                    f.write(json.dumps(r) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
