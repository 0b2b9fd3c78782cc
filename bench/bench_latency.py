"""The parse of a PMC Cloud mirror through an S3 server with a network round trip added: one read at a time
versus `--fetch-concurrency N` in flight.

    .venv/bin/python bench/bench_latency.py [--copies 2] [--delays 0 20 80] [--concurrency 1 16] [--rounds 2]
    .venv/bin/python bench/bench_latency.py --smoke        # a few articles, 0 and 20 ms: checks it runs

1. A mirror of s3://pmc-oa-opendata built from the real sample (bench/bench_parse_remote.py's `make_mirror`:
   tests/pmc_cloud_mirror.py's mirror plus `--copies - 1` replicas under new PMCIDs, one inventory part).
2. moto's S3 server in its own process, the mirror uploaded into the public bucket name (read unsigned).
3. One proxy process per delay: a TCP proxy on 127.0.0.1 in front of the S3 server that holds every HTTP
   request `delay` ms before passing it on (a request is the first bytes from the client after the
   server last spoke, so keep-alive connections pay it per request, as a round trip does) and counts them.
4. `pmc-curate parse s3://pmc-oa-opendata/ --workdir W --fetch-concurrency N` in this process (the
   DirectRunner, one worker), with AWS_ENDPOINT_URL pointing at the proxy of each delay; configurations
   alternate in order each round; every run's outputs must equal the first one's. A parse of the local
   directory is the reference without any network.

Reported: wall seconds (best and median of the rounds), articles/s, requests per run, the ratio to the
same concurrency at 0 ms, and the target: at 80 ms, the concurrent parse within 1.5x of the 0 ms parse
(both with the largest --concurrency given). The load average is printed before and after every run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import logging
import multiprocessing as mp
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

TARGET = 1.5  # at 80 ms, concurrent parse time / 0 ms parse time


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# ------------------------------------------------------------------------------------- the servers


def _moto(port: int, ready: Any, stop: Any) -> None:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    ready.set()
    stop.wait()
    server.stop()


def _proxy(port: int, upstream: int, delay_s: float, requests: Any, ready: Any) -> None:
    """A TCP proxy 127.0.0.1:port -> 127.0.0.1:upstream holding each request `delay_s` before passing it on."""

    async def serve(cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        try:
            ur, uw = await asyncio.open_connection("127.0.0.1", upstream)
        except OSError:
            cw.close()
            return
        state = {"server_spoke": True}  # the first bytes of a connection start a request

        async def up() -> None:
            while data := await cr.read(65536):
                if state["server_spoke"]:
                    state["server_spoke"] = False
                    with requests.get_lock():
                        requests.value += 1
                    if delay_s:
                        await asyncio.sleep(delay_s)
                uw.write(data)
                await uw.drain()
            uw.close()

        async def down() -> None:
            while data := await ur.read(65536):
                state["server_spoke"] = True
                cw.write(data)
                await cw.drain()
            cw.close()

        with contextlib.suppress(Exception):
            await asyncio.gather(up(), down())

    async def main() -> None:
        srv = await asyncio.start_server(serve, "127.0.0.1", port)
        ready.set()
        async with srv:
            await srv.serve_forever()

    asyncio.run(main())


class Proxy:
    def __init__(self, ctx: Any, upstream: int, delay_ms: float) -> None:
        from tests.servers import free_port

        self.port, self.delay_ms = free_port(), delay_ms
        self.requests = ctx.Value("q", 0)
        ready = ctx.Event()
        self.proc = ctx.Process(target=_proxy, args=(self.port, upstream, delay_ms / 1000, self.requests, ready),
                                daemon=True)
        self.proc.start()
        if not ready.wait(60):
            raise RuntimeError("the proxy did not start")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"


# ---------------------------------------------------------------------------------------------- runs


def parse_once(src: str, work: Path, flags: list[str], env: dict[str, str]) -> dict[str, Any]:
    from pipeline.cli import main
    from tests.servers import env_vars

    la0 = load()
    with env_vars(env), contextlib.redirect_stdout(io.StringIO()):
        t0 = time.perf_counter()
        rc = main(["parse", src, "--workdir", str(work), *flags])
        wall = time.perf_counter() - t0
    if rc != 0:
        raise RuntimeError(f"pmc-curate parse {src} exited {rc}")
    s = json.loads((work / "_stages" / "parse.json").read_text())
    out = {k: s.get(k) for k in ("articles", "paragraphs", "tokens", "rejects", "versions")}
    return {"wall_s": round(wall, 3), "load_before": la0, "load_after": load(), "out": out}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--copies", type=int, default=2, help="copies of the sample's articles (1 = the mirror alone)")
    ap.add_argument("--delays", type=float, nargs="+", default=[0, 20, 80], help="added ms per request")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 16], help="--fetch-concurrency values")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--smoke", action="store_true", help="20 PMCIDs, 0 and 20 ms, 1 and 4 in flight, one round")
    ap.add_argument("--out", default=str(REPO / "bench" / "out" / "latency.json"))
    a = ap.parse_args(argv)
    if a.smoke:
        a.copies, a.delays, a.concurrency, a.rounds = 1, [0, 20], [1, 4], 1
    logging.basicConfig(level=logging.WARNING)
    for name in ("apache_beam", "pipeline", "botocore", "s3fs", "werkzeug"):
        logging.getLogger(name).setLevel(logging.ERROR)

    from bench_parse_remote import make_mirror

    from tests.pmc_cloud_mirror import BUCKET, upload
    from tests.servers import free_port

    ctx = mp.get_context("spawn")
    tmp = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    res: dict[str, Any] = {"argv": sys.argv[1:], "cpus": os.cpu_count(), "load_start": load(),
                           "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    port = free_port()
    ready, stop = ctx.Event(), ctx.Event()
    moto = ctx.Process(target=_moto, args=(port, ready, stop), daemon=True)
    moto.start()
    proxies: dict[float, Proxy] = {}
    try:
        if not ready.wait(120):
            raise RuntimeError("moto did not start")
        root = tmp / "mirror" / BUCKET
        res["mirror"] = make_mirror(root, a.copies)
        creds = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
        import boto3

        client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                              aws_access_key_id="bench", aws_secret_access_key="bench")
        client.create_bucket(Bucket=BUCKET)
        upload(root, client, BUCKET)
        proxies = {d: Proxy(ctx, port, d) for d in a.delays}
        pmcids = sorted(p.name.split(".")[0] for p in root.glob("PMC*.*"))
        flags = ["--pmcids", f"{pmcids[0]}-{pmcids[25]}"] if a.smoke else []
        print(f"mirror: {res['mirror']}  load {load()}", file=sys.stderr)
        configs = [(d, c) for d in a.delays for c in a.concurrency]
        runs: list[dict[str, Any]] = []
        ref = None
        for r in range(a.rounds):
            order = [("local", 0.0, max(a.concurrency))] + [("s3", d, c) for d, c in configs]
            for where, d, c in (order if r % 2 == 0 else order[::-1]):
                work = tmp / f"w-{r}-{where}-{d}-{c}"
                if where == "local":
                    run = parse_once(str(root), work, ["--fetch-concurrency", str(c), *flags], {})
                else:
                    p = proxies[d]
                    n0 = p.requests.value
                    run = parse_once(f"s3://{BUCKET}/", work, ["--fetch-concurrency", str(c), *flags],
                                     {"AWS_ENDPOINT_URL": p.endpoint, **creds})
                    run["requests"] = p.requests.value - n0
                run.update(round=r, source=where, delay_ms=d, concurrency=c)
                ref = ref or run["out"]
                assert run["out"] == ref, (run, ref)  # a broken run cannot be timed
                shutil.rmtree(work, ignore_errors=True)
                runs.append(run)
                print(f"round {r} {where} {d:g} ms x{c}: {run['wall_s']} s, load {run['load_after']}", file=sys.stderr)
        res["runs"], res["outputs"], res["load_end"] = runs, ref, load()
    finally:
        for p in proxies.values():
            p.proc.terminate()
        stop.set()
        moto.join(10)
        shutil.rmtree(tmp, ignore_errors=True)
    res["summary"] = report(res, a)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2))
    print(f"\nJSON: {a.out}")
    return 0


def report(res: dict[str, Any], a: argparse.Namespace) -> dict[str, Any]:
    runs, arts = res["runs"], res["outputs"]["articles"]

    def walls(src: str, d: float, c: int) -> list[float]:
        return [r["wall_s"] for r in runs if r["source"] == src and r["delay_ms"] == d and r["concurrency"] == c]

    top = max(a.concurrency)
    local = walls("local", 0.0, top)
    print(f"\n{arts} articles, {res['outputs']['versions']} versions per parse; local directory (no network, "
          f"x{top}): best {min(local):.2f} s, {arts / min(local):.1f} articles/s\n")
    print("| added latency | --fetch-concurrency | best s | median s | articles/s (best) | requests | "
          "time / same concurrency at 0 ms (best) | time / local (best) |")
    print("|---|---|---|---|---|---|---|---|")
    rows = []
    for d in a.delays:
        for c in a.concurrency:
            w = walls("s3", d, c)
            base = walls("s3", a.delays[0], c)
            req = next(r["requests"] for r in runs if r["source"] == "s3" and r["delay_ms"] == d and r["concurrency"] == c)
            row = {"delay_ms": d, "concurrency": c, "best_s": min(w), "median_s": statistics.median(w),
                   "articles_per_s": arts / min(w), "requests": req, "vs_0ms": min(w) / min(base),
                   "vs_local": min(w) / min(local)}
            rows.append(row)
            print(f"| {d:g} ms | {c} | {row['best_s']:.2f} | {row['median_s']:.2f} | {row['articles_per_s']:.1f} | "
                  f"{req} | {row['vs_0ms']:.2f}x | {row['vs_local']:.2f}x |")
    out: dict[str, Any] = {"rows": rows, "local_best_s": min(local)}
    if 80.0 in a.delays and a.delays[0] == 0:
        ratio = min(walls("s3", 80.0, top)) / min(walls("s3", 0.0, top))
        out["target"] = {"ratio_80ms_vs_0ms": ratio, "met": ratio <= TARGET}
        print(f"\ntarget: at 80 ms, x{top} in flight takes {ratio:.2f}x the 0 ms parse "
              f"({'met' if ratio <= TARGET else 'NOT met'}: <= {TARGET}x)")
    la = [r["load_after"][0] for r in runs]
    print(f"load average: start {res['load_start']}, 1-min after runs {min(la)}-{max(la)}, end {res['load_end']} "
          f"({res['cpus']} cores)")
    return out


if __name__ == "__main__":
    sys.exit(main())
