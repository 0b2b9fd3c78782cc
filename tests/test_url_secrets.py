"""Credentials inside URLs never reach a log, a marker or the console (issue 18, item 7)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.core import secrets
from tests.annotate_helpers import make_sample
from tests.fakes.openai_server import FakeOpenAIServer

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("http://alice:hunter2-xyz@10.0.0.5:8000/v1", "http://alice:***@10.0.0.5:8000/v1"),
        ("GET https://u:p%40ss@host/v1/models -> 500", "GET https://u:***@host/v1/models -> 500"),
        ("https://api.example.org/v1?api_key=abc123&model=x", "https://api.example.org/v1?api_key=***&model=x"),
        ("s3://b/k?X-Amz-Signature=deadbeef&X-Amz-Security-Token=tok", "s3://b/k?X-Amz-Signature=***&X-Amz-Security-Token=***"),
        ("http://127.0.0.1:8080/v1", "http://127.0.0.1:8080/v1"),  # a port is no password
        ("s3://bucket/run/labels/*.parquet", "s3://bucket/run/labels/*.parquet"),
        ('{"base_url": "http://bob:pw-123@host/v1"}', '{"base_url": "http://bob:***@host/v1"}'),
    ],
)
def test_redact_masks_credentials_in_urls(text: str, expected: str) -> None:
    assert secrets.redact(text) == expected


def test_register_urls_masks_the_bare_password_too() -> None:
    secrets.register_urls(["--base-url", "http://carol:pw-only-here-91@host/v1", {"x": ["https://h/?token=tk-55aa"]}])
    assert secrets.redact("the server said: pw-only-here-91 is wrong; tk-55aa expired") == (
        "the server said: *** is wrong; *** expired")


def test_a_password_in_base_url_is_in_no_log_marker_or_output(tmp_path: Path) -> None:
    password = "pw-DO-NOT-LEAK-4b1e"
    w = tmp_path / "w"
    make_sample(w, ["s1", "s2"])
    with FakeOpenAIServer() as server:
        url = server.url.replace("http://", f"http://annotator:{password}@")
        cfg = tmp_path / "flow.yaml"
        cfg.write_text(f"workdir: {w}\nsteps:\n  annotate: {{base_url: '{url}', model: teacher-x, backoff: 0.01, "
                       "no_progress: true}\n")  # fmt: skip
        env = {**os.environ, "OPENAI_API_KEY": "sk-test", "PYTHONPATH": str(REPO),
               "PMC_CURATE_LOCAL_CACHE": str(tmp_path / "cache")}  # fmt: skip
        res = subprocess.run([sys.executable, "-m", "pipeline.cli", "-v", "run", "--config", str(cfg)], cwd=REPO,
                             env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    assert "annotator:***@" in (w / "_stages" / "annotate.json").read_text()  # the marker keeps the URL, masked
    assert password not in res.stdout + res.stderr
    for f in [*w.rglob("*"), *(tmp_path / "cache").rglob("*")]:
        if f.is_file():
            assert password.encode() not in f.read_bytes(), f"password written to {f}"
