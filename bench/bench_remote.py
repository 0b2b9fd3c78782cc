"""Local vs S3 work directories: the same data, the same operations, in one process.

    .venv/bin/python bench/bench_remote.py [--paragraphs 1000000] [--scale 50000] [--out /tmp/bench-remote]

1. Generates one synthetic labelled corpus (bench/bench_curate.py's generator: W/articles,
   W/paragraphs in 4 files, W/labels) plus W/annotations (one file, random teacher labels for
   `--annotations` paragraph ids), in a local work directory, and uploads the very same files to
   `s3://bench/w` on moto's S3 server (tests/servers.py's `start_s3`, a thread of this process).
2. For each operation, runs it on the local work directory, then on the S3 one:
   - `sample`: `pmc-curate sample --size 10000` (DuckDB);
   - `curate be-base`, `curate be-all`: `pmc-curate curate --recipe R --threads 2 --memory-limit 2GB`
     (DuckDB; the subset Parquet + JSONL.zst export + manifest + card, as a user runs it);
   - `train data loading`: `classifiers.data.load_examples(Workdir.of(W))` (DuckDB join of the
     annotations to the paragraphs' text);
   - `propagate read+write`: propagate's own Beam I/O without the model (DirectRunner, in process):
     `ReadFromParquet(W/paragraphs/*.parquet, columns=propagate.INPUT_COLUMNS)` -> a constant
     Label-shaped dict per paragraph -> `WriteToParquet(W/labels_io/labels, schema=Label)`, the same
     transforms and arguments as `pipeline.propagate.Propagate`. Written to W/labels_io, not W/labels,
     so curate's input stays the generated labels.
3. Access scales with files, not rows: the remote operations again on two small corpora with the same
   files (4 paragraph files, one articles, one labels, one annotations file) and N and 4N paragraphs
   (`--scale`), beside the main corpus (same files again, `--paragraphs` rows).

Measured per remote operation, from the server side (moto runs in threads of this process):
- requests: what the server answered (tests/servers.py's counting WSGI wrapper, `S3Server.requests()`),
  split by kind (LIST, HEAD, ranged GET, whole GET, PUT, multipart, DELETE) and bytes sent/received,
  from a classifying wrapper installed here around the same WSGI app;
- server CPU: `time.thread_time()` around every `handle_one_request` of the server's request handler,
  i.e. the CPU of the server thread while it parses a request, runs moto and writes the response
  (thread CPU time does not advance while the thread waits for the socket or the GIL). The client's
  CPU is the process CPU (`time.process_time`: every thread, DuckDB's and Beam's included) minus that.
Results: a Markdown table on stdout and JSON in bench/out/ (gitignored).
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
from bench_curate import generate  # noqa: E402

from pipeline.core import labels as L  # noqa: E402
from pipeline.core import storage  # noqa: E402
from pipeline.core.records import Annotation, arrow_schema  # noqa: E402
from pipeline.core.workdir import Workdir  # noqa: E402
from tests.servers import S3Server, start_s3  # noqa: E402

TABLES = ("articles", "paragraphs", "labels", "annotations")


# ------------------------------------------------------------------------------------ server meter


class ServerMeter:
    """CPU time of the server's request threads, and requests by kind with their bytes."""

    def __init__(self, server: S3Server) -> None:
        self.server = server
        self.lock = threading.Lock()
        self.cpu = 0.0
        self.kinds: collections.Counter[str] = collections.Counter()
        self.bytes_out = 0
        self.bytes_in = 0
        self.trace: list[tuple[str, str, str]] | None = None  # --trace: every request of every operation
        srv = server._server._server  # werkzeug's ThreadedWSGIServer inside moto's ThreadedMotoServer
        meter = self

        class TimedHandler(srv.RequestHandlerClass):  # type: ignore[misc,name-defined]
            def handle_one_request(self) -> None:
                t0 = time.thread_time()
                try:
                    super().handle_one_request()
                finally:
                    dt = time.thread_time() - t0
                    with meter.lock:
                        meter.cpu += dt

        srv.RequestHandlerClass = TimedHandler
        app = srv.app  # tests/servers.py's counting wrapper around moto's app

        def classify(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
            kind = _kind(environ)
            n_in = int(environ.get("CONTENT_LENGTH") or 0)

            def sr(status: str, headers: list[tuple[str, str]], *a: Any) -> Any:
                n = next((int(v) for k, v in headers if k.lower() == "content-length" and v.isdigit()), 0)
                with meter.lock:
                    meter.bytes_out += n if environ["REQUEST_METHOD"] != "HEAD" else 0
                return start_response(status, headers, *a)

            with meter.lock:
                meter.kinds[kind] += 1
                meter.bytes_in += n_in
                if meter.trace is not None:
                    meter.trace.append((kind, environ.get("PATH_INFO"), environ.get("HTTP_RANGE")))
            return app(environ, sr)

        srv.app = classify

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {"requests": self.server.requests(), "cpu": self.cpu, "kinds": dict(self.kinds),
                    "bytes_out": self.bytes_out, "bytes_in": self.bytes_in}  # fmt: skip


def _kind(environ: dict[str, Any]) -> str:
    method = environ["REQUEST_METHOD"]
    query = environ.get("QUERY_STRING", "")
    has_key = "/" in environ.get("PATH_INFO", "/").strip("/")
    if method == "GET":
        if not has_key:
            return "LIST"
        return "GET range" if environ.get("HTTP_RANGE") else "GET"
    if method == "PUT":
        return "PUT part" if "partNumber" in query else ("COPY" if environ.get("HTTP_X_AMZ_COPY_SOURCE") else "PUT")
    if method == "POST":
        return "DELETE" if "delete" in query else "multipart"
    return method  # HEAD, DELETE


def delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    kinds = {k: after["kinds"].get(k, 0) - before["kinds"].get(k, 0) for k in after["kinds"]}
    return {"requests": after["requests"] - before["requests"], "server_cpu_s": round(after["cpu"] - before["cpu"], 2),
            "kinds": {k: v for k, v in sorted(kinds.items()) if v},
            "mb_out": round((after["bytes_out"] - before["bytes_out"]) / 2**20, 1),
            "mb_in": round((after["bytes_in"] - before["bytes_in"]) / 2**20, 1)}  # fmt: skip


# ------------------------------------------------------------------------------------------ corpus


def write_annotations(root: Path, n: int, seed: int = 1) -> int:
    """W/annotations: random teacher labels for n paragraph ids (one file, the Annotation schema)."""
    import pyarrow.parquet as pq

    ids = pq.read_table(root / "paragraphs", columns=["id", "article_id"])
    rng = np.random.default_rng(seed)
    take = np.sort(rng.choice(ids.num_rows, size=min(n, ids.num_rows), replace=False))
    t = ids.take(pa.array(take))
    k = t.num_rows
    table = pa.table({
        "id": t["id"], "article_id": t["article_id"],
        "document_type": np.array(L.DOCUMENT_TYPES)[rng.integers(0, len(L.DOCUMENT_TYPES), k)],
        "domain": np.array(L.DOMAINS)[rng.integers(0, len(L.DOMAINS), k)],
        "educational_score": rng.integers(int(L.SCORE_MIN), int(L.SCORE_MAX) + 1, k),
        "teacher_model": np.full(k, "synthetic"), "prompt_version": np.full(k, "v1"), "prompt_hash": np.full(k, ""),
        "input_hash": np.full(k, ""), "prompt_tokens": np.zeros(k, np.int64), "completion_tokens": np.zeros(k, np.int64),
        "latency_s": np.zeros(k), "attempts": np.ones(k, np.int64),
    }).cast(arrow_schema(Annotation))  # fmt: skip
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    pq.write_table(table, root / "annotations" / "part-00000.parquet", compression="zstd")
    return k


def make_corpus(root: Path, n: int, n_annotations: int) -> dict[str, Any]:
    info = generate(root, n)
    info["annotations"] = write_annotations(root, n_annotations)
    info["files"] = {t: len(list((root / t).glob("*.parquet"))) for t in TABLES}
    info["mb"] = {t: round(sum(f.stat().st_size for f in (root / t).glob("*.parquet")) / 2**20, 1) for t in TABLES}
    return info


def upload(root: Path, remote: str) -> None:
    wd = Workdir.of(remote)
    for t in TABLES:
        wd.table(t).upload_from(root / t)


# -------------------------------------------------------------------------------------- operations


def _cli(argv: list[str]) -> dict[str, Any]:
    from pipeline.cli import main

    rc = main(argv)
    if rc != 0:
        raise RuntimeError(f"pmc-curate {' '.join(argv)} exited {rc}")
    return {}


def op_sample(w: str) -> dict[str, Any]:
    return _cli(["sample", "--workdir", w, "--size", "10000"])


def op_curate(recipe: str) -> Callable[[str], dict[str, Any]]:
    def run(w: str) -> dict[str, Any]:
        _cli(["curate", "--workdir", w, "--recipe", recipe, "--threads", "2", "--memory-limit", "2GB"])
        m = json.loads((storage.Location(w) / "subsets" / recipe / "manifest.json").read_text())
        return {"rows_out": m["stats"]["rows"]}

    return run


def op_train_load(w: str) -> dict[str, Any]:
    from classifiers.data import load_examples

    return {"examples": len(load_examples(Workdir.of(w)))}


def _label_row(p: dict[str, Any]) -> dict[str, Any]:
    return {"id": p["id"], "article_id": p["article_id"], "document_type": L.DOCUMENT_TYPES[1],
            "domain": L.DOMAINS[1], "educational_score": 3.0, "document_type_scores": [0.1, 0.7, 0.1, 0.1],
            "domain_scores": [0.2, 0.6, 0.2], "model_id": "io-only", "truncated": len(p["text"] or "") > 4000,
            "input_hash": None}  # fmt: skip


def op_propagate_io(w: str) -> dict[str, Any]:
    import apache_beam as beam
    from apache_beam.io.parquetio import ReadFromParquet, WriteToParquet

    from beam_runners.options import pipeline_options
    from pipeline.core.records import Label
    from pipeline.stages.propagate.transforms import INPUT_COLUMNS

    wd = Workdir.of(w)
    out = wd.table("labels_io")
    out.rmtree()
    with beam.Pipeline(options=pipeline_options([])) as p:
        _ = (p | "ReadParagraphs" >> ReadFromParquet(wd.glob("paragraphs"), columns=INPUT_COLUMNS)
             | "Label" >> beam.Map(_label_row)
             | "WriteLabels" >> WriteToParquet(str(out / "labels"), schema=arrow_schema(Label),
                                               file_name_suffix=".parquet"))  # fmt: skip
    return {"files_out": len(out.glob("*.parquet"))}


OPERATIONS: dict[str, Callable[[str], dict[str, Any]]] = {
    "sample": op_sample,
    "curate be-base": op_curate("be-base"),
    "curate be-all": op_curate("be-all"),
    "train data loading": op_train_load,
    "propagate read+write": op_propagate_io,
}
SCALE_OPS = ("sample", "train data loading", "propagate read+write")


def measure(name: str, fn: Callable[[str], dict[str, Any]], w: str, meter: ServerMeter) -> dict[str, Any]:
    n_trace = len(meter.trace) if meter.trace is not None else 0
    s0, c0, t0 = meter.snapshot(), time.process_time(), time.perf_counter()
    r: dict[str, Any] = {"op": name, "workdir": w}
    try:
        r.update(fn(w))
        r["ok"] = True
    except Exception as e:  # recorded and reported, not worked around
        r["ok"] = False
        r["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
        r["traceback"] = traceback.format_exc()[-3000:]
    r["wall_s"] = round(time.perf_counter() - t0, 2)
    cpu = time.process_time() - c0
    d = delta(s0, meter.snapshot())
    r.update(d)
    r["process_cpu_s"] = round(cpu, 2)
    r["client_cpu_s"] = round(cpu - d["server_cpu_s"], 2)
    if meter.trace is not None:
        r["trace"] = meter.trace[n_trace:n_trace + 500]
    print(json.dumps({k: v for k, v in r.items() if k not in ("traceback", "trace")}), flush=True)
    if not r["ok"]:
        print(r["traceback"], file=sys.stderr, flush=True)
    return r


# ------------------------------------------------------------------------------------------- main


def _kinds(k: dict[str, int]) -> str:
    return ", ".join(f"{v} {n}" for n, v in sorted(k.items(), key=lambda x: -x[1]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--paragraphs", type=int, default=1_000_000)
    ap.add_argument("--annotations", type=int, default=20_000, help="annotated paragraphs in the main corpus")
    ap.add_argument("--scale", type=int, default=50_000, help="N of the N vs 4N corpora (0: skip)")
    ap.add_argument("--ops", nargs="*", default=list(OPERATIONS))
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "bench-remote")
    ap.add_argument("--json", type=Path, default=REPO / "bench" / "out" / "remote.json")
    ap.add_argument("--curate-retries", type=int, default=1, help="re-run a failed remote curate at the end")
    ap.add_argument("--trace", action="store_true", help="keep each operation's first 500 requests in the JSON")
    args = ap.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per request otherwise

    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    os.environ["PMC_CURATE_LOCAL_CACHE"] = str(args.out / "local-cache")
    t0 = time.perf_counter()
    local = args.out / "w"
    info = make_corpus(local, args.paragraphs, args.annotations)
    info["generate_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps({"corpus": info}), flush=True)

    server = start_s3()
    meter = ServerMeter(server)
    if args.trace:
        meter.trace = []
    results: list[dict[str, Any]] = []
    scale: list[dict[str, Any]] = []
    with server.use():
        bucket = server.bucket("bench")
        remote = f"s3://{bucket}/w"
        s0, t0 = meter.snapshot(), time.perf_counter()
        upload(local, remote)
        up = delta(s0, meter.snapshot()) | {"wall_s": round(time.perf_counter() - t0, 1)}
        print(json.dumps({"upload": up}), flush=True)

        for name in args.ops:
            fn = OPERATIONS[name]
            results.append(measure(name, fn, str(local), meter) | {"where": "local"})
            results.append(measure(name, fn, remote, meter) | {"where": "s3"})

        for _ in range(args.curate_retries):  # curate on remote work directories is being finished elsewhere
            for i, r in enumerate(results):
                if r["where"] == "s3" and not r["ok"] and r["op"].startswith("curate"):
                    print(f"retrying {r['op']} on s3", flush=True)
                    results[i] = measure(r["op"], OPERATIONS[r["op"]], remote, meter) | {"where": "s3", "retried": True,
                                                                                        "first_error": r["error"]}  # fmt: skip

        if args.scale:
            for n in (args.scale, 4 * args.scale):
                root = args.out / f"scale-{n}"
                sinfo = make_corpus(root, n, max(1, n * args.annotations // args.paragraphs))
                rw = f"s3://{bucket}/scale-{n}"
                upload(root, rw)
                for name in SCALE_OPS:
                    if name in args.ops:
                        scale.append(measure(name, OPERATIONS[name], rw, meter) | {"paragraphs": sinfo["paragraphs"]})
                shutil.rmtree(root, ignore_errors=True)
        server._server.stop()

    # ---- report
    load = os.getloadavg()
    by = {(r["op"], r["where"]): r for r in results}
    print(f"\ncorpus: {info['paragraphs']:,} paragraphs, {info['articles']:,} articles, files {info['files']}, "
          f"MB {info['mb']}; upload {up['requests']} requests, {up['wall_s']} s")  # fmt: skip
    print("\n| operation | local s | S3 s | S3 / local | requests | of which | MB from server | MB to server "
          "| server CPU s | server CPU / S3 wall | client CPU s (local / S3) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in args.ops:
        lo, re = by[(name, "local")], by[(name, "s3")]
        if not re["ok"] or not lo["ok"]:
            err = re.get("error") if not re["ok"] else lo.get("error")
            print(f"| {name} | {lo['wall_s']} | failed | - | {re['requests']} | {err} | | | | | |")
            continue
        print(f"| {name} | {lo['wall_s']} | {re['wall_s']} | {re['wall_s'] / lo['wall_s']:.2f}x | {re['requests']} "
              f"| {_kinds(re['kinds'])} | {re['mb_out']:,} | {re['mb_in']:,} | {re['server_cpu_s']} "
              f"| {re['server_cpu_s'] / re['wall_s']:.0%} | {lo['client_cpu_s']} / {re['client_cpu_s']} |")  # fmt: skip
    if scale:
        main_rows = {r["op"]: r for r in results if r["where"] == "s3"}
        print("\nrequests on S3 by corpus size (same files: 4 paragraph files, 1 articles, 1 labels, 1 annotations)")
        sizes = sorted({r["paragraphs"] for r in scale}) + [info["paragraphs"]]
        print("\n| operation | " + " | ".join(f"{n:,} paragraphs" for n in sizes) + " |")
        print("|---|" + "---|" * len(sizes))
        for name in SCALE_OPS:
            cells = [next((f"{r['requests']} ({_kinds(r['kinds'])}; {r['mb_out']} MB)" for r in scale
                           if r["op"] == name and r["paragraphs"] == n), "-") for n in sizes[:-1]]  # fmt: skip
            m = main_rows.get(name)
            cells.append(f"{m['requests']} ({_kinds(m['kinds'])}; {m['mb_out']} MB)" if m else "-")
            print(f"| {name} | " + " | ".join(cells) + " |")
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load avg at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}")  # fmt: skip
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"corpus": info, "upload": up, "results": results, "scale": scale,
                                     "loadavg": load, "argv": sys.argv}, indent=2))  # fmt: skip
    print(f"-> {args.json}")
    shutil.rmtree(args.out, ignore_errors=True)
    return 0 if all(r["ok"] for r in results + scale) else 1


if __name__ == "__main__":
    sys.exit(main())
