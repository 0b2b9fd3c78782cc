"""Operations over Locations: fingerprints, local copies, access checks, Parquet files (publishing.py: replacing folders)."""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import io
import os
import shutil
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.core import secrets
from pipeline.core.errors import ConfigError
from pipeline.core.storage.location import Location, as_location
from pipeline.core.storage.settings import scheme, storage_timeout_s

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


_local_copies: dict[tuple[str, bool], tuple[str, Path]] = {}  # (location, via Beam) -> (content key, folder)
_copies_lock = threading.RLock()
downloads = 0  # remote folders this process has copied (tests read it)


def _remove_local_copies() -> None:
    for _, folder in _local_copies.values():
        shutil.rmtree(folder, ignore_errors=True)


atexit.register(_remove_local_copies)


def local_copy(location: str | os.PathLike[str] | Location, via_beam: bool = False) -> Path:
    """A local folder with the content of `location`: the folder itself when local, else one download per
    process and per content version of its files (a second call with the same content returns the same
    folder; a rewritten file means a fresh copy, and the stale one is removed).

    `via_beam`: list and read with Beam's FileSystems, which take their settings (`--s3_*`) from the
    pipeline options a Beam worker received; elsewhere the storage layer's own settings apply.
    """
    global downloads
    loc = as_location(location)
    if not loc.is_remote:
        return loc.local
    with _copies_lock:  # one download per process, even with several bundle threads
        if via_beam:
            from pipeline.core.storage import beam_files

            files = beam_files.listing(str(loc))
        else:
            files = [(str(f), int(i["size"]), i["version"]) for f in loc.glob("**") for i in [f.info()]]
        if not files:
            raise ConfigError(f"nothing at {loc}")
        # Modification times have 1 s resolution on S3: versions are ETags / generations / checksums.
        key = hashlib.sha256(repr(sorted(files)).encode()).hexdigest()
        hit = _local_copies.get((str(loc), via_beam))
        if hit is not None and hit[0] == key and hit[1].is_dir():
            return hit[1]
        dst = Path(tempfile.mkdtemp(prefix="pmc-curate-copy-"))
        prefix = str(loc).rstrip("/") + "/"
        for path, _, _ in files:
            target = dst.joinpath(*path[len(prefix):].split("/"))
            target.parent.mkdir(parents=True, exist_ok=True)
            src_cm = beam_files.open_input(path, uncompressed=True) if via_beam else as_location(path).open("rb")
            with src_cm as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out, 2**20)
        if hit is not None:
            shutil.rmtree(hit[1], ignore_errors=True)
        _local_copies[(str(loc), via_beam)] = (key, dst)
        downloads += 1
        return dst


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


# Exceptions (by class name, anywhere in the chain) that mean the object store stopped answering.
_UNREACHABLE = ("EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError",
                "ClientConnectorError", "ServerDisconnectedError", "FSTimeoutError", "ConnectionRefusedError",
                "ServerTimeoutError")  # fmt: skip


def unreachable(e: BaseException) -> str | None:
    """One line naming the lost object store when `e` (or its cause) says the store stopped answering; else None."""
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        names = {c.__name__ for c in type(cur).__mro__}
        text = str(cur)
        if names & set(_UNREACHABLE) or "Could not connect to the endpoint URL" in text:
            return (f"lost the object store ({type(cur).__name__}: {_short(cur)}); it did not answer within "
                    f"PMC_CURATE_STORAGE_TIMEOUT_S={storage_timeout_s():.0f} s of retries. Finished work is kept: "
                    "check the endpoint and the network, then run again to resume")  # fmt: skip
        cur = cur.__cause__ or cur.__context__
    return None


def _short(e: BaseException) -> str:
    return secrets.redact(str(e).splitlines()[0][:300] if str(e) else type(e).__name__)


def read_parquet_metadata(loc: Location) -> Any:
    """A Parquet footer (rows, schema metadata) without reading the data."""
    import pyarrow.parquet as pq

    if not loc.is_remote:
        return pq.read_metadata(loc.local)
    with loc.open("rb") as f:
        return pq.read_metadata(f)


def read_parquet(loc: Location, columns: list[str] | None = None) -> Any:
    """One Parquet file as an Arrow table, whole or some columns (remotely streamed, column chunks read by range)."""
    import pyarrow.parquet as pq

    if not loc.is_remote:
        return pq.read_table(loc.local, columns=columns)
    with loc.open("rb") as f:
        return pq.read_table(f, columns=columns)


def write_parquet(table: Any, loc: Location, **kwargs: Any) -> None:
    """Write an Arrow table as one Parquet file at `loc` (atomic like `write_bytes`)."""
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(table, buf, **kwargs)
    loc.write_bytes(buf.getvalue())
