"""The annotate stage against a local server speaking the real OpenAI protocol over a real socket.

Every fault is injected per paragraph; the tests check that each paragraph ends as exactly one
annotation or one reject, that nothing finished is paid for twice, and what the user is told.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from pipeline.cli import main
from tests.annotate_helpers import key_of, make_sample
from tests.fakes.openai_server import FakeOpenAIServer

REPO = Path(__file__).resolve().parent.parent
FAST = ["--backoff", "0.01", "--timeout", "1", "--no-progress"]


def rows(glob: str) -> list[dict]:
    import glob as g

    if not g.glob(glob):
        return []
    return duckdb.sql("SELECT * FROM read_parquet($g)", params={"g": glob}).to_arrow_table().to_pylist()


def outputs(wd: Path) -> tuple[dict[str, dict], dict[str, dict]]:
    ann = rows(str(wd / "annotations" / "*.parquet"))
    rej = rows(str(wd / "rejects" / "annotate-*.parquet"))
    a = {r["id"]: r for r in ann}
    r = {x["record_id"]: x for x in rej}
    assert len(a) == len(ann) and len(r) == len(rej), "duplicate rows"
    assert not set(a) & set(r), "a paragraph is both annotated and rejected"
    return a, r


def annotate(wd: Path, url: str, *extra: str, model: str = "teacher-x") -> int:
    return main(["annotate", "--workdir", str(wd), "--base-url", url, "--model", model, *FAST, *extra])


def test_every_fault_is_handled_and_nothing_is_lost_or_paid_twice(tmp_path: Path) -> None:
    plan = {
        "r429": ["429:0.4", "ok"], "r5xx": ["500", "503", "ok"], "rtimeout": ["timeout", "ok"], "rdrop": ["drop", "ok"],
        "flength": ["length", "ok"], "fempty": ["empty", "ok"], "fnotjson": ["notjson", "ok"], "fschema": ["schema", "ok"],
        "xlength": ["length"] * 3, "xnotjson": ["notjson"] * 3, "xschema": ["schema"] * 3, "xempty": ["empty"] * 3,
        "down": ["500"] * 3,
    }  # fmt: skip
    keys = [*plan, "plain1", "plain2"]
    wd = make_sample(tmp_path, keys)
    with FakeOpenAIServer(plan=plan, timeout_hold_s=2.5) as server:
        rc = annotate(tmp_path, server.url, "--max-attempts", "3")
        assert rc == 0
        ann, rej = outputs(tmp_path)
        assert {key_of(i) for i in ann} | {key_of(i) for i in rej} == set(keys)
        want = {"xlength": "reply_truncated", "xnotjson": "reply_not_json", "xschema": "reply_schema",
                "xempty": "reply_empty", "down": "endpoint_error"}  # fmt: skip
        assert {key_of(i): r["reason"] for i, r in rej.items()} == want
        # invalid replies keep their raw text for debugging; endpoint errors say why
        assert "Sure!" in rej["PMCxnotjson/sec[0]/p[0]"]["raw"]
        assert '"Essay"' in rej["PMCxschema/sec[0]/p[0]"]["raw"]
        assert "HTTP 500" in rej["PMCdown/sec[0]/p[0]"]["detail"]
        # each fault cost exactly the planned number of requests
        assert server.requests == {k: len(plan.get(k, ["ok"])) for k in keys}
        # Retry-After was honoured (0.4 s), not the 0.01 s backoff
        t = server.times["r429"]
        assert t[1] - t[0] >= 0.38
        # attempts and tokens of invalid replies are accounted on the annotation
        a = ann["PMCflength/sec[0]/p[0]"]
        assert a["attempts"] == 2 and a["prompt_tokens"] > 0 and a["teacher_model"] == "teacher-x"
        assert len(a["prompt_hash"]) == 16 and a["prompt_version"] == "v1"
        before = dict(server.requests)
        # a re-run pays for nothing already finished; only the endpoint failure (nothing paid) is retried
        server.plan.clear()
        assert annotate(tmp_path, server.url, "--max-attempts", "3") == 0
        new = {k: server.requests[k] - before.get(k, 0) for k in server.requests if server.requests[k] != before.get(k, 0)}
        assert new == {"down": 1}
        ann2, rej2 = outputs(tmp_path)
        assert "PMCdown/sec[0]/p[0]" in ann2 and len(ann2) + len(rej2) == len(keys)
        assert {i: (r["document_type"], r["domain"], r["educational_score"]) for i, r in ann.items()} == {
            i: (r["document_type"], r["domain"], r["educational_score"]) for i, r in ann2.items() if i in ann
        }
    assert wd.has_table("annotations")


def test_budget_stops_cleanly_and_resumes_without_paying_twice(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    keys = [f"b{i}" for i in range(8)]
    make_sample(tmp_path, keys)
    with FakeOpenAIServer() as server:
        prices = ["--price-in", "1000", "--price-out", "1000", "--concurrency", "1"]
        assert annotate(tmp_path, server.url, *prices, "--dry-run") == 0
        out = capsys.readouterr().out
        assert "8 calls ~" in out and "~$" in out
        assert sum(server.requests.values()) == 0
        rc = annotate(tmp_path, server.url, *prices, "--max-cost", "5")
        assert rc == 3
        out = capsys.readouterr().out
        assert "run the same command again to resume" in out
        ann, rej = outputs(tmp_path)
        assert 1 <= len(ann) < 8 and not rej
        paid_first = sum(server.paid.values())
        assert paid_first == len(ann)
        spent = sum(a["prompt_tokens"] + a["completion_tokens"] for a in ann.values()) * 1000 / 1e6
        assert spent <= 5.0  # stopped before a call that could cross the budget
        assert annotate(tmp_path, server.url, *prices, "--max-cost", "1000") == 0
        ann, rej = outputs(tmp_path)
        assert len(ann) == 8
        assert all(v == 1 for v in server.requests.values()) and len(server.requests) == 8


def test_bad_credentials_stop_the_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    keys = [f"a{i}" for i in range(6)]
    make_sample(tmp_path, keys)
    with FakeOpenAIServer(plan={k: ["401"] * 5 for k in keys}) as server:
        assert annotate(tmp_path, server.url, "--concurrency", "1") == 2
        assert sum(server.requests.values()) == 1  # stopped at the first refusal
    ann, rej = outputs(tmp_path)
    assert not ann and not rej  # nothing half-written: a fixed key resumes everything


def test_unreachable_endpoint_is_a_config_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    make_sample(tmp_path, ["u1"])
    from pipeline.teacher.local import free_port

    assert annotate(tmp_path, f"http://127.0.0.1:{free_port()}/v1") == 2
    assert "cannot reach the teacher endpoint" in capsys.readouterr().err


def test_resumes_at_the_next_attempt_after_paid_invalid_replies(tmp_path: Path) -> None:
    """An invalid reply committed before a crash is not asked again: the run continues at attempt 2."""
    from pipeline.teacher.cache import CachedAttempt, RequestCache, cache_key
    from pipeline.teacher.prompt import input_hash, load_prompt

    make_sample(tmp_path, ["z1"])
    prompt = load_prompt()
    ih = input_hash("Article z1", "Results", "Paragraph PKEY-z1 about cardiomyocyte mitophagy and heart failure.")
    cache = RequestCache(tmp_path / "cache" / "teacher.sqlite")
    cache.add_attempt(cache_key("v1", prompt.hash, "teacher-x", ih), "PMCz1/sec[0]/p[0]",
                      CachedAttempt(0, "stop", "not json", 100, 5, 0.1, "reply_not_json"))  # fmt: skip
    cache.close()
    with FakeOpenAIServer() as server:
        assert annotate(tmp_path, server.url) == 0
        assert server.requests["z1"] == 1
        body = server.bodies[0]
        assert body["temperature"] == prompt.params["retry_temperature"]  # a retry, not a first call
    ann, _ = outputs(tmp_path)
    assert ann["PMCz1/sec[0]/p[0]"]["attempts"] == 2 and ann["PMCz1/sec[0]/p[0]"]["prompt_tokens"] >= 100


def _committed_ids(cache_path: Path) -> set[str]:
    try:
        con = sqlite3.connect(f"file:{cache_path}?mode=ro", uri=True, timeout=5)
        try:
            return {r[0] for r in con.execute("SELECT paragraph_id FROM outcomes")}
        finally:
            con.close()
    except sqlite3.Error:
        return set()


@pytest.mark.slow  # two real subprocesses: ~20-70 s on a busy 2-core machine
def test_kill_9_mid_run_then_resume_repeats_no_finished_call(tmp_path: Path) -> None:
    keys = [f"k{i:02d}" for i in range(24)]
    make_sample(tmp_path, keys)
    cache_path = tmp_path / "cache" / "teacher.sqlite"
    with FakeOpenAIServer(latency_s=0.3, plan={"k03": ["notjson", "ok"], "k05": ["500", "ok"]}) as server:
        cmd = [sys.executable, "-m", "pipeline.cli", "annotate", "--workdir", str(tmp_path), "--base-url", server.url,
               "--model", "teacher-x", "--concurrency", "2", *FAST]  # fmt: skip
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while len(_committed_ids(cache_path)) < 6 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        committed = _committed_ids(cache_path)
        assert 6 <= len(committed) < len(keys), "the kill must land mid-run"
        snapshot = dict(server.requests)
        assert not (tmp_path / "annotations").exists() or not list((tmp_path / "annotations").glob("*.parquet"))
        # start again (a real process again)
        subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
        for pid in committed:
            assert server.requests[key_of(pid)] == snapshot[key_of(pid)], f"{pid} was asked again after resume"
        # at most the calls in flight at the kill (concurrency 2) were paid twice
        assert sum(server.paid.values()) <= len(keys) + 1 + 2
    ann, rej = outputs(tmp_path)
    assert set(ann) | set(rej) == {f"PMC{k}/sec[0]/p[0]" for k in keys}
    assert not rej


@pytest.mark.slow  # two real subprocesses: ~20-70 s on a busy 2-core machine
def test_api_key_reaches_the_endpoint_and_nowhere_else(tmp_path: Path) -> None:
    secret = "sk-test-DO-NOT-LEAK-7f3a9c2e41b8d6"
    make_sample(tmp_path, ["s1", "s2", "s3"])
    env = {**os.environ, "OPENAI_API_KEY": secret}
    with FakeOpenAIServer(plan={"s2": ["500", "notjson", "ok"], "s3": ["schema"] * 3}) as server:
        cmd = [sys.executable, "-m", "pipeline.cli", "-v", "annotate", "--workdir", str(tmp_path), "--base-url",
               server.url, "--model", "teacher-x", "--backoff", "0.01"]  # fmt: skip
        res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr[-2000:]
        assert all(h.get("authorization") == f"Bearer {secret}" for h in server.headers)
    assert secret not in res.stdout and secret not in res.stderr
    assert "DO-NOT-LEAK" not in res.stdout + res.stderr
    for f in tmp_path.rglob("*"):
        if f.is_file():
            assert secret.encode() not in f.read_bytes(), f"API key written to {f}"


def test_compare_two_teachers_reports_agreement(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    keys = [f"c{i}" for i in range(30)]
    make_sample(tmp_path, keys)
    with FakeOpenAIServer(vary_by_model=True) as server:
        rc = main(["annotate", "--workdir", str(tmp_path), "--base-url", server.url, "--compare", "model-a", "model-b", *FAST])
        assert rc == 0
        report = json.loads((tmp_path / "reports" / "teacher-agreement-model-a-vs-model-b.json").read_text())
        assert report["n"] == 30
        assert report["document_type"]["accuracy"] < 1.0
        rc = main(["annotate", "--workdir", str(tmp_path), "--base-url", server.url, "--compare", "model-a", "model-a", *FAST])
        same = json.loads((tmp_path / "reports" / "teacher-agreement-model-a-vs-model-a.json").read_text())
        assert same["document_type"]["accuracy"] == 1.0 and same["educational_score"]["mae"] == 0.0
        assert server.requests == {k: 2 for k in keys}  # model-a's second pass came from the cache
    assert "macro-F1" in capsys.readouterr().out


def test_the_local_teacher_never_receives_the_users_key(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.core.workdir import Workdir
    from pipeline.stages.annotate.stage import Config, _teacher
    from pipeline.teacher.config import LOCAL_PLACEHOLDER_KEY, resolve_api_key
    from pipeline.teacher.prompt import load_prompt

    monkeypatch.setenv("OPENAI_API_KEY", "sk-real-user-key")
    local = _teacher(Config(workdir="w"), Workdir.of("w"), "http://127.0.0.1:1/v1", "m", load_prompt(), 1)
    assert resolve_api_key(local.api_key_env) == LOCAL_PLACEHOLDER_KEY
    remote_args = Config(workdir="w", base_url="https://api.example/v1", model="m")
    remote = _teacher(remote_args, Workdir.of("w"), "https://api.example/v1", "m", load_prompt(), 1)
    assert resolve_api_key(remote.api_key_env) == "sk-real-user-key"


def test_portable_runner_gives_one_row_per_paragraph(tmp_path: Path) -> None:
    """Runners are options: the Fn API path Flink and Dataflow use gives the same rows."""
    keys = [f"p{i}" for i in range(20)]
    make_sample(tmp_path, keys)
    with FakeOpenAIServer(plan={"p3": ["503", "ok"]}) as server:
        rc = annotate(tmp_path, server.url, "--runner=PortableRunner", "--job_endpoint=embed", "--environment_type=LOOPBACK")
        assert rc == 0
        assert sum(server.requests.values()) == 21
    ann, rej = outputs(tmp_path)
    assert len(ann) == 20 and not rej
