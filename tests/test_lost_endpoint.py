"""An object store lost in the middle of a stage fails it within PMC_CURATE_STORAGE_TIMEOUT_S, in one line
(issue 18, item 7). The store is moto's S3 server on 127.0.0.1; it is stopped right after the stage's
access check (the fault is injected by wrapping that storage operation), and its port then either
refuses connections or is held by a listener that accepts and never answers (a black hole)."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from pipeline.core import storage
from tests.servers import env_vars, start_gcs, start_s3
from tests.test_curate import build_workdir
from tests.test_remote_curate import _upload

pytestmark = pytest.mark.timeout(300)  # unbounded retries (the defect) took ~10 minutes


def _black_hole(port: int) -> socket.socket:
    """Listen on the port, accept every connection and never answer."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(64)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(s.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    return s


@pytest.mark.parametrize("how", ["refused", "black-hole", "gcs-refused", "gcs-black-hole"])
def test_a_store_lost_mid_stage_fails_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str], how: str) -> None:
    import time

    from pipeline.cli import main

    gcs = how.startswith("gcs-")
    server = start_gcs() if gcs else start_s3()
    port = int(server.endpoint.rsplit(":", 1)[1])
    hole: list[socket.socket] = []
    t0 = time.monotonic()
    with env_vars({**server.env(), "PMC_CURATE_STORAGE_TIMEOUT_S": "9"}):
        root = f"{'gs' if gcs else 's3'}://{server.bucket()}/run"
        _upload(build_workdir(tmp_path / "w"), root)
        real = storage.check_access

        def then_lose_the_store(location, write=True):
            real(location, write)
            server._server.stop()  # the endpoint goes away once the stage has started
            if how.endswith("black-hole"):
                hole.append(_black_hole(port))

        monkeypatch.setattr("pipeline.core.storage.check_access", then_lose_the_store)
        try:
            rc = main(["curate", "--workdir", root, "--recipe", "be-base", "--threads", "1"])
        finally:
            for s in hole:
                s.close()
    err = capsys.readouterr().err
    assert rc == 4, err[-3000:]
    lines = [x for x in err.splitlines() if x.startswith("pmc-curate curate: error:")]
    assert len(lines) == 1 and "lost the object store" in lines[0] and "PMC_CURATE_STORAGE_TIMEOUT_S=9" in lines[0]
    assert "Traceback" not in err
    assert time.monotonic() - t0 < 120, "bounded by the timeout's retries, not gcsfs's or botocore's own"


def test_the_timeout_is_checked() -> None:
    from pipeline.core.errors import ConfigError

    with env_vars({"PMC_CURATE_STORAGE_TIMEOUT_S": "soon"}), pytest.raises(ConfigError, match="seconds"):
        storage.storage_timeout_s()
