"""`pmc-curate parse` of a PMC Cloud layout from local files vs through an S3 server: objects/s.

    .venv/bin/python bench/bench_parse_remote.py [--copies 4] [--rounds 3] [--multi] [--out bench/out/parse_remote.json]

1. Builds a PMC Cloud mirror (s3://pmc-oa-opendata's layout) from the real sample
   ../shared/data/pmc-oa-sample with the tests' helper `tests/pmc_cloud_mirror.py`: `build_mirror`
   (the sample's 83 articles as 86 versions, with its special cases: two versions, a retracted one, a
   manuscript, closed ones, a bad JSON, a prefix without XML, an MD5 mismatch, a retraction notice),
   plus `--copies - 1` replicas of every sample article under new PMCIDs (`LayoutWriter.version`, the
   same XML bytes, version 1, open access, the license the XML states), and one newer inventory day
   (`LayoutWriter.inventory`) that indexes every metadata/*.json, so the parse reads one inventory part.
2. Starts moto's S3 server on 127.0.0.1 in a thread of this process (tests/servers.py's `start_s3`,
   the settings in the environment with `S3Server.use()`) and uploads the mirror key for key into the
   public bucket name `pmc-oa-opendata` (`tests.pmc_cloud_mirror.upload`, public-read), which the
   storage layer reads with unsigned requests, as the real bucket; see tests/test_parse_pmc_cloud.py
   test_public_bucket_through_s3_server_anonymously.
3. Runs the real parse stage, `pipeline.cli.main(["parse", SRC, "--workdir", W, *beam_flags])`, with
   SRC = the local mirror directory and SRC = s3://pmc-oa-opendata/, alternating (the order flips each
   round), a fresh local work directory each time. Configurations: `in-process` (DirectRunner, one
   worker, in this process) and, with `--multi`, `multi-processing`
   (`--direct_num_workers=2 --direct_running_mode=multi_processing`). Every run's articles,
   paragraphs, tokens, rejects and version outcomes must equal the first local run's (asserted).
4. A fetch-only pass: the objects the parse fetched, read sequentially through `pipeline.storage`
   with the parse's own calls (JSON: `Location.read_bytes()`; XML: `Location.info()` then
   `read_bytes()`), local vs S3: the per-object cost of the storage path without Beam and parsing.

Measured per S3 run, server side (moto runs in threads of this process; bench/bench_remote.py's
`ServerMeter`): requests by kind (tests/servers.py's counter, split by a classifying wrapper), bytes
sent, and server CPU (`time.thread_time()` around every request the server thread handles). The
objects counted are the server's GETs of `*.xml` (XML objects fetched, then parsed) and of `*.json`
(version metadata read); the local runs read the same objects (same index, same code path, same
outputs). Results: a Markdown table on stdout and JSON in bench/out/ (gitignored). os.getloadavg()
is recorded before and after every run.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import platform
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

from bench_remote import ServerMeter, delta  # noqa: E402

from pipeline.core import storage  # noqa: E402
from tests.pmc_cloud_mirror import BUCKET, LayoutWriter, _pmcid, build_mirror, upload  # noqa: E402
from tests.servers import start_s3  # noqa: E402

SAMPLE = REPO.parent / "shared" / "data" / "pmc-oa-sample"
NEW_DAY = "2026-01-09"  # after tests/pmc_cloud_mirror.py's DAY2: the newest manifest, the one the parse reads
CONFIGS = {"in-process": [], "multi-processing": ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]}
COPY_BASE = 50_000_000  # replica PMCIDs: PMC5<copy:02><index:05>, clear of the sample's and the notice's


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# ------------------------------------------------------------------------------------------ mirror


def make_mirror(root: Path, copies: int) -> dict[str, Any]:
    m = build_mirror(SAMPLE, root)
    files = {_pmcid(p.name): p for p in SAMPLE.iterdir() if p.suffix in (".xml", ".nxml")}
    w = LayoutWriter(root)
    n = 0
    for c in range(1, copies):
        for i, pmcid in enumerate(m.pmcids):
            xml = files[pmcid].read_bytes()
            lic = m.xml_license.get(pmcid)
            w.version(f"PMC{COPY_BASE + c * 100_000 + i}", 1, xml,
                      license_code=lic if lic and lic.startswith("CC") else None)
            n += 1
    manifest = w.inventory(NEW_DAY)
    objs = [p for p in root.rglob("*") if p.is_file()]
    return {"sample_articles": len(m.pmcids), "replica_versions": n, "manifest": manifest,
            "objects": len(objs), "mb": round(sum(p.stat().st_size for p in objs) / 2**20, 2)}


# -------------------------------------------------------------------------------------------- runs


def outputs(work: Path) -> dict[str, Any]:
    s = json.loads((work / "_stages" / "parse.json").read_text())
    return {k: s.get(k) for k in ("articles", "paragraphs", "tokens", "rejects", "versions")}


def parse_once(src: str, work: Path, flags: list[str]) -> dict[str, Any]:
    from pipeline.cli import main

    storage.reset()  # no filesystem (or cached listing) carried from the previous run
    la0 = load()
    c0, t0 = time.process_time(), time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        rc = main(["parse", src, "--workdir", str(work), *flags])
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if rc != 0:
        raise RuntimeError(f"pmc-curate parse {src} exited {rc}")
    return {"wall_s": round(wall, 3), "process_cpu_s": round(cpu, 3), "load_before": la0, "load_after": load(),
            "out": outputs(work)}


def fetched(trace: list[tuple[str, str, str]], root: Path) -> dict[str, list[str]]:
    """Keys the server answered a GET for, by object kind (the trace holds every request of one run;
    a GET of a key the layout lacks, the prefix without XML, is not a fetched object)."""
    keys: dict[str, list[str]] = {"xml": [], "json": [], "other": []}
    for kind, path, _ in trace:
        if not kind.startswith("GET"):
            continue
        key = path.split("/", 2)[2] if path.count("/") >= 2 else path
        kind_ = "xml" if key.endswith(".xml") else "json" if key.endswith(".json") and key.split("/")[0] != "inventory-reports" else "other"
        if (root / key).is_file():
            keys[kind_].append(key)
    return keys


def fetch_only(root: str, xml: list[str], js: list[str], meter: ServerMeter | None = None) -> dict[str, Any]:
    """The parse's own storage calls for the same objects, sequentially, without Beam or parsing."""
    from pipeline.core.storage import Location

    storage.reset()
    base = Location(root)
    snap = meter.snapshot if meter is not None else dict
    s0 = snap()
    t0 = time.perf_counter()
    nb = 0
    for k in js:
        nb += len((base / k).read_bytes())
    t1 = time.perf_counter()
    for k in xml:  # as FetchXml reads since 34dccdc: one ranged GET up to --max-file-mb (default 64 MB)
        with contextlib.suppress(FileNotFoundError):  # the layout's prefix without XML
            nb += len((base / k).read_bytes(limit=64 * 2**20))
    t2 = time.perf_counter()
    res = {"json_s": round(t1 - t0, 3), "xml_s": round(t2 - t1, 3), "bytes": nb,
           "ms_per_json": round(1000 * (t1 - t0) / max(len(js), 1), 3),
           "ms_per_xml": round(1000 * (t2 - t1) / max(len(xml), 1), 3)}
    if meter is not None:
        s1 = snap()
        res["server"] = delta(s0, s1)
    if base.is_remote:  # the parts of one object's cost: one HEAD alone, one whole-object GET alone
        fs = storage.filesystem(root)
        paths = [f"{BUCKET}/{k}" for k in xml + js]
        t0 = time.perf_counter()
        for p in paths:
            fs.info(p)
        t1 = time.perf_counter()
        s2 = snap()
        for p in paths:
            fs.cat_file(p, max_concurrency=1)  # one GET, no HEAD (s3fs HEADs first for its concurrent path)
        t2 = time.perf_counter()
        res["ms_per_head"] = round(1000 * (t1 - t0) / len(paths), 3)
        res["ms_per_single_get"] = round(1000 * (t2 - t1) / len(paths), 3)
        if meter is not None:
            res["server_head"], res["server_get"] = delta(s1, s2), delta(s2, snap())
    return res


# -------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--copies", type=int, default=4, help="copies of the sample's articles (1 = the mirror alone)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds per configuration (each: one local, one S3 run)")
    ap.add_argument("--multi", action="store_true", help="also the 2-worker multi_processing DirectRunner")
    ap.add_argument("--only-multi", action="store_true", help="only the multi_processing configuration")
    ap.add_argument("--out", default=str(REPO / "bench" / "out" / "parse_remote.json"))
    ap.add_argument("--tmp", default=None, help="scratch directory (default: a new one in $TMPDIR, removed after)")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    for name in ("apache_beam", "pipeline", "botocore", "s3fs", "werkzeug"):
        logging.getLogger(name).setLevel(logging.ERROR)
    configs = ["multi-processing"] if a.only_multi else (["in-process", "multi-processing"] if a.multi else ["in-process"])

    tmp = Path(a.tmp or tempfile.mkdtemp(prefix="bench-parse-remote-"))
    result: dict[str, Any] = {"argv": sys.argv[1:], "python": platform.python_version(), "cpus": os.cpu_count(),
                              "load_start": load(), "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    server = start_s3()
    try:
        root = tmp / "mirror" / BUCKET
        t0 = time.perf_counter()
        result["mirror"] = make_mirror(root, a.copies)
        result["mirror"]["build_s"] = round(time.perf_counter() - t0, 2)
        meter = ServerMeter(server)
        with server.use():
            client = server.client()
            with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
                client.create_bucket(Bucket=BUCKET)
            t0 = time.perf_counter()
            upload(root, client, BUCKET)
            result["mirror"]["upload_s"] = round(time.perf_counter() - t0, 2)
            print(f"mirror: {result['mirror']}  load {load()}", file=sys.stderr)
            src = {"local": str(root), "s3": f"s3://{BUCKET}/"}
            runs: list[dict[str, Any]] = []
            ref: dict[str, Any] | None = None
            keys: dict[str, list[str]] | None = None
            for cfg in configs:
                for r in range(a.rounds):
                    for where in (("local", "s3") if r % 2 == 0 else ("s3", "local")):
                        work = tmp / f"w-{cfg}-{r}-{where}"
                        meter.trace = []
                        before = meter.snapshot()
                        run = parse_once(src[where], work, CONFIGS[cfg])
                        run.update(config=cfg, round=r, source=where)
                        if where == "s3":
                            run["server"] = delta(before, meter.snapshot())
                            k = fetched(meter.trace, root)
                            run["objects"] = {n: len(v) for n, v in k.items()}
                            if keys is None:
                                keys = k
                            assert run["objects"] == {n: len(v) for n, v in keys.items()}, run["objects"]
                        if ref is None:
                            ref = run["out"]
                        assert run["out"] == ref, (where, cfg, run["out"], ref)  # a broken run cannot be timed
                        shutil.rmtree(work, ignore_errors=True)
                        runs.append(run)
                        print(f"{cfg} round {r} {where}: {run['wall_s']} s, load {run['load_after']}", file=sys.stderr)
            assert keys is not None and ref is not None
            result["runs"], result["outputs"] = runs, ref
            result["fetch_only"] = {"local": fetch_only(src["local"], keys["xml"], keys["json"]),
                                    "s3": fetch_only(src["s3"], keys["xml"], keys["json"], meter)}
            result["fetched"] = {n: len(v) for n, v in keys.items()}
            result["fetched_mb"] = {n: round(sum((root / k).stat().st_size for k in v) / 2**20, 2)
                                    for n, v in keys.items() if n != "other"}
        result["load_end"] = load()
    finally:
        server._server.stop()
        if a.tmp is None:
            shutil.rmtree(tmp, ignore_errors=True)

    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    summary = report(result, configs)
    result["summary"] = summary
    Path(a.out).write_text(json.dumps(result, indent=2))
    print(f"\nJSON: {a.out}")
    return 0


def report(res: dict[str, Any], configs: list[str]) -> list[dict[str, Any]]:
    f = res["fetched"]
    n_xml, n_json = f["xml"], f["json"]
    arts, paras = res["outputs"]["articles"], res["outputs"]["paragraphs"]
    s3run = next(r for r in res["runs"] if r["source"] == "s3")
    mb = s3run["server"]["mb_out"]  # everything the server sent in one parse (XML + JSON + inventory)
    print(f"\nmirror: {res['mirror']['objects']} objects, {res['mirror']['mb']} MB; per parse: {n_xml} XML + "
          f"{n_json} JSON objects fetched ({f['other']} other GETs: manifest, inventory part), "
          f"{arts} articles, {paras} paragraphs; {mb} MB sent by the server\n")
    print("| configuration | source | best s | median s | XML objects/s (best / median) | +JSON objects/s (best) "
          "| articles/s (best) | MB/s (best) | S3 / local (best / median) | requests per parse | of which | server CPU s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    out = []
    for cfg in configs:
        walls = {w: [r["wall_s"] for r in res["runs"] if r["config"] == cfg and r["source"] == w] for w in ("local", "s3")}
        best = {w: min(v) for w, v in walls.items()}
        med = {w: statistics.median(v) for w, v in walls.items()}
        srv = [r["server"] for r in res["runs"] if r["config"] == cfg and r["source"] == "s3"]
        for w in ("local", "s3"):
            row = {"config": cfg, "source": w, "walls": walls[w], "best_s": best[w], "median_s": med[w],
                   "xml_per_s_best": n_xml / best[w], "xml_per_s_median": n_xml / med[w],
                   "objects_per_s_best": (n_xml + n_json) / best[w], "articles_per_s_best": arts / best[w],
                   "mb_per_s_best": mb / best[w]}
            ratio = req = kinds = cpu = ""
            if w == "s3":
                row["ratio_best"], row["ratio_median"] = best["s3"] / best["local"], med["s3"] / med["local"]
                ratio = f"{row['ratio_best']:.2f}x / {row['ratio_median']:.2f}x"
                req = str(srv[0]["requests"])
                kinds = ", ".join(f"{v} {k}" for k, v in sorted(srv[0]["kinds"].items(), key=lambda kv: -kv[1]))
                row["server_cpu_s"] = [s["server_cpu_s"] for s in srv]
                cpu = " / ".join(str(c) for c in row["server_cpu_s"])
            print(f"| {cfg} | {w} | {best[w]:.2f} | {med[w]:.2f} | {row['xml_per_s_best']:.1f} / "
                  f"{row['xml_per_s_median']:.1f} | {row['objects_per_s_best']:.1f} | {row['articles_per_s_best']:.1f} "
                  f"| {row['mb_per_s_best']:.2f} | {ratio} | {req} | {kinds} | {cpu} |")
            out.append(row)
    fo = res["fetch_only"]
    print(f"\nfetch only (sequential, the parse's storage calls, {n_json} JSON + {n_xml} XML): "
          + "; ".join(f"{w}: {v['ms_per_json']} ms/JSON, {v['ms_per_xml']} ms/XML "
                      f"({(n_xml + n_json) / (v['json_s'] + v['xml_s']):.0f} objects/s)" for w, v in fo.items()))
    if "ms_per_head" in fo["s3"]:
        def per(d: dict[str, Any]) -> str:
            return (f"{d['requests']} requests ({d['kinds']}), server CPU {d['server_cpu_s']} s = "
                    f"{1000 * d['server_cpu_s'] / max(d['requests'], 1):.2f} ms/request")

        print(f"S3 fetch-only read path: {per(fo['s3']['server'])}")
        print(f"S3 request alone, same objects: {fo['s3']['ms_per_head']} ms per HEAD (fs.info; {per(fo['s3']['server_head'])}), "
              f"{fo['s3']['ms_per_single_get']} ms per whole-object GET without HEAD "
              f"(fs.cat_file(max_concurrency=1); {per(fo['s3']['server_get'])})")
    print(f"S3 requests per object fetched: {s3run['server']['requests'] / (n_xml + n_json):.2f} "
          f"({s3run['server']['kinds']})")
    loads = [r["load_after"] for r in res["runs"]]
    print(f"load average: start {res['load_start']}, during runs 1-min {min(x[0] for x in loads)}-"
          f"{max(x[0] for x in loads)}, end {res['load_end']}")
    return out


if __name__ == "__main__":
    sys.exit(main())
