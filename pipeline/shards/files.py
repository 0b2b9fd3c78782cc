"""Shard files on disk: written atomically under a hidden name, and the per-shard document index.

Every shard gets `x.csv.gz`, one line per document: `start,end,id,src,loc` (Dolma's layout,
`python/dolma/tokenizer/memmap_writer.py` in allenai/dolma): token offsets in the shard, `end` exclusive
and including the end-of-document token, the document id, its source, and its 1-based position in the
writer's input. Files are deterministic (gzip headers carry no time or name).
"""

from __future__ import annotations

import csv
import gzip
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pipeline.core.errors import ConfigError

DOC_INDEX_SUFFIX = ".csv.gz"
_GZIP_LEVEL = 6  # the index is ~1% of a shard's bytes; level 9 costs 3x the time for ~2% smaller files


class ShardFormatError(ConfigError):
    """A file is not a valid shard of its format (bad header, sizes that disagree, offsets out of range)."""


class PendingFile:
    """A file being written under a hidden temporary name; `commit()` renames it into place."""

    def __init__(self, directory: Path, name: str) -> None:
        self.final = directory / name
        self.temp = directory / f".{name}.tmp-{os.getpid()}"
        self.file: BinaryIO = open(self.temp, "wb", buffering=1 << 20)  # noqa: SIM115 (closed by commit/discard)

    def commit(self) -> None:
        if not self.file.closed:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
        os.replace(self.temp, self.final)

    def discard(self) -> None:
        if not self.file.closed:
            self.file.close()
        self.temp.unlink(missing_ok=True)


class OutputDir:
    """A local directory that shard files are written into, each file atomically.

    The library writes local files only; the export stage uploads `ShardInfo.files` afterwards through
    the project's storage layer, so a remote destination never sees a partial file either.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if "://" in str(path):
            raise ConfigError(f"{path}: shard writers write to a local directory; upload the files afterwards")
        self.path.mkdir(parents=True, exist_ok=True)

    def open(self, name: str) -> PendingFile:
        """A pending file `name` in this directory (binary, buffered)."""
        return PendingFile(self.path, name)

    def write_bytes(self, name: str, data: bytes) -> None:
        """Write a whole small file atomically."""
        pending = self.open(name)
        try:
            pending.file.write(data)
            pending.commit()
        except BaseException:
            pending.discard()
            raise

    def __str__(self) -> str:
        return str(self.path)


def as_output_dir(out_dir: str | os.PathLike[str] | OutputDir) -> OutputDir:
    return out_dir if isinstance(out_dir, OutputDir) else OutputDir(out_dir)


# ---------------------------------------------------------------------------------------------------
# What a writer reports


def check_text(value: str, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a str, got {type(value).__name__}")
    if "\n" in value or "\r" in value:
        # OLMo-core and most readers split the index on lines; a line break inside a field would need a
        # CSV parser that they do not use
        raise ValueError(f"{what} {value!r} holds a line break")
    return value


def encode_doc_index(ends: Sequence[int], ids: Sequence[str], srcs: Sequence[str], locs: Sequence[int]) -> bytes:
    """The gzip'd CSV bytes of a document index (deterministic: no time or name in the gzip header)."""
    text = io.StringIO()
    w = csv.writer(text, lineterminator="\n")
    start = 0
    for end, doc_id, src, loc in zip(ends, ids, srcs, locs, strict=True):
        w.writerow((start, end, doc_id, src, loc))
        start = end
    raw = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=_GZIP_LEVEL, mtime=0) as gz:
        gz.write(text.getvalue().encode("utf-8"))
    return raw.getvalue()


@dataclass(frozen=True)
class DocIndexRow:
    start: int
    end: int
    id: str
    src: str
    loc: int


def read_doc_index(path: str | os.PathLike[str]) -> list[DocIndexRow]:
    """Read a `start,end,id,src,loc` index (ours or Dolma's; Dolma's `loc` is a line number)."""
    with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
        rows = []
        for n, row in enumerate(csv.reader(f), start=1):
            if len(row) < 2:
                raise ShardFormatError(f"{path}: line {n} has {len(row)} fields, expected start,end,id,src,loc")
            start, end = int(row[0]), int(row[1])
            doc_id = row[2] if len(row) > 2 else ""
            src = row[3] if len(row) > 3 else ""
            loc = int(row[4]) if len(row) > 4 and row[4] else n
            rows.append(DocIndexRow(start, end, doc_id, src, loc))
    return rows


def check_contiguous(path: str | os.PathLike[str], rows: Sequence[DocIndexRow], n_tokens: int) -> None:
    """Documents must tile the shard: each starts where the previous ended, the last ends at its end."""
    expected = 0
    for r in rows:
        if r.start != expected or r.end < r.start:
            raise ShardFormatError(
                f"{path}: document {r.id!r} spans [{r.start}, {r.end}) but the previous one ended at {expected}"
            )
        expected = r.end
    if expected != n_tokens:
        raise ShardFormatError(f"{path}: the documents cover {expected:,} tokens, the data file holds {n_tokens:,}")


# ---------------------------------------------------------------------------------------------------
# The writer
