"""Teacher client throughput against a local OpenAI-compatible server with fixed latency and slots.

The server (tests/fakes/openai_server.py, a separate process so its CPU is not counted as the
client's) answers every request after `--latency` seconds and serves at most `--slots` at a time:
its capacity is slots / latency requests per second. We measure, in the same run:

- baseline: the sequential one-request-at-a-time pattern (official `openai` client, a plain loop);
- our TeacherClient (AsyncOpenAI, bounded concurrency, SQLite cache commit per call, reply
  validation) at several concurrencies;
- optionally (--beam) the whole Beam stage (RunInference + Parquet writes) at one concurrency.

Reported: requests/s, its ratio to the sequential baseline and to server capacity, and the client's
CPU seconds per request (process CPU time, all threads).

    .venv/bin/python bench/bench_annotate.py [--latency 0.2 --slots 64 --concurrency 1 8 32 64 128]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import openai  # noqa: E402

from pipeline.teacher.client import TeacherClient  # noqa: E402
from pipeline.teacher.config import TeacherConfig  # noqa: E402
from pipeline.teacher.prompt import load_prompt, response_format  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadavg import load_line  # noqa: E402


def start_server(latency: float, slots: int) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.openai_server", "--latency", str(latency), "--slots", str(slots)],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    port = int(line.split()[1])
    return proc, f"http://127.0.0.1:{port}/v1"


def proc_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by another process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def items(n: int, tag: str) -> list[dict]:
    return [
        {"id": f"PMC{i}/p[0]", "article_id": f"PMC{i}", "title": "Bench article", "section_title": "Results",
         "text": f"PKEY-{tag}-{i} Mitochondrial quality control in cardiomyocytes depends on PINK1 and Parkin. " * 4}
        for i in range(n)
    ]  # fmt: skip


def sequential(url: str, n: int) -> tuple[float, float]:
    """The baseline: one request at a time, sync client, no cache."""
    prompt = load_prompt()
    client = openai.OpenAI(api_key="bench", base_url=url, max_retries=0)
    batch = items(n, "seq")
    t0, c0 = time.perf_counter(), time.process_time()
    for it in batch:
        client.chat.completions.create(
            model="bench", messages=prompt.messages(it["title"], it["section_title"], it["text"]),  # type: ignore[arg-type]
            temperature=0, max_tokens=prompt.max_tokens, response_format=response_format(),  # type: ignore[arg-type]
        )  # fmt: skip
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    client.close()
    return n / wall, cpu / n


def ours(url: str, n: int, concurrency: int) -> tuple[float, float, int]:
    prompt = load_prompt()
    with tempfile.TemporaryDirectory() as d:
        cfg = TeacherConfig(base_url=url, model="bench", cache_path=f"{d}/c.sqlite", concurrency=concurrency, progress=False)
        client = TeacherClient(cfg, prompt)
        batch = items(n, f"c{concurrency}")
        client.annotate_many(items(min(n, concurrency), f"warm{concurrency}"))  # open the connections
        t0, c0 = time.perf_counter(), time.process_time()
        out = client.annotate_many(batch)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        client.close()
    ok = sum(o.status == "annotated" for o in out)
    return n / wall, cpu / n, ok


def beam_stage(url: str, n: int, concurrency: int) -> float:
    """The whole stage (read sample Parquet, RunInference, write Parquet) through the DirectRunner."""
    from pipeline.stages.annotate.transforms import run_annotation
    from tests.annotate_helpers import make_sample

    prompt = load_prompt()
    with tempfile.TemporaryDirectory() as d:
        wd = make_sample(Path(d), [f"beam{i}" for i in range(n)])
        cfg = TeacherConfig(base_url=url, model="bench", cache_path=f"{d}/c.sqlite", concurrency=concurrency, progress=False)
        t0 = time.perf_counter()
        run_annotation(wd.glob("sample"), wd.annotations, wd.rejects, cfg, prompt, ["--runner=DirectRunner"])
        return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--slots", type=int, default=64)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 64, 128])
    ap.add_argument("--seconds", type=float, default=4.0, help="target duration of each measurement at full speed")
    ap.add_argument("--beam", action="store_true", help="also time the whole Beam stage at concurrency 64")
    args = ap.parse_args()
    print(load_line(), flush=True)
    capacity = args.slots / args.latency
    proc, url = start_server(args.latency, args.slots)
    try:
        n_seq = max(10, int(args.seconds / args.latency))
        seq_rps, seq_cpu = sequential(url, n_seq)
        print(f"server: latency {args.latency}s, {args.slots} slots -> capacity {capacity:.0f} req/s")
        print("| client | concurrency | requests | req/s | x sequential | % of capacity | client CPU ms/request | server CPU ms/request |")
        print("|---|---|---|---|---|---|---|---|")
        print(f"| sequential openai loop | 1 | {n_seq} | {seq_rps:.1f} | 1.00 | {100 * seq_rps / capacity:.1f}% | {1000 * seq_cpu:.2f} | - |")
        for c in args.concurrency:
            n = max(20, int(min(c, args.slots) / args.latency * args.seconds))
            s0 = proc_cpu_s(proc.pid)
            rps, cpu, ok = ours(url, n, c)
            server_cpu = (proc_cpu_s(proc.pid) - s0) / (n + min(n, c))  # + the warm-up requests
            assert ok == n, f"only {ok} of {n} annotated"
            print(f"| TeacherClient | {c} | {n} | {rps:.1f} | {rps / seq_rps:.2f} | {100 * rps / capacity:.1f}% | {1000 * cpu:.2f} | {1000 * server_cpu:.2f} |")
        if args.beam:
            n = int(capacity * args.seconds)
            rps = beam_stage(url, n, 64)
            print(f"| Beam stage (DirectRunner, RunInference) | 64 | {n} | {rps:.1f} | {rps / seq_rps:.2f} | {100 * rps / capacity:.1f}% | - | - |")
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
