"""The annotate stage with its work directory on s3:// and gs://: real object-store servers on 127.0.0.1
(moto, gcp-storage-emulator), the real `openai` client against the fake OpenAI server over a real socket.

The teacher cache survives the machine: finished calls are checkpointed into W/cache/teacher/*.parquet,
so a resume from an empty local disk pays again only for the calls in flight at the kill plus at most
one checkpoint interval (docs/annotate.md).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.core import storage
from pipeline.core.storage import Location
from tests.annotate_helpers import key_of, make_sample
from tests.fakes.openai_server import FakeOpenAIServer

REPO = Path(__file__).resolve().parent.parent
FAST = ["--backoff", "0.01", "--timeout", "5", "--no-progress"]
LABELS = ("document_type", "domain", "educational_score", "teacher_model", "prompt_version", "prompt_hash", "input_hash",
          "attempts")  # fmt: skip


def table(folder: str | Location, pattern: str) -> list[dict]:
    loc = Location(folder)
    if not loc.glob(pattern):
        return []
    con = storage.duckdb_connect()
    try:
        return con.sql("SELECT * FROM read_parquet($g)", params={"g": str(loc / pattern)}).to_arrow_table().to_pylist()
    finally:
        con.close()


def outputs(wd: str | Location) -> tuple[dict[str, dict], dict[str, dict]]:
    """Annotations and rejects by paragraph id; fails on a duplicate or a paragraph in both."""
    root = Location(wd)
    ann = table(root / "annotations", "*.parquet")
    rej = table(root / "rejects", "annotate-*.parquet")
    a = {r["id"]: r for r in ann}
    r = {x["record_id"]: x for x in rej}
    assert len(a) == len(ann) and len(r) == len(rej), "duplicate rows"
    assert not set(a) & set(r), "a paragraph is both annotated and rejected"
    return a, r


def annotate(wd: str | Path, url: str, *extra: str) -> int:
    return main(["annotate", "--workdir", str(wd), "--base-url", url, "--model", "teacher-x", *FAST, *extra])


def labels(ann: dict[str, dict]) -> dict[str, tuple]:
    return {i: tuple(r[c] for c in LABELS) for i, r in ann.items()}


def _same_as_local(remote: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = [f"r{i}" for i in range(12)]
    plan = {"r3": ["notjson", "ok"], "r5": ["schema"] * 3, "r7": ["500", "ok"]}
    local = tmp_path / "local"
    make_sample(local, keys)
    make_sample(remote, keys)
    monkeypatch.setenv("PMC_CURATE_LOCAL_CACHE", str(tmp_path / "machine-1"))
    with FakeOpenAIServer(plan={k: list(v) for k, v in plan.items()}) as server:
        assert annotate(local, server.url) == 0
    with FakeOpenAIServer(plan={k: list(v) for k, v in plan.items()}) as server:
        assert annotate(remote, server.url) == 0
        assert sum(server.requests.values()) == 12 + 1 + 2 + 1
        ann_l, rej_l = outputs(local)
        ann_r, rej_r = outputs(remote)
        assert len(ann_r) == 11 and set(rej_r) == {"PMCr5/sec[0]/p[0]"}
        assert labels(ann_r) == labels(ann_l)
        assert {i: (r["reason"], r["raw"]) for i, r in rej_r.items()} == {i: (r["reason"], r["raw"]) for i, r in rej_l.items()}
        # the SQLite file stays on local disk; the store holds its checkpoints, every finished call once
        wd = Location(remote)
        assert not wd.glob("**/*.sqlite") and list((tmp_path / "machine-1").rglob("teacher.sqlite"))
        shards = table(wd / "cache" / "teacher", "*.parquet")
        assert sorted(key_of(r["paragraph_id"]) for r in shards) == sorted(keys)
        assert (local / "cache" / "teacher.sqlite").is_file() and list((local / "cache" / "teacher").glob("*.parquet"))
        # another machine (empty local disk) finds every call in the checkpoints: it asks for nothing
        monkeypatch.setenv("PMC_CURATE_LOCAL_CACHE", str(tmp_path / "machine-2"))
        before = sum(server.requests.values())
        assert annotate(remote, server.url) == 0
        assert sum(server.requests.values()) == before
        assert labels(outputs(remote)[0]) == labels(ann_l)


def test_annotate_on_s3_equals_a_local_run_and_a_new_machine_pays_nothing(
    s3_workdir: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _same_as_local(s3_workdir, tmp_path, monkeypatch)


@pytest.mark.slow  # three Beam runs through gcsio against the emulator: ~30 s
def test_annotate_on_gcs_equals_a_local_run_and_a_new_machine_pays_nothing(
    gcs_workdir: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _same_as_local(gcs_workdir, tmp_path, monkeypatch)


@pytest.mark.slow  # four Beam runs: ~18-35 s
def test_compare_report_is_written_to_the_store(s3_workdir: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--compare writes its report with Location.write_text: it lands in the bucket."""
    keys = [f"c{i}" for i in range(6)]
    make_sample(s3_workdir, keys)
    monkeypatch.setenv("PMC_CURATE_LOCAL_CACHE", str(tmp_path / "m"))
    with FakeOpenAIServer(vary_by_model=True) as server:
        assert main(["annotate", "--workdir", s3_workdir, "--base-url", server.url, "--compare", "a", "b", *FAST]) == 0
    import json

    report = json.loads((Location(s3_workdir) / "reports" / "teacher-agreement-a-vs-b.json").read_text())
    assert report["n"] == 6 and report["model_a"] == "a"


def test_a_missing_bucket_fails_before_any_call(s3_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture) -> None:  # fmt: skip
    monkeypatch.setenv("PMC_CURATE_LOCAL_CACHE", str(tmp_path / "m"))
    with s3_server.use(), FakeOpenAIServer() as server:
        assert annotate("s3://no-such-bucket-here/run", server.url) == 2
        assert sum(server.requests.values()) == 0
    assert "does not exist" in capsys.readouterr().err


# ------------------------------------------------------------------------- kill -9, resume elsewhere


def _counts(local_dir: Path) -> tuple[int, int]:
    """(finished calls in this machine's SQLite, of which already in a checkpoint shard)."""
    found = list(local_dir.rglob("teacher.sqlite"))
    if not found:
        return 0, 0
    try:
        con = sqlite3.connect(f"file:{found[0]}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute("SELECT count(*), count(checkpoint) FROM outcomes").fetchone()
        finally:
            con.close()
    except sqlite3.Error:
        return 0, 0


@pytest.mark.slow  # two real subprocesses against moto: ~30-90 s on a busy 2-core machine
def test_kill_9_then_resume_on_a_fresh_machine_repays_at_most_in_flight_plus_one_interval(
    s3_server, s3_workdir: str, tmp_path: Path
) -> None:
    n_items, concurrency, every = 40, 2, 4
    keys = [f"k{i:02d}" for i in range(n_items)]
    make_sample(s3_workdir, keys)
    secret = "sk-test-DO-NOT-LEAK-remote-5c1e"
    machine_a, machine_b = tmp_path / "machine-a", tmp_path / "machine-b"
    with FakeOpenAIServer(latency_s=0.3) as server:
        cmd = [sys.executable, "-m", "pipeline.cli", "annotate", "--workdir", s3_workdir, "--base-url", server.url,
               "--model", "teacher-x", "--concurrency", str(concurrency), "--checkpoint-every", str(every),
               "--checkpoint-seconds", "60", *FAST]  # fmt: skip
        env = {**os.environ, **s3_server.env(), "OPENAI_API_KEY": secret}
        proc = subprocess.Popen(cmd, cwd=REPO, env={**env, "PMC_CURATE_LOCAL_CACHE": str(machine_a)},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + 180
        # kill when two intervals are checkpointed and some finished calls are still only on machine A's disk
        while time.monotonic() < deadline and proc.poll() is None:
            done, saved = _counts(machine_a)
            if saved >= 2 * every and done > saved:
                break
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        in_flight_at_kill = server.in_flight
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        finished_a, checkpointed_a = _counts(machine_a)
        assert checkpointed_a >= 2 * every and finished_a < n_items, "the kill must land mid-run, after checkpoints"
        time.sleep(0.5)  # let the requests in flight at the kill reach the server's counters
        first = dict(server.requests)
        assert not Location(s3_workdir).glob("annotations/*.parquet")
        in_store = {key_of(r["paragraph_id"]) for r in table(Location(s3_workdir) / "cache" / "teacher", "*.parquet")}
        assert len(in_store) >= 2 * every

        # the machine is gone: resume from an empty local disk against the same bucket (a real process again)
        res = subprocess.run(cmd, cwd=REPO, env={**env, "PMC_CURATE_LOCAL_CACHE": str(machine_b)},
                             capture_output=True, text=True, timeout=300)  # fmt: skip
        assert res.returncode == 0, res.stderr[-3000:]
        total = sum(server.requests.values())
        repaid = {k for k in first if server.requests[k] > first[k]}
        print(f"\nkill -9 after {sum(first.values())} requests: {finished_a} finished on machine A, {checkpointed_a} "
              f"checkpointed ({len(in_store)} in the store), {in_flight_at_kill} in flight; resume on machine B: "
              f"{total - sum(first.values())} requests, {len(repaid)} calls paid twice; total {total} for {n_items} "
              f"items (bound {n_items + concurrency + every})")  # fmt: skip
        assert not repaid & in_store, "a checkpointed call was asked again"
        assert total <= n_items + concurrency + every
        assert all(v <= 2 for v in server.requests.values())
        assert set(server.requests) == set(keys)
        assert all(h.get("authorization") == f"Bearer {secret}" for h in server.headers)
    ann, rej = outputs(s3_workdir)
    assert set(ann) == {f"PMC{k}/sec[0]/p[0]" for k in keys} and not rej
    assert list(machine_b.rglob("teacher.sqlite")), "machine B keeps its own local cache"
    # the key is written nowhere: not in the bucket, not on either machine's disk, not in the output
    assert secret not in res.stdout + res.stderr
    for loc in Location(s3_workdir).glob("**"):
        assert secret.encode() not in loc.read_bytes(), f"API key written to {loc}"
    for f in [*machine_a.rglob("*"), *machine_b.rglob("*")]:
        if f.is_file():
            assert secret.encode() not in f.read_bytes(), f"API key written to {f}"
