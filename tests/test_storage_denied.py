"""A refused request (403) names the location and what to check, before any work: against moto's S3 server
with authentication enforced from the first request (INITIAL_NO_AUTH_ACTION_COUNT=0), in its own process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.servers import free_port


@pytest.fixture(scope="module")
def strict_s3() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("command", [["sample", "--size", "5"], ["status"], ["curate", "--recipe", "be-base"], ["propagate"], ["train"]])
def test_unknown_credentials_are_refused_with_the_location_before_any_work(strict_s3: str, tmp_path, command) -> None:
    env = {**os.environ, "AWS_ENDPOINT_URL": strict_s3, "AWS_ACCESS_KEY_ID": "AKIAUNKNOWN",
           "AWS_SECRET_ACCESS_KEY": "DENIEDSECRET123", "AWS_DEFAULT_REGION": "us-east-1",
           "PMC_CURATE_LOCAL_CACHE": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, "-m", "pipeline.cli", command[0], "--workdir", "s3://locked-bucket/run",
                        *command[1:]], env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 2, r.stderr[-3000:]
    assert "s3://locked-bucket/run: access denied" in r.stderr and "check the credentials" in r.stderr
    assert "Traceback" not in r.stderr and "DENIEDSECRET123" not in r.stderr + r.stdout
    assert not (tmp_path / "cache").exists()  # nothing was started
