"""Acceptance: the demo flow (examples/demo.yaml) on an s3:// work directory writes what the local run writes.

parse and propagate run on Beam's SDK worker pool in other processes (tests/worker_pool.py), the other
stages in the launcher against the same bucket. The remote run goes through the real command line,
in a subprocess, with recognisable fake secrets given both as Beam's --s3_* flags and in the standard
environment; afterwards no object in the bucket, no file of the local cache and no line of the logs
holds either secret. A shorter run on the GCS emulator checks the same for the stages that do not need
workers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.core import storage
from pipeline.core.storage import Location
from tests.conftest import EXAMPLES, REPO
from tests.fakes.openai_server import FakeOpenAIServer

TABLES = {
    "articles": "articles/*.parquet",
    "paragraphs": "paragraphs/*.parquet",
    "rejects": "rejects/*.parquet",
    "sample": "sample/*.parquet",
    "annotations": "annotations/*.parquet",
    "labels": "labels/*.parquet",
}
VOLATILE = {"latency_s"}  # measured wall time of a teacher call


def _config(tmp: Path, teacher_url: str, extra_beam: dict[str, dict[str, str]] | None = None) -> Path:
    """examples/demo.yaml with the teacher pointed at the fake OpenAI server (deterministic labels)."""
    cfg = yaml.safe_load((EXAMPLES / "demo.yaml").read_text())
    cfg["steps"]["parse"]["inputs"] = [str(EXAMPLES / "jats")]
    cfg["steps"]["decontaminate"]["benchmarks"] = [f"pubmedqa={EXAMPLES / 'benchmarks' / 'pubmedqa-example.jsonl'}"]
    cfg["steps"]["annotate"] = {"base_url": teacher_url, "model": "fake-teacher", "concurrency": 4}
    for step, beam in (extra_beam or {}).items():
        cfg["steps"][step]["beam"] = beam
    path = tmp / f"flow-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _close(a: Any, b: Any) -> bool:
    """Equal, floats within 1e-3 (CPU kernels may sum in another order under another thread count)."""
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= 1e-3
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    return a == b


def assert_same_tables(got: dict[str, list[dict[str, Any]]], want: dict[str, list[dict[str, Any]]]) -> None:
    for name, rows in want.items():
        assert len(got[name]) == len(rows), name
        bad = [(g, w) for g, w in zip(got[name], rows, strict=True) if not _close(g, w)]
        assert not bad, (name, bad[:2])


def read_tables(workdir: str) -> dict[str, list[dict[str, Any]]]:
    """Every table's rows, sorted, floats rounded, volatile columns dropped."""
    con = storage.duckdb_connect()
    out: dict[str, list[dict[str, Any]]] = {}
    for name, pattern in TABLES.items():
        files = Location(workdir).glob(pattern)
        if not files:
            out[name] = []
            continue
        rows = con.sql("SELECT * FROM read_parquet($f, union_by_name = true)",
                       params={"f": [str(f) for f in files]}).to_arrow_table().to_pylist()
        out[name] = sorted(({k: v for k, v in r.items() if k not in VOLATILE} for r in rows), key=lambda r: repr(
            (r.get("id"), r.get("pmcid"), r.get("source"), r.get("reason"), r.get("record_id"))))
    return out


def manifests(workdir: str) -> dict[str, dict[str, Any]]:
    out = {}
    for m in Location(workdir).glob("subsets/*/manifest.json"):
        data = json.loads(m.read_text())
        out[m.parent.name] = {"rows": data["stats"]["rows"], "tokens": data["tokens"]["text"],
                              "labels": data["stats"]["labels"]}
    return out


def _run_cli(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *argv], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=1500)


@pytest.fixture(scope="module")
def teacher():
    with FakeOpenAIServer() as server:
        yield server


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory, teacher: FakeOpenAIServer) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("local")
    work = tmp / "w"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    r = _run_cli(["run", "--config", str(_config(tmp, teacher.url)), "--workdir", str(work)], env, REPO)
    assert r.returncode == 0, r.stderr[-4000:]
    return {"tables": read_tables(str(work)), "manifests": manifests(str(work)),
            "reports": sorted(p.name for p in (work / "reports").iterdir())}


def _bucket_leaks(workdir: str, needles: list[str]) -> list[str]:
    leaks = []
    for obj in Location(workdir).glob("**"):
        data = obj.read_bytes()
        leaks += [f"{obj}: {n[:6]}..." for n in needles if n.encode() in data]
    return leaks


def _dir_leaks(root: Path, needles: list[str]) -> list[str]:
    leaks = []
    for p in root.rglob("*"):
        if p.is_file():
            data = p.read_bytes()
            leaks += [f"{p}: {n[:6]}..." for n in needles if n.encode() in data]
    return leaks


@pytest.mark.slow
def test_demo_flow_on_s3_with_external_workers_equals_the_local_run_and_leaks_no_secret(
        tmp_path: Path, s3_server, s3_worker_pool, teacher: FakeOpenAIServer, local_run: dict[str, Any]) -> None:
    bucket = s3_server.bucket()
    workdir = f"s3://{bucket}/run"
    flag_secret = f"FLAGSECRET{uuid.uuid4().hex}"
    env_secret = f"ENVSECRET{uuid.uuid4().hex}"
    pool = dict(a[2:].split("=", 1) for a in s3_worker_pool.beam_args())
    config = _config(tmp_path, teacher.url, {"parse": pool, "propagate": pool})
    cache = tmp_path / "local-cache"
    env = {**os.environ, **s3_server.env(), "AWS_SECRET_ACCESS_KEY": env_secret, "PMC_CURATE_LOCAL_CACHE": str(cache),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OPENAI_API_KEY": f"sk-{env_secret}"}
    # Beam's flags win over the environment for Beam's S3 client and for ours (moto accepts any key).
    argv = ["-v", "run", "--config", str(config), "--workdir", workdir, f"--s3_secret_access_key={flag_secret}",
            f"--s3_access_key_id=AKIA{flag_secret[:8]}", f"--s3_endpoint_url={s3_server.endpoint}",
            "--s3_region_name=us-east-1"]
    r = _run_cli(argv, env, tmp_path)
    assert r.returncode == 0, r.stderr[-6000:] + s3_worker_pool.log_tail()
    assert "Starting worker with command" in s3_worker_pool.log_tail(10**9)  # the pool really ran stages

    with s3_server.use():
        remote = {"tables": read_tables(workdir), "manifests": manifests(workdir),
                  "reports": sorted(p.name for p in Location(f"{workdir}/reports").iterdir())}
        assert_same_tables(remote["tables"], local_run["tables"])
        assert _close(remote["manifests"], local_run["manifests"]) and len(remote["manifests"]) == len(local_run["manifests"]) >= 8, remote["manifests"]
        assert remote["reports"] == local_run["reports"]
        markers = {m.stem: json.loads(m.read_text()) for m in Location(workdir).glob("_stages/*.json")}
        assert all(m["status"] == "finished" for m in markers.values()), {k: m["status"] for k, m in markers.items()}

        needles = [flag_secret, env_secret]
        leaks = _bucket_leaks(workdir, needles) + _dir_leaks(cache, needles)
        leaks += [f"log: {n[:6]}..." for n in needles if n in r.stdout or n in r.stderr]
        assert not leaks, leaks
        assert "***" in markers["parse"]["beam_argv"][0] or any("***" in a for a in markers["parse"]["beam_argv"])

        # resume skips every finished step, as it does locally (fingerprints from object metadata)
        again = _run_cli(argv, env, tmp_path)
        assert again.returncode == 0, again.stderr[-4000:]
        assert "running (" not in again.stdout and again.stdout.count("skipped") == len(markers)


@pytest.mark.slow
def test_flow_on_gcs_without_workers_equals_the_local_run(tmp_path: Path, gcs_server, teacher: FakeOpenAIServer,
                                                          local_run: dict[str, Any]) -> None:
    bucket = gcs_server.bucket()
    workdir = f"gs://{bucket}/run"
    env = {**os.environ, **gcs_server.env(), "PMC_CURATE_LOCAL_CACHE": str(tmp_path / "cache"),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    r = _run_cli(["run", "--config", str(_config(tmp_path, teacher.url)), "--workdir", workdir], env, tmp_path)
    assert r.returncode == 0, r.stderr[-6000:]
    with gcs_server.use():
        assert_same_tables(read_tables(workdir), local_run["tables"])
        assert _close(manifests(workdir), local_run["manifests"])


def test_a_missing_bucket_stops_the_flow_before_any_step(tmp_path: Path, s3_server) -> None:
    env = {**os.environ, **s3_server.env()}
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"workdir": "s3://no-such-bucket-here/run",
                                      "steps": {"parse": {"inputs": [str(EXAMPLES / "jats")]}}}))
    r = _run_cli(["run", "--config", str(config)], env, tmp_path)
    assert r.returncode == 2
    assert "s3://no-such-bucket-here" in r.stderr and "does not exist" in r.stderr and "Traceback" not in r.stderr
