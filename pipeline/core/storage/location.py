"""`Location`: a local path or an object-store URL, with the file operations the stages use."""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
import uuid
from pathlib import Path
from typing import IO, Any

from pipeline.core.errors import ConfigError
from pipeline.core.storage.settings import _seen_schemes, filesystem, scheme


class Location:
    """A local path or an object-store URL, with the file operations the stages use.

    Joins with `/` like pathlib. On object stores there are no directories: `mkdir` does nothing,
    `is_dir` means "some object has this prefix", and writes are single PUTs, so a reader sees the
    old object or the new one, never half of one. Local writes go to a temporary file and are renamed,
    for the same guarantee.
    """

    __slots__ = ("_listed", "_s")

    def __init__(self, value: str | os.PathLike[str] | Location) -> None:
        self._listed: dict[str, Any] | None = None  # size and version as the listing that found it gave them
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

    def _wrap(self, key: str, detail: dict[str, Any] | None = None) -> Location:
        loc = Location(f"{scheme(self._s)}://{key}") if self.is_remote else Location(key)
        if detail is not None:
            loc._listed = _info(detail)
        return loc

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
        return sorted((self._wrap(k, v) for k, v in found.items() if v.get("type") == "file"), key=str)

    def iterdir(self) -> list[Location]:
        if not self.is_remote:
            return [Location(os.path.join(self._s, n)) for n in sorted(os.listdir(self._s))]
        try:
            return sorted((self._wrap(k) for k in self._fs.ls(self._key, detail=False, refresh=True)), key=str)
        except FileNotFoundError:
            return []

    def info(self, fresh: bool = False) -> dict[str, Any]:
        """Size and a version that changes on every rewrite (mtime locally, ETag or generation remotely).

        A remote location found by `glob` answers with what the listing said (no HEAD per file: a listing
        page names 1,000 objects, with their sizes and ETags); `fresh=True` asks the store again."""
        if not self.is_remote:
            st = os.stat(self._s)
            return {"size": st.st_size, "version": str(st.st_mtime_ns)}
        if self._listed is not None and not fresh:
            return dict(self._listed)
        return _info(self._fs.info(self._key))

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
            # An empty object has no byte 0, so the store refuses the range (416). Any other failure is
            # raised: reading the object whole instead would break the limit.
            if fs.info(key)["size"] == 0:
                return b""
            raise

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

    def write_from(self, local: str | os.PathLike[str]) -> None:
        """Copy a local file here, streamed (never read whole): readers see the old content or the new one.

        Locally a temporary name in the same folder renamed into place; remotely one upload (multipart for
        a large file), which the store makes visible only once complete.
        """
        if self.is_remote:
            self._fs.put_file(os.fspath(local), self._key)
            return
        d = os.path.dirname(os.path.abspath(self._s))
        os.makedirs(d, exist_ok=True)
        tmp = os.path.join(d, f".{self.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        try:
            shutil.copyfile(local, tmp)
            os.replace(tmp, self._s)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def create_exclusive(self, data: bytes) -> bool:
        """Create the file only if it does not exist (O_EXCL locally, If-None-Match / ifGenerationMatch=0
        on object stores). Returns False when it already existed."""
        try:
            with self.open("xb") as f:
                f.write(data)
        except FileExistsError:
            return False
        return True

    def copy_to(self, dst: Location) -> None:
        """Copy this file to `dst` on the same store: server-side on s3:// and gs:// (no bytes through this
        machine), visible at `dst` only once complete; locally a copy renamed into place."""
        if self.is_remote:
            self._fs.copy(self._key, dst._key)
            return
        dst.write_from(self._s)

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
            # Streamed: one PUT for a file under the block size, else a multipart upload of S3_BLOCK_SIZE
            # parts, completed (and so visible) only at the end; memory holds one part, not the file.
            with open(src / rel, "rb") as f, (self / rel).open("wb") as out:
                shutil.copyfileobj(f, out, 2**20)
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


def _info(detail: dict[str, Any]) -> dict[str, Any]:
    """An fsspec info/listing entry -> {"size", "version"} (generation on GCS, ETag on S3)."""
    i = detail
    version = i.get("generation") or i.get("ETag") or i.get("etag") or i.get("LastModified") or i.get("mtime")
    return {"size": int(i.get("size") or 0), "version": str(version).strip('"')}


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
