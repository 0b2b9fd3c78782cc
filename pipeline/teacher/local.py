"""Start and stop the offline teacher server (pipeline/teacher/server.py) on a free 127.0.0.1 port."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from pipeline.core.errors import ConfigError
from pipeline.core.provenance import OFFLINE_TEACHER

log = logging.getLogger(__name__)

LOCAL_MODEL_NAME = OFFLINE_TEACHER  # artifacts name labels it made as stand-ins (pipeline.core.provenance)


def free_port() -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(base_url: str, proc: subprocess.Popen | None = None, timeout_s: float = 600.0) -> None:
    """Poll GET {base_url}/models until it answers 200 (model loaded) or the process dies."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ConfigError(f"the local teacher server exited with code {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"{base_url}/models", timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        time.sleep(0.5)
    raise ConfigError(f"the local teacher server at {base_url} was not ready after {timeout_s:.0f}s")


@contextlib.contextmanager
def local_teacher(log_path: Path, startup_timeout_s: float = 600.0) -> Iterator[tuple[str, str]]:
    """Run the SmolLM2 server in a child process; yields (base_url, model name); always stops it."""
    port = free_port()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pipeline.teacher.server", "--host", "127.0.0.1", "--port", str(port)]
    log.info("starting the offline teacher (%s) on 127.0.0.1:%d; log in %s", LOCAL_MODEL_NAME, port, log_path)
    with open(log_path, "ab") as logf:
        # The server dies with this process, even one killed with SIGKILL (no `finally` runs then): it asks
        # for the kernel's parent-death signal on Linux and watches the parent's pid (pipeline.core.signals).
        cmd += ["--parent-pid", str(os.getpid())]
        proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        wait_ready(base_url, proc, startup_timeout_s)
        yield base_url, LOCAL_MODEL_NAME
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
