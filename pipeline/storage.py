"""The one place that knows about filesystems: local paths, `s3://` and `gs://`.

Every stage reaches its work directory through a `Location`: a path-like value that is either a local
path or an object-store URL, with the few operations stages need (join, list, glob, read, write,
replace, remove). Non-Beam code (DuckDB, PyTorch, pyarrow, the flow's markers and lock) goes through
fsspec (s3fs, gcsfs); Beam stages hand `str(location)` to Beam's own FileSystems and sinks, which
read the same settings from the standard environment and from Beam's `--s3_*` flags.

Settings, given once, reach every stage:
- S3: `AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
  `AWS_DEFAULT_REGION` (boto's own environment), or Beam's `--s3_endpoint_url`, `--s3_access_key_id`,
  `--s3_secret_access_key`, `--s3_session_token`, `--s3_region_name`, `--s3_verify`, `--s3_disable_ssl`
  flags on any command (`configure(argv)` reads them; they still go on to Beam);
- GCS: Google application-default credentials, or `STORAGE_EMULATOR_HOST` for an emulator (then our
  access is anonymous; Beam's own GCS client still searches for credentials first, ~18-28 s per
  process on a machine that has none: Beam 2.77 has no switch for that).

Public buckets (`PUBLIC_S3_BUCKETS`: NCBI's `pmc-oa-opendata`, plus any named in `PMC_CURATE_ANON_BUCKETS`,
comma separated) are read anonymously (unsigned requests, us-east-1 unless a region is set), whatever
credentials are configured: no account is needed to read PMC-OA.

Secrets given this way are registered with `pipeline.secrets`, so nothing we write or log shows them.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import posixpath
import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

# gcsfs 2026.10 probes gRPC endpoints for 60 s unless this is off; it must be set before gcsfs is imported.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

from pipeline import secrets
from pipeline.errors import ConfigError

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
    key = (sch, (repr(sorted(_settings.s3.items())) + ("|anon" if anon else "")) if sch == "s3" else "")
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
        kwargs: dict[str, Any] = {"default_cache_type": "none", "default_block_size": S3_BLOCK_SIZE,
                                  "client_kwargs": client_kwargs, "skip_instance_cache": True}
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
        return s3fs.S3FileSystem(**kwargs)
    try:
        import gcsfs
    except ImportError as e:
        raise ConfigError("gs:// needs the gcp extra: pip install 'pmc-curate[gcp]'") from e
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        return gcsfs.GCSFileSystem(token="anon", project=os.environ.get("GOOGLE_CLOUD_PROJECT", "emulator"),
                                   skip_instance_cache=True)
    return gcsfs.GCSFileSystem(skip_instance_cache=True)


def duckdb_connect(threads: int | None = None, memory_limit: str | None = None) -> Any:
    """A DuckDB connection that reads and writes every accepted scheme, without the httpfs extension.

    DuckDB reaches s3:// and gs:// through the fsspec filesystems registered here (with projection and
    filter pushdown). Extension autoloading is off: it would try to download httpfs, which offline
    machines and worker images cannot.
    """
    import duckdb

    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
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


# ----------------------------------------------------------------------------------------- Location


class Location:
    """A local path or an object-store URL, with the file operations the stages use.

    Joins with `/` like pathlib. On object stores there are no directories: `mkdir` does nothing,
    `is_dir` means "some object has this prefix", and writes are single PUTs, so a reader sees the
    old object or the new one, never half of one. Local writes go to a temporary file and are renamed,
    for the same guarantee.
    """

    __slots__ = ("_s",)

    def __init__(self, value: str | os.PathLike[str] | Location) -> None:
        s = value._s if isinstance(value, Location) else os.fspath(value)
        sch = scheme(s)
        if sch == "file":
            s = s[len("file://"):] if s.startswith("file://") else s
            s = str(Path(s)) if s else "."
        else:
            s = f"{sch}://" + s.split("://", 1)[1].strip("/")
            _seen_schemes.add(sch)
        self._s = s

    # --- names
    def __str__(self) -> str:
        return self._s

    def __repr__(self) -> str:
        return f"Location({self._s!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Location) and other._s == self._s

    def __hash__(self) -> int:
        return hash(self._s)

    def __lt__(self, other: Location) -> bool:  # sorted(locations): by their text, as paths sort
        return self._s < other._s

    def __truediv__(self, part: str) -> Location:
        if self.is_remote:
            return Location(posixpath.join(self._s, str(part)))
        return Location(os.path.join(self._s, str(part)))

    @property
    def is_remote(self) -> bool:
        return "://" in self._s

    @property
    def local(self) -> Path:
        """The local path. Raises ConfigError on an object store (the caller needs a local copy first)."""
        if self.is_remote:
            raise ConfigError(f"{self._s} is on an object store; this operation needs a local path")
        return Path(self._s)

    def __fspath__(self) -> str:
        # Only local locations can be handed to open(), pathlib or shutil: a remote one fails loudly here
        # instead of becoming a local folder named "s3:".
        return str(self.local)

    @property
    def name(self) -> str:
        return posixpath.basename(self._s) if self.is_remote else os.path.basename(self._s)

    @property
    def stem(self) -> str:
        n = self.name
        return n.rsplit(".", 1)[0] if "." in n[1:] else n

    @property
    def suffix(self) -> str:
        n = self.name
        return "." + n.rsplit(".", 1)[1] if "." in n[1:] else ""

    @property
    def parent(self) -> Location:
        if self.is_remote:
            return Location(posixpath.dirname(self._s))
        return Location(os.path.dirname(self._s) or ".")

    def relative_to(self, other: Location) -> str:
        base = str(other).rstrip("/") + ("/" if self.is_remote else os.sep)
        if not self._s.startswith(base):
            raise ValueError(f"{self._s} is not under {other}")
        return self._s[len(base):]

    @property
    def _fs(self) -> Any:
        return filesystem(self._s)

    @property
    def _key(self) -> str:
        """The path as fsspec names it (no scheme for object stores)."""
        return self._s.split("://", 1)[1] if self.is_remote else os.path.abspath(self._s)

    def _wrap(self, key: str) -> Location:
        return Location(f"{scheme(self._s)}://{key}") if self.is_remote else Location(key)

    # --- queries
    def exists(self) -> bool:
        if not self.is_remote:
            return os.path.exists(self._s)
        return bool(self._fs.exists(self._key))

    def is_file(self) -> bool:
        if not self.is_remote:
            return os.path.isfile(self._s)
        return bool(self._fs.isfile(self._key))

    def is_dir(self) -> bool:
        if not self.is_remote:
            return os.path.isdir(self._s)
        try:
            return bool(self._fs.ls(self._key, detail=False, refresh=True))
        except FileNotFoundError:
            return False

    def glob(self, pattern: str) -> list[Location]:
        """Files (not folders) matching a glob below this location, sorted; `**` recurses."""
        if not self.is_remote:
            import glob as globlib

            hits = globlib.glob(os.path.join(self._s, pattern), recursive=True)
            return [Location(h) for h in sorted(hits) if os.path.isfile(h)]
        fs = self._fs
        fs.invalidate_cache()
        found = fs.glob(posixpath.join(self._key, pattern), detail=True)
        return sorted((self._wrap(k) for k, v in found.items() if v.get("type") == "file"), key=str)

    def iterdir(self) -> list[Location]:
        if not self.is_remote:
            return [Location(os.path.join(self._s, n)) for n in sorted(os.listdir(self._s))]
        try:
            return sorted((self._wrap(k) for k in self._fs.ls(self._key, detail=False, refresh=True)), key=str)
        except FileNotFoundError:
            return []

    def info(self) -> dict[str, Any]:
        """Size and a version that changes on every rewrite (mtime locally, ETag or generation remotely)."""
        if not self.is_remote:
            st = os.stat(self._s)
            return {"size": st.st_size, "version": str(st.st_mtime_ns)}
        i = self._fs.info(self._key)
        version = i.get("generation") or i.get("ETag") or i.get("etag") or i.get("LastModified") or i.get("mtime")
        return {"size": int(i.get("size") or 0), "version": str(version).strip('"')}

    # --- reading and writing
    def open(self, mode: str = "rb", **kwargs: Any) -> IO[Any]:
        if not self.is_remote:
            if any(c in mode for c in "wax"):
                os.makedirs(os.path.dirname(os.path.abspath(self._s)), exist_ok=True)
            return open(self._s, mode, **kwargs)
        return self._fs.open(self._key, mode, **kwargs)

    def read_bytes(self, limit: int | None = None) -> bytes:
        """The object's bytes, in one GET on an object store (open() + read() costs a HEAD first).

        With `limit`, at most limit + 1 bytes are read (a ranged GET), so a caller tells an object
        over its size limit from one that fits without downloading it or asking its size first."""
        if not self.is_remote:
            with open(self._s, "rb") as f:
                return f.read() if limit is None else f.read(limit + 1)
        fs, key = self._fs, self._key
        # s3fs asks the size first (a HEAD) to split large reads unless told to read in one request.
        one = {"max_concurrency": 1} if scheme(self._s) == "s3" else {}
        if limit is None:
            return bytes(fs.cat_file(key, **one))
        try:
            return bytes(fs.cat_file(key, start=0, end=limit + 1))
        except FileNotFoundError:
            raise
        except Exception:
            # An empty object has no byte 0: the store refuses the range (416). Read it whole.
            return bytes(fs.cat_file(key, **one))

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def write_bytes(self, data: bytes) -> None:
        """Write a whole file: readers see the old content or the new one, never part of it."""
        if self.is_remote:
            self._fs.pipe_file(self._key, data)  # one PUT
            return
        d = os.path.dirname(os.path.abspath(self._s))
        os.makedirs(d, exist_ok=True)
        # os.open with 0o666, not mkstemp (0o600): the file gets the umask's permissions, like open(..., "w").
        tmp = os.path.join(d, f".{self.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, self._s)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def write_text(self, text: str, encoding: str = "utf-8") -> None:
        self.write_bytes(text.encode(encoding))

    def create_exclusive(self, data: bytes) -> bool:
        """Create the file only if it does not exist (O_EXCL locally, If-None-Match / ifGenerationMatch=0
        on object stores). Returns False when it already existed."""
        try:
            with self.open("xb") as f:
                f.write(data)
        except FileExistsError:
            return False
        return True

    def mkdir(self, parents: bool = True, exist_ok: bool = True) -> None:
        if not self.is_remote:
            os.makedirs(self._s, exist_ok=exist_ok)

    def unlink(self, missing_ok: bool = True) -> None:
        try:
            if self.is_remote:
                self._fs.rm_file(self._key)
            else:
                os.unlink(self._s)
        except FileNotFoundError:
            if not missing_ok:
                raise

    def rmtree(self) -> None:
        """Remove everything below this location (nothing when absent)."""
        if not self.is_remote:
            shutil.rmtree(self._s, ignore_errors=False) if os.path.isdir(self._s) else self.unlink()
            return
        keys = [str(x._key) for x in self.glob("**")]
        if keys:
            self._fs.rm(keys)
        self._fs.invalidate_cache()

    # --- whole folders
    def upload_from(self, local_dir: str | os.PathLike[str]) -> None:
        """Replace this folder's content with a local folder's (files not in it are removed)."""
        src = Path(local_dir)
        wanted = {str(p.relative_to(src)).replace(os.sep, "/") for p in src.rglob("*") if p.is_file()}
        if not self.is_remote:
            staging = Location(f"{self._s}.tmp-{os.getpid()}")
            staging.rmtree()
            shutil.copytree(src, staging.local)
            old = Location(f"{self._s}.old-{os.getpid()}")
            if self.exists():
                os.replace(self._s, old._s)
            os.replace(staging._s, self._s)
            old.rmtree()
            return
        for rel in sorted(wanted):
            (self / rel).write_bytes((src / rel).read_bytes())
        for loc in self.glob("**"):
            if loc.relative_to(self) not in wanted:
                loc.unlink()

    def download_to(self, local_dir: str | os.PathLike[str]) -> Path:
        """Copy every file below this location into a local folder; returns it."""
        dst = Path(local_dir)
        for loc in self.glob("**"):
            target = dst / loc.relative_to(self)
            target.parent.mkdir(parents=True, exist_ok=True)
            with loc.open("rb") as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out, 2**20)
        return dst


def expand(spec: str) -> list[Location]:
    """The files a spec names: a file, every file below a folder, or a glob; on any accepted filesystem."""
    loc = Location(spec.rstrip("/") or spec)
    if any(c in spec for c in "*?["):
        cut = min(i for i, c in enumerate(str(loc)) if c in "*?[")
        base = str(loc)[:cut].rsplit("/", 1)[0]
        return Location(base).glob(str(loc)[len(base) + 1:])
    if loc.is_file():
        return [loc]
    return loc.glob("**") if loc.is_dir() else []


def as_location(value: str | os.PathLike[str] | Location) -> Location:
    return value if isinstance(value, Location) else Location(value)


# -------------------------------------------------------------------------------------- fingerprints


def fingerprint(files: Sequence[Location | str | os.PathLike[str]], relative_to: Location | None = None) -> dict[str, Any]:
    """Files, bytes and a digest of (name, size, version) of a set of files: cheap, changes on any rewrite.

    The version is the modification time locally and the ETag or generation on object stores, so a
    fingerprint costs one listing, never a read of the data.
    """
    h = hashlib.sha256()
    total = 0
    for f in files:
        loc = as_location(f)
        info = loc.info()
        name = str(loc)
        if relative_to is not None:
            with contextlib.suppress(ValueError):
                name = loc.relative_to(relative_to)
        h.update(f"{name}\0{info['size']}\0{info['version']}\n".encode())
        total += info["size"]
    return {"files": len(files), "bytes": total, "digest": h.hexdigest()[:16]}


# --------------------------------------------------------------------------------- local copies


_local_copies: dict[str, Path] = {}


def local_copy(location: str | os.PathLike[str] | Location) -> Path:
    """A local folder with the content of `location`: the folder itself when local, else one download per
    process and per version of its files (a second call with the same content returns the same folder)."""
    loc = as_location(location)
    if not loc.is_remote:
        return loc.local
    files = loc.glob("**")
    if not files:
        raise ConfigError(f"nothing at {loc}")
    key = f"{loc}|{fingerprint(files, loc)['digest']}"
    with _lock:
        hit = _local_copies.get(key)
        if hit is not None and hit.is_dir():
            return hit
    dst = Path(tempfile.mkdtemp(prefix="pmc-curate-copy-"))
    loc.download_to(dst)
    with _lock:
        _local_copies[key] = dst
    return dst


@contextlib.contextmanager
def local_staging(final: Location, prefix: str = "pmc-curate-", dir: str | os.PathLike[str] | None = None) -> Iterator[Path]:
    """A local folder to build output in; on success it replaces `final`.

    Locally the folder is built beside `final` and swapped in by renames (no copy: a reader sees the old
    folder or the new one); on an object store it is built under `dir` (default: the system's temporary
    folder) and uploaded.
    """
    if not final.is_remote:
        final.parent.mkdir()
        staging = final.parent.local / f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        staging.mkdir()  # os.mkdir, not mkdtemp: the folder gets the umask's permissions, like any other
    else:
        if dir is not None:
            os.makedirs(dir, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=prefix, dir=dir))
    try:
        yield staging
        if final.is_remote:
            final.upload_from(staging)
        else:
            old = final.parent.local / f".{final.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            if final.exists():
                os.replace(final.local, old)
            os.replace(staging, final.local)
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# ------------------------------------------------------------------------------------ access checks


def check_access(location: str | os.PathLike[str] | Location, write: bool = True) -> None:
    """Fail fast, before any work, when a location cannot be reached: unknown scheme, unreachable
    endpoint, missing bucket, no permission. The message names the location and what to check."""
    loc = as_location(location)
    if not loc.is_remote:
        return
    bucket = str(loc).split("://", 1)[1].split("/", 1)[0]
    where = f"{scheme(str(loc))}://{bucket}"
    probe = loc / f"_stages/.probe-{os.getpid()}"
    try:
        if write:
            probe.write_bytes(b"")  # one PUT and one DELETE: proves the endpoint, the bucket and the right to write
            probe.unlink()
        else:
            try:
                loc.info()
            except FileNotFoundError:
                loc._fs.info(bucket)  # an absent prefix is fine; an absent bucket is not
    except PermissionError as e:
        raise ConfigError(f"{loc}: access denied ({_short(e)}); check the credentials for {where}") from e
    except FileNotFoundError as e:
        raise ConfigError(f"{loc}: bucket {where} does not exist ({_short(e)})") from e
    except Exception as e:  # connection refused, DNS, TLS: the endpoint is wrong or down
        raise ConfigError(f"{loc}: cannot reach the object store for {where} ({type(e).__name__}: {_short(e)}); "
                          f"check AWS_ENDPOINT_URL / --s3_endpoint_url or STORAGE_EMULATOR_HOST and the network") from e


def _short(e: BaseException) -> str:
    return secrets.redact(str(e).splitlines()[0][:300] if str(e) else type(e).__name__)


def read_parquet_metadata(loc: Location) -> Any:
    """A Parquet footer (rows, schema metadata) without reading the data."""
    import pyarrow.parquet as pq

    if not loc.is_remote:
        return pq.read_metadata(loc.local)
    with loc.open("rb") as f:
        return pq.read_metadata(f)


def write_parquet(table: Any, loc: Location, **kwargs: Any) -> None:
    """Write an Arrow table as one Parquet file at `loc` (atomic like `write_bytes`)."""
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(table, buf, **kwargs)
    loc.write_bytes(buf.getvalue())
