"""Object-store servers for the tests, each speaking the real protocol over a real socket on 127.0.0.1.

- S3: moto's server mode (`ThreadedMotoServer`), reached by Beam's S3 filesystem, boto3, s3fs and DuckDB.
- GCS: gcp-storage-emulator, reached by Beam's gcsio and gcsfs through `STORAGE_EMULATOR_HOST`.

`S3Server.env()` / `GcsServer.env()` are the standard variables a user would set; `use()` puts them in
this process's environment (and resets the storage layer's cached filesystems) for the test's duration.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class S3Server:
    endpoint: str
    _server: Any = field(repr=False)
    access_key: str = "test-access-key"
    secret_key: str = "test-secret-key"

    def env(self) -> dict[str, str]:
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": self.access_key,
                "AWS_SECRET_ACCESS_KEY": self.secret_key, "AWS_DEFAULT_REGION": "us-east-1"}

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=self.access_key,
                            aws_secret_access_key=self.secret_key, region_name="us-east-1")

    def bucket(self, name: str | None = None) -> str:
        """Create a fresh bucket; returns its name."""
        name = name or f"test-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def requests(self) -> int:
        """Requests the server has answered so far (moto counts none itself: we count in a WSGI wrapper)."""
        return _COUNTER.get(self.endpoint, 0)

    @contextlib.contextmanager
    def use(self) -> Iterator[S3Server]:
        with env_vars(self.env()):
            yield self

    @contextlib.contextmanager
    def watch(self, delay: float = 0.0) -> Iterator[dict[str, Any]]:
        """Count this block's requests by method, per object ("objects": {"GET /bucket/key": n}, requests
        without a query string) and the most handled at once; `delay`: each request
        waits that long first (a network round trip), so reads that overlap are seen overlapping."""
        stats: dict[str, Any] = {"requests": 0, "max_in_flight": 0, "in_flight": 0, "objects": {}}
        _WATCH[self.endpoint] = (stats, delay)
        try:
            yield stats
        finally:
            _WATCH.pop(self.endpoint, None)


@dataclass
class GcsServer:
    endpoint: str
    _server: Any = field(repr=False)

    def env(self) -> dict[str, str]:
        return {"STORAGE_EMULATOR_HOST": self.endpoint, "GOOGLE_CLOUD_PROJECT": "test-project"}

    def bucket(self, name: str | None = None) -> str:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage as gcs

        name = name or f"test-{uuid.uuid4().hex[:12]}"
        with env_vars(self.env()):
            gcs.Client(project="test-project", credentials=AnonymousCredentials()).create_bucket(name)
        return name

    @contextlib.contextmanager
    def use(self) -> Iterator[GcsServer]:
        with env_vars(self.env()):
            yield self


_COUNTER: dict[str, int] = {}
_WATCH: dict[str, tuple[dict[str, Any], float]] = {}
_WATCH_LOCK = threading.Lock()


@contextlib.contextmanager
def env_vars(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the block (and drop the storage layer's cached clients)."""
    from pipeline.core import storage

    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    storage.reset()
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        storage.reset()


def start_s3() -> S3Server:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    _count_requests(server, endpoint)
    return S3Server(endpoint=endpoint, _server=server)


def _count_requests(server: Any, endpoint: str) -> None:
    """Wrap moto's WSGI app so each request is counted (benchmarks and tests check access scales with files)."""
    srv = getattr(server, "_server", None)
    app = getattr(srv, "app", None) if srv is not None else None
    if app is None:
        return
    _COUNTER[endpoint] = 0

    def counting(environ: Any, start_response: Any) -> Any:
        _COUNTER[endpoint] = _COUNTER.get(endpoint, 0) + 1
        watch = _WATCH.get(endpoint)
        if watch is None:
            return app(environ, start_response)
        stats, delay = watch
        method = str(environ.get("REQUEST_METHOD"))
        with _WATCH_LOCK:
            stats["requests"] += 1
            stats[method] = stats.get(method, 0) + 1
            if not environ.get("QUERY_STRING"):
                k = f"{method} {environ.get('PATH_INFO')}"
                stats["objects"][k] = stats["objects"].get(k, 0) + 1
            stats["in_flight"] += 1
            stats["max_in_flight"] = max(stats["max_in_flight"], stats["in_flight"])
        try:
            if delay:
                time.sleep(delay)
            return list(app(environ, start_response))  # the body read inside the count
        finally:
            with _WATCH_LOCK:
                stats["in_flight"] -= 1

    srv.app = counting  # werkzeug's BaseWSGIServer calls self.app per request


def start_gcs() -> GcsServer:
    from gcp_storage_emulator.server import create_server

    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    return GcsServer(endpoint=f"http://127.0.0.1:{port}", _server=server)
