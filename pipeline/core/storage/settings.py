"""Storage settings: which filesystem a URL gets, with which credentials and flags, and DuckDB's access to them.

The package's docstring (pipeline/core/storage/__init__.py) says which settings exist and where they come from.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

# gcsfs 2026.10 probes gRPC endpoints for 60 s unless this is off; it must be set before gcsfs is imported.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

from pipeline.core import secrets
from pipeline.core.errors import ConfigError

REMOTE_SCHEMES = ("s3", "gs")
ACCEPTED = "a local path, file://..., s3://bucket/prefix or gs://bucket/prefix"

# Beam's S3 flags, by the option name Beam gives them. The secret ones are redacted everywhere.
S3_FLAGS = ("s3_endpoint_url", "s3_access_key_id", "s3_secret_access_key", "s3_session_token",
            "s3_region_name", "s3_verify", "s3_disable_ssl", "s3_api_version")
SECRET_FLAGS = ("s3_access_key_id", "s3_secret_access_key", "s3_session_token")
SECRET_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "OPENAI_API_KEY")

# Buckets read with unsigned requests (no credentials needed or used).
PUBLIC_S3_BUCKETS = frozenset({"pmc-oa-opendata"})

# s3fs reads a 2-column filter with ~6x fewer bytes with no read-ahead cache, and needs >= 5 MB blocks
# for multipart writes (docs/benchmarks.md, FACTS 3).
S3_BLOCK_SIZE = 8 * 2**20
# How long one storage operation may keep trying an object store that stopped answering (connection
# refused, black-holed, timing out) before the stage fails with one line naming it: PMC_CURATE_STORAGE_TIMEOUT_S.
DEFAULT_STORAGE_TIMEOUT_S = 120.0
_ATTEMPTS = 3  # s3fs's own retries x botocore's attempts: 3 x 3, each bounded by timeout / 9


def storage_timeout_s() -> float:
    """The bound on one storage operation's retries against an unreachable store (seconds)."""
    raw = os.environ.get("PMC_CURATE_STORAGE_TIMEOUT_S")
    try:
        value = float(raw) if raw else DEFAULT_STORAGE_TIMEOUT_S
    except ValueError as e:
        raise ConfigError(f"PMC_CURATE_STORAGE_TIMEOUT_S={raw!r}: expected a number of seconds") from e
    if value <= 0:
        raise ConfigError(f"PMC_CURATE_STORAGE_TIMEOUT_S={raw!r}: expected a positive number of seconds")
    return value

# Connections an S3 client keeps open (botocore's default is 10): the parse keeps --fetch-concurrency reads
# in flight per DoFn thread, and a process's threads share one client.
S3_MAX_POOL_CONNECTIONS = 128


@dataclass
class _Settings:
    s3: dict[str, str] = field(default_factory=dict)


_settings = _Settings()
_seen_schemes: set[str] = set()  # remote schemes named by a Location in this process
_fs_cache: dict[tuple[str, str], Any] = {}
_lock = threading.Lock()


# ----------------------------------------------------------------------------------------- settings


def _split_s3_flags(argv: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """Beam's `--s3_*` flags found in argv (`--flag=value`, `--flag value`, or a bare switch), and argv
    without them. One reading of the command line for `configure` and `strip_flags`."""
    found: dict[str, str] = {}
    rest: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        key, eq, value = a[2:].partition("=") if a.startswith("--") else ("", "", "")
        if key not in S3_FLAGS:
            rest.append(a)
            i += 1
            continue
        if not eq and key != "s3_disable_ssl" and i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            value = argv[i + 1]
            i += 1
        found[key] = value if (eq or value) else "true"
        i += 1
    return found, rest


def configure(argv: Sequence[str]) -> list[str]:
    """Read Beam's `--s3_*` flags from a command line into the storage settings; return argv unchanged.

    The flags stay in argv: Beam stages pass them on to Beam (and so to its workers).
    """
    found, _ = _split_s3_flags(argv)
    for key in SECRET_FLAGS:
        if found.get(key):
            secrets.register(found[key])
    if found:
        with _lock:
            _settings.s3.update(found)
            _fs_cache.clear()
    return list(argv)


def strip_flags(argv: Sequence[str]) -> list[str]:
    """argv without Beam's `--s3_*` flags (for stages that do not run on Beam: storage already has them)."""
    return _split_s3_flags(argv)[1]


def register_env_secrets() -> None:
    """Register the secret values of the standard environment, so they are redacted wherever we write."""
    for name in SECRET_ENV:
        if os.environ.get(name):
            secrets.register(os.environ[name])


def reset() -> None:
    """Forget flag settings and cached filesystems (tests that start new servers)."""
    with _lock:
        _settings.s3.clear()
        _fs_cache.clear()
        _seen_schemes.clear()


# ------------------------------------------------------------------------------------------ schemes


def scheme(url: str | os.PathLike[str]) -> str:
    """`s3`, `gs` or `file`. Raises ConfigError for a scheme we do not accept."""
    s = str(url)
    if "://" not in s:
        return "file"
    sch = s.split("://", 1)[0].lower()
    if sch == "file" or sch in REMOTE_SCHEMES:
        return sch
    raise ConfigError(f"{s}: unsupported filesystem {sch}://; a work directory or table must be {ACCEPTED}")


def is_remote(url: str | os.PathLike[str]) -> bool:
    return scheme(url) in REMOTE_SCHEMES


def is_anonymous(url: str | os.PathLike[str]) -> bool:
    """True for an s3:// URL of a public bucket, read with unsigned requests."""
    s = str(url)
    if scheme(s) != "s3":
        return False
    bucket = s.split("://", 1)[1].split("/", 1)[0]
    extra = {b.strip() for b in os.environ.get("PMC_CURATE_ANON_BUCKETS", "").split(",") if b.strip()}
    return bucket in PUBLIC_S3_BUCKETS or bucket in extra


def filesystem(url: str | os.PathLike[str]) -> Any:
    """The fsspec filesystem for a location (cached per scheme and settings; public buckets get an anonymous one)."""
    sch = scheme(url)
    anon = is_anonymous(url)
    key = (sch, (repr(sorted(_settings.s3.items())) + ("|anon" if anon else "") + f"|{storage_timeout_s()}")
           if sch == "s3" else "")
    with _lock:
        fs = _fs_cache.get(key)
        if fs is None:
            fs = _fs_cache[key] = _make_fs(sch, anon=anon)
        return fs


def _make_fs(sch: str, anon: bool = False) -> Any:
    import fsspec

    if sch == "file":
        return fsspec.filesystem("file")
    if sch == "s3":
        try:
            import s3fs
        except ImportError as e:
            raise ConfigError("s3:// needs the aws extra: pip install 'pmc-curate[aws]'") from e
        s = _settings.s3
        client_kwargs: dict[str, Any] = {}
        if s.get("s3_region_name"):
            client_kwargs["region_name"] = s["s3_region_name"]
        if s.get("s3_verify"):
            client_kwargs["verify"] = s["s3_verify"] not in ("false", "False", "0")
        # Each attempt is bounded (connect and each read), and so are the attempts: an endpoint that is gone
        # fails an operation within about storage_timeout_s(), not after s3fs's 5 x botocore's 5 tries.
        per_try = max(1.0, storage_timeout_s() / (_ATTEMPTS * _ATTEMPTS))
        kwargs: dict[str, Any] = {"default_cache_type": "none", "default_block_size": S3_BLOCK_SIZE,
                                  "client_kwargs": client_kwargs, "skip_instance_cache": True,
                                  "config_kwargs": {"connect_timeout": per_try, "read_timeout": per_try,
                                                    "retries": {"max_attempts": _ATTEMPTS, "mode": "standard"},
                                                    "max_pool_connections": S3_MAX_POOL_CONNECTIONS}}
        if s.get("s3_endpoint_url"):
            kwargs["endpoint_url"] = s["s3_endpoint_url"]
        if anon:
            kwargs["anon"] = True
            if not s.get("s3_region_name") and not os.environ.get("AWS_DEFAULT_REGION"):
                client_kwargs["region_name"] = "us-east-1"
        elif s.get("s3_access_key_id"):
            kwargs["key"] = s["s3_access_key_id"]
            kwargs["secret"] = s.get("s3_secret_access_key")
            if s.get("s3_session_token"):
                kwargs["token"] = s["s3_session_token"]
        if s.get("s3_disable_ssl") in ("true", "True", "1"):
            kwargs["use_ssl"] = False
        fs = _bounded(s3fs.S3FileSystem)(**kwargs)
        fs.retries = _ATTEMPTS  # a class attribute in s3fs (5), not a constructor argument
        return fs
    try:
        import gcsfs
    except ImportError as e:
        raise ConfigError("gs:// needs the gcp extra: pip install 'pmc-curate[gcp]'") from e
    import aiohttp

    # As for S3: each attempt bounded, and the attempts too (gcsfs: 6 tries with up to 31 s of backoff).
    per_try = max(1.0, storage_timeout_s() / (_ATTEMPTS * 2))
    timeouts = {"requests_timeout": aiohttp.ClientTimeout(total=per_try, sock_connect=per_try)}
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        return _bounded_gcs(gcsfs.GCSFileSystem)(
            token="anon", project=os.environ.get("GOOGLE_CLOUD_PROJECT", "emulator"), skip_instance_cache=True,
            **timeouts)
    return _bounded_gcs(gcsfs.GCSFileSystem)(skip_instance_cache=True, **timeouts)


_LOST = ("EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError")
_bounded_classes: dict[type, type] = {}


def _bounded(base: type) -> type:
    """`base` (s3fs.S3FileSystem) whose calls fail at once once one call found the endpoint gone.

    One call gives up after its bounded retries; without this every later call (DuckDB reads a file in
    many ranges, the log upload at the end) would wait as long again, and a stage would take minutes to fail.
    """
    if base not in _bounded_classes:

        class Bounded(base):  # type: ignore[misc, valid-type]
            _lost: BaseException | None = None

            async def _call_s3(self, method: Any, *args: Any, **kwargs: Any) -> Any:
                if self._lost is not None:
                    raise self._lost
                try:
                    return await super()._call_s3(method, *args, **kwargs)
                except Exception as e:
                    if type(e).__name__ in _LOST:
                        self._lost = e
                    raise

        _bounded_classes[base] = Bounded
    return _bounded_classes[base]


def _bounded_gcs(base: type) -> type:
    """gcsfs.GCSFileSystem with _ATTEMPTS tries a request (gcsfs: 6, with up to 31 s of backoff, each
    failure logged with its traceback) and the same latch as `_bounded`: once a request found the endpoint
    gone, later calls fail at once."""
    if base not in _bounded_classes:
        import asyncio
        import random

        from gcsfs.retry import HttpError, is_retriable

        once = base._request.__wrapped__  # gcsfs's request without its retry decorator

        class BoundedGcs(base):  # type: ignore[misc, valid-type]
            _lost: BaseException | None = None

            async def _request(self, *args: Any, **kwargs: Any) -> Any:
                if self._lost is not None:
                    raise self._lost
                for attempt in range(_ATTEMPTS):
                    try:
                        return await once(self, *args, **kwargs)
                    except Exception as e:
                        lost = bool({c.__name__ for c in type(e).__mro__} & set(_GCS_LOST))
                        if isinstance(e, HttpError) and e.code == 404 or not (lost or is_retriable(e)):
                            raise
                        if attempt == _ATTEMPTS - 1:
                            if lost:
                                self._lost = e
                            raise
                        await asyncio.sleep(min(random.random() + 2**attempt, 4))
                raise AssertionError("unreachable")

        _bounded_classes[base] = BoundedGcs
    return _bounded_classes[base]


_GCS_LOST = ("ClientConnectorError", "ServerTimeoutError", "ServerDisconnectedError", "TimeoutError")


def duckdb_connect(threads: int | None = None, memory_limit: str | None = None, database: str = ":memory:",
                   temp_directory: str | None = None) -> Any:
    """A DuckDB connection that reads and writes every accepted scheme, without the httpfs extension.

    DuckDB reaches s3:// and gs:// through the fsspec filesystems registered here (with projection and
    filter pushdown). Extension autoloading is off: it would try to download httpfs, which offline
    machines and worker images cannot.
    """
    import duckdb

    config: dict[str, Any] = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}
    if temp_directory:  # where a query larger than memory_limit spills
        config["temp_directory"] = temp_directory
    con = duckdb.connect(database, config=config)
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    if memory_limit:
        con.execute(f"SET memory_limit = '{memory_limit.replace(chr(39), '')}'")
    emulated = {"gs"} if os.environ.get("STORAGE_EMULATOR_HOST") else set()  # anonymous: no credential search
    for sch in sorted(_seen_schemes | {"s3"} | emulated):
        # DuckDB routes a URL to the registered filesystem whose protocol matches (s3fs: s3/s3a, gcsfs: gs/gcs).
        # gs:// only once this process has named a gs:// location: building a gcsfs client looks for Google
        # credentials, which takes ~15 s on a machine that has none. An s3fs client costs nothing until used.
        con.register_filesystem(filesystem(f"{sch}://x"))
    return con
