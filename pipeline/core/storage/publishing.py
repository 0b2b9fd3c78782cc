"""Replacing a folder of output whole: a reader sees the old folder or the new one, never a mix.

Every output that replaces a previous one (a table rewritten by its stage, a subset, imported labels) is
built under a temporary name beside it and published when complete:

    W/.NAME.tmp-PID-xxxxxxxx/   the new folder while it is written (a glob over W/NAME/ does not see it)
    W/.NAME.publishing          object stores only: the journal of a publish in progress

- **Locally** the new folder and the old one are exchanged in one call (Linux `renameat2` with
  RENAME_EXCHANGE): a reader that lists W/NAME sees all the old files or all the new ones. Where the
  call is missing (another OS, a filesystem without it) two renames do it, and a reader may find the
  folder missing for that instant (never a mix). The old folder, now under the temporary name, is removed.
- **On s3:// and gs://** a store replaces one object atomically, never a set: the journal names the
  shadow, then each file is copied server-side into place (seconds), the files the new folder lacks are
  removed, `manifest.json` last. During the copies a glob can see old and new files together.

A folder shared by several writers (W/rejects: one `<stage>-*` prefix per stage) is replaced only in the
files that start with the writer's prefix: locally the other writers' files are hard-linked into the new
folder before the exchange; remotely only the prefix's files the new folder lacks are removed.

A kill while the new folder is written leaves the old folder untouched and the temporary folder as debris
(the next writer removes it: pipeline/flow/debris.py); a kill during a remote publish leaves the journal,
which the next writer completes (`finish_publish`).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

from pipeline.core.storage.location import Location

PUBLISHING = ".publishing"  # suffix of the journal of a folder being published: `.NAME.publishing`
_ONLY = "only "  # the journal's second line: replace only the files whose name starts with this prefix


def shadow_of(final: Location) -> Location:
    """A fresh temporary name beside `final`, `.NAME.tmp-PID-xxxxxxxx` (debris once PID is gone)."""
    return final.parent / f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"


# ------------------------------------------------------------------------------------ local exchange

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_UNSUPPORTED = {errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EXDEV}


def _renameat2() -> object | None:
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_exchange_call = _renameat2()


def exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one atomic step; False where the system cannot (then nothing changed)."""
    if _exchange_call is None:
        return False
    if _exchange_call(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:  # type: ignore[operator]
        return True
    err = ctypes.get_errno()
    if err in _UNSUPPORTED:
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


def _swap_local(new: Path, final: Path, only: str) -> None:
    """Put the folder `new` in place of `final`; `new`'s path holds the old folder afterwards (or nothing)."""
    if only and final.is_dir():  # the other writers' files stay: hard links, no copy
        for f in final.iterdir():
            if f.is_file() and not f.name.startswith(only) and not (new / f.name).exists():
                try:
                    os.link(f, new / f.name)
                except OSError:  # a filesystem without hard links
                    shutil.copy2(f, new / f.name)
    if not final.exists():
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(new, final)
        return
    if exchange(new, final):
        return
    # killed between these two renames, `final` is missing and `.NAME.old-*` holds it: the next writer
    # puts it back (pipeline/flow/debris.py)
    old = final.parent / f".{final.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    os.replace(final, old)
    os.replace(new, final)
    os.replace(old, new)


# ------------------------------------------------------------------------------------------ publish


def publish(new: Location, final: Location, only: str = "") -> None:
    """Replace the folder `final` by the folder `new` beside it (written under `shadow_of(final)`).

    `only`: replace only the files of `final` whose name starts with it (a shared folder)."""
    if not final.is_remote:
        _swap_local(new.local, final.local, only)
        shutil.rmtree(new.local, ignore_errors=True)  # the old folder
        return
    journal = final.parent / f".{final.name}{PUBLISHING}"
    journal.write_text(new.name + (f"\n{_ONLY}{only}" if only else ""))
    finish_publish(final)


def publish_folder(local: str | os.PathLike[str], final: Location) -> None:
    """Replace an object-store folder by a locally built one, so that a failure leaves the old one whole:
    the upload (the long part) goes to a shadow beside it, then `publish` (journal, server-side copies)."""
    shadow = shadow_of(final)
    shadow.upload_from(local)
    publish(shadow, final)


def finish_publish(final: Location) -> bool:
    """Complete the publish a journal `.NAME.publishing` beside `final` records (idempotent); False if none."""
    journal = final.parent / f".{final.name}{PUBLISHING}"
    try:
        lines = journal.read_text().splitlines()
    except FileNotFoundError:
        return False
    shadow = final.parent / lines[0].strip()
    only = next((line[len(_ONLY):] for line in lines[1:] if line.startswith(_ONLY)), "")
    files = {f.relative_to(shadow): f for f in shadow.glob("**")}
    last = "manifest.json"
    for rel in sorted(r for r in files if r != last):
        files[rel].copy_to(final / rel)
    for old in final.glob("**"):
        rel = old.relative_to(final)
        if rel not in files and rel.startswith(only):
            old.unlink()
    if last in files:
        files[last].copy_to(final / last)
    journal.unlink()
    shadow.rmtree()
    return True


@contextlib.contextmanager
def replacing(finals: Sequence[Location], only: Sequence[str] = ()) -> Iterator[list[Location]]:
    """New folders for `finals`, written by the block and published in order when it ends without error.

    `only[i]`: replace only the files of `finals[i]` starting with it. An error in the block removes the new
    folders and leaves `finals` as they were. Outputs are published one folder after another: each one is
    whole, old or new; a kill between two leaves some new and some old (the writer's marker says so)."""
    shadows = [shadow_of(f) for f in finals]
    prefixes = list(only) + [""] * (len(finals) - len(only))
    for s in shadows:
        s.mkdir()
    handed = 0  # shadows given to publish: a remote one that failed there is its journal's, to finish later
    try:
        yield shadows
        for s, f, p in zip(shadows, finals, prefixes, strict=True):
            handed += 1
            publish(s, f, p)
    finally:
        for i, s in enumerate(shadows):
            if not (i < handed and s.is_remote):  # a local one holds the old folder or the unpublished new one
                with contextlib.suppress(OSError):
                    s.rmtree()


@contextlib.contextmanager
def local_staging(final: Location, prefix: str = "pmc-curate-", dir: str | os.PathLike[str] | None = None) -> Iterator[Path]:
    """A local folder to build output in; on success it replaces `final` (`publish`).

    Locally the folder is built beside `final` (no copy); for an object store it is built under `dir`
    (default: the system's temporary folder) and uploaded (`publish_folder`)."""
    if not final.is_remote:
        with replacing([final]) as (new,):
            yield new.local
        return
    if dir is not None:
        os.makedirs(dir, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=prefix, dir=dir))
    try:
        yield staging
        publish_folder(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
