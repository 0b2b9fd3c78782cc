"""What the three shard formats share: token widths, the output directory, the document index, the writer.

A *shard* is one set of files a trainer reads as a unit (OLMo: `x.npy`; Megatron: the prefix `x` of
`x.bin` + `x.idx`; datatrove: `x.ds`). Every shard also gets `x.csv.gz`, one line per document:
`start,end,id,src,loc` (Dolma's layout, `python/dolma/tokenizer/memmap_writer.py` in allenai/dolma):
token offsets in the shard, `end` exclusive and including the end-of-document token, the document id
(a paragraph or article id), its source, and its 1-based position in the writer's input. That file is
what makes every token traceable to the paragraphs it came from, in every format.

Writers are deterministic (the same documents in the same order give byte-identical files: gzip
headers carry no time or name) and atomic per file (written under a hidden temporary name in the same
directory, then renamed; a failed writer removes its temporary files and leaves earlier shards whole).
"""

from __future__ import annotations

import math
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from pipeline.core.errors import ConfigError
from pipeline.shards.files import (  # noqa: F401  (the shared names every format module uses)
    DOC_INDEX_SUFFIX,
    DocIndexRow,
    OutputDir,
    PendingFile,
    ShardFormatError,
    as_output_dir,
    check_contiguous,
    check_text,
    encode_doc_index,
    read_doc_index,
)

# Dolma's MemmapWriter.DEFAULT_MAX_TOKENS (allenai/dolma python/dolma/tokenizer/memmap_writer.py): 512Mi
# tokens, 1 GiB at uint16 and 2 GiB at uint32. OLMo-core reads files of any size; the bound keeps a
# shard a reasonable unit to upload, shuffle and retry.
DEFAULT_MAX_TOKENS = 512 * 1024 * 1024



# ---------------------------------------------------------------------------------------------------
# Token widths


def _max_id(dtype: np.dtype) -> int:
    return int(np.iinfo(dtype).max)


def choose_token_dtype(
    vocab_size: int, *, allowed: Sequence[str], default: str, fmt: str, override: str | None = None
) -> np.dtype:
    """The little-endian integer type of the token ids.

    `default` is the format's own choice for this vocabulary (each format module computes it with its
    trainer's rule); `override` is the user's. A vocabulary whose largest id (vocab_size - 1) does not fit
    the chosen type is a ConfigError naming both.
    """
    if not isinstance(vocab_size, int | np.integer) or vocab_size < 1:
        raise ConfigError(f"vocab_size must be a positive integer, got {vocab_size!r}")
    name = override or default
    if name not in allowed:
        raise ConfigError(
            f"token type {name!r} is not one the {fmt} format can hold; choose one of {', '.join(allowed)}"
        )
    dtype = np.dtype(name).newbyteorder("<")
    if vocab_size - 1 > _max_id(dtype):
        widest = max(allowed, key=lambda n: _max_id(np.dtype(n)))
        hint = (
            f"leave the width unset to get {default}"
            if override and vocab_size - 1 <= _max_id(np.dtype(default))
            else f"the widest type the {fmt} format holds is {widest} (ids up to {_max_id(np.dtype(widest)):,})"
        )
        raise ConfigError(
            f"a vocabulary of {vocab_size:,} tokens (ids up to {vocab_size - 1:,}) is too large for token "
            f"type {name} (ids up to {_max_id(dtype):,}) in the {fmt} format; {hint}"
        )
    return dtype


# ---------------------------------------------------------------------------------------------------
# The output directory


@dataclass(frozen=True)
class ShardInfo:
    """One closed shard: where its files are and what it holds.

    `target` is what a trainer is pointed at, relative to `directory` (OLMo `x.npy`, Megatron the prefix
    `x`, datatrove `x.ds`); `files` are every file of the shard, data first, the document index last.
    `tokens` counts the end-of-document tokens too.
    """

    format: str
    directory: str
    name: str
    target: str
    files: tuple[str, ...]
    tokens: int
    documents: int
    dtype: str

    def trainer_path(self, root: str | None = None) -> str:
        """The path to give the trainer: under `root` (e.g. the upload URL of `directory`) or local."""
        if root is None:
            return str(Path(self.directory).resolve() / self.target)
        return f"{root.rstrip('/')}/{self.target}"

    def file_paths(self) -> list[Path]:
        """Local paths of every file of the shard (what the stage uploads)."""
        return [Path(self.directory) / f for f in self.files]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (for a manifest); `ShardInfo.from_dict` reads them back."""
        d = asdict(self)
        d["files"] = list(self.files)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ShardInfo:
        return cls(**{**d, "files": tuple(d["files"])})


# ---------------------------------------------------------------------------------------------------
# The document index: start,end,id,src,loc per document, gzip'd CSV without a header


class ShardWriter(ABC):
    """Writes documents of token ids into bounded shards of one format.

        with OlmoWriter("out/clinical", "clinical", vocab_size=100_278, eos_id=100_257) as w:
            for tokens, doc_id in documents:
                w.add(tokens, doc_id, source="be-clinical")
        shards = w.close()      # list[ShardInfo]; close() again returns the same list

    - `add` appends `eos_id` to every document (None: append nothing), checks every id is in
      [0, vocab_size), and skips empty documents (counted in `skipped_empty`), as Dolma's and
      Megatron's own tokenizers do.
    - A shard holds at most `max_tokens_per_shard` tokens; documents are never split across shards, so a
      document longer than the bound is a ConfigError.
    - Shards are named `{prefix}-{n:05d}`; give each writer (each Beam worker) its own prefix.
    - The integer width comes from the vocabulary with the trainer's rule (see each format);
      `token_dtype` overrides it.
    - Leaving the `with` block on an exception removes the open shard's temporary files.
    """

    format: ClassVar[str]

    def __init__(
        self,
        out_dir: str | os.PathLike[str] | OutputDir,
        prefix: str,
        *,
        vocab_size: int,
        eos_id: int | None,
        max_tokens_per_shard: int = DEFAULT_MAX_TOKENS,
        token_dtype: str | None = None,
        tokenizer_name: str | None = None,
    ) -> None:
        self.dtype = self.choose_dtype(vocab_size, token_dtype)
        self.prefix = prefix
        self.vocab_size = int(vocab_size)
        self.eos_id = eos_id
        self.max_tokens_per_shard = max_tokens_per_shard
        self.tokenizer_name = tokenizer_name
        self._validate()
        self.out = as_output_dir(out_dir)
        self._eos = None if eos_id is None else np.array([eos_id], dtype=self.dtype)
        self._shards: list[ShardInfo] = []
        self._data: PendingFile | None = None
        self._n_input = 0
        self._closed = False
        self.skipped_empty = 0
        self._reset_shard()

    # -- the format's part ------------------------------------------------------------------------

    @classmethod
    @abstractmethod
    def choose_dtype(cls, vocab_size: int, override: str | None) -> np.dtype:
        """The token type for this vocabulary, by the trainer's rule (or the override, checked)."""

    @abstractmethod
    def _data_name(self, name: str) -> str:
        """The data file's name for shard `name`."""

    @abstractmethod
    def _finish(self, name: str) -> tuple[str, tuple[str, ...]]:
        """Write the shard's index files; return (target, every file name, data first)."""

    def _validate(self) -> None:
        """Refuse a configuration the format cannot write (ConfigError), before any file is touched."""
        prefix = self.prefix
        if not prefix or "/" in prefix or "\\" in prefix or prefix.startswith(".") or "," in prefix:
            raise ConfigError(f"shard prefix {prefix!r}: use a plain file name without '/', ',' or a leading '.'")
        if not isinstance(self.max_tokens_per_shard, int) or self.max_tokens_per_shard < 1:
            raise ConfigError(f"max_tokens_per_shard must be a positive integer, got {self.max_tokens_per_shard!r}")
        if self.eos_id is not None and not 0 <= self.eos_id < self.vocab_size:
            raise ConfigError(f"eos_id {self.eos_id} is outside the vocabulary of {self.vocab_size:,} tokens")

    @property
    def max_document_tokens(self) -> int:
        return self.max_tokens_per_shard

    # -- the shared part --------------------------------------------------------------------------

    def _reset_shard(self) -> None:
        self._tokens = 0
        self._ends: list[int] = []
        self._ids: list[str] = []
        self._srcs: list[str] = []
        self._locs: list[int] = []

    def _as_tokens(self, doc_tokens: np.ndarray | Sequence[int], doc_id: str) -> np.ndarray:
        arr = np.asarray(doc_tokens)
        if arr.ndim != 1:
            raise ValueError(f"document {doc_id!r}: tokens must be one-dimensional, got shape {arr.shape}")
        if arr.size == 0:
            return arr
        if arr.dtype.kind not in "iu":
            raise ValueError(f"document {doc_id!r}: token ids must be integers, got {arr.dtype}")
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi >= self.vocab_size:
            bad = lo if lo < 0 else hi
            raise ConfigError(
                f"document {doc_id!r} holds token id {bad:,}, outside the vocabulary of {self.vocab_size:,} "
                "tokens: the tokenizer and vocab_size disagree"
            )
        return arr.astype(self.dtype, copy=False)

    def add(
        self,
        doc_tokens: np.ndarray | Sequence[int],
        doc_id: str,
        source: str = "",
        loc: int | None = None,
    ) -> int:
        """Append one document (its ids without the end token); returns the tokens written, EOS included.

        `doc_id` and `source` go to the document index; `loc` defaults to the document's 1-based
        position among all documents given to this writer (skipped empty ones included).
        """
        if self._closed:
            raise RuntimeError("add() after close()")
        self._n_input += 1
        check_text(doc_id, "doc_id")
        check_text(source, "source")
        arr = self._as_tokens(doc_tokens, doc_id)
        if arr.size == 0:
            self.skipped_empty += 1
            return 0
        n = arr.size + (0 if self._eos is None else 1)
        if n > self.max_document_tokens:
            raise ConfigError(
                f"document {doc_id!r} has {n:,} tokens, more than a {self.format} shard may hold "
                f"({self.max_document_tokens:,}); raise max_tokens_per_shard"
            )
        if self._data is not None and self._tokens + n > self.max_tokens_per_shard:
            self._close_shard()
        if self._data is None:
            self._data = self.out.open(self._data_name(self._shard_name()))
        f = self._data.file
        f.write(arr.data if arr.flags.c_contiguous else arr.tobytes())
        if self._eos is not None:
            f.write(self._eos.data)
        self._tokens += n
        self._ends.append(self._tokens)
        self._ids.append(doc_id)
        self._srcs.append(source)
        self._locs.append(self._n_input if loc is None else int(loc))
        return n

    def _shard_name(self) -> str:
        return f"{self.prefix}-{len(self._shards):05d}"

    def _close_shard(self) -> None:
        assert self._data is not None
        name = self._shard_name()
        self._data.commit()
        self._data = None
        target, files = self._finish(name)
        self.out.write_bytes(name + DOC_INDEX_SUFFIX, encode_doc_index(self._ends, self._ids, self._srcs, self._locs))
        self._shards.append(
            ShardInfo(
                format=self.format,
                directory=str(self.out.path),
                name=name,
                target=target,
                files=(*files, name + DOC_INDEX_SUFFIX),
                tokens=self._tokens,
                documents=len(self._ends),
                dtype=self.dtype.name,
            )
        )
        self._reset_shard()

    def close(self) -> list[ShardInfo]:
        """Finish the open shard; return every shard written (none for an empty input: no files)."""
        if not self._closed:
            if self._data is not None:
                self._close_shard()
            self._closed = True
        return list(self._shards)

    def abort(self) -> None:
        """Drop the open shard's temporary files; shards already closed stay."""
        if self._data is not None:
            self._data.discard()
            self._data = None
        self._closed = True

    @property
    def shards(self) -> list[ShardInfo]:
        """Shards closed so far."""
        return list(self._shards)

    @property
    def tokens(self) -> int:
        """Tokens written so far, EOS included."""
        return sum(s.tokens for s in self._shards) + self._tokens

    @property
    def documents(self) -> int:
        """Documents written so far (empty ones skipped)."""
        return sum(s.documents for s in self._shards) + len(self._ends)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


# ---------------------------------------------------------------------------------------------------
# Finding shards


def shard_names(directory: Path, data_suffix: str) -> list[str]:
    """Shard names in a directory by the suffix of their data file, sorted by name (= writing order
    within a prefix, since shard numbers are zero-padded)."""
    return sorted(p.name[: -len(data_suffix)] for p in directory.iterdir()
                  if p.name.endswith(data_suffix) and not p.name.startswith("."))  # fmt: skip


def positional_ids(name: str, n: int) -> Iterator[str]:
    """Ids for documents of a shard that has no document index (written by another tool)."""
    return (f"{name}#{i}" for i in range(n))


def humanize_metric(value: int, unit: str = "T", precision: int = 3) -> str:
    """`humanize.metric(value, unit)` for non-negative counts, as datatrove writes it on the third line
    of a `.ds.metadata` file (python-humanize/humanize src/humanize/number.py, MIT)."""
    exponent = int(math.floor(math.log10(abs(value)))) if value != 0 else 0
    if exponent >= 30:
        raise ValueError(f"{value} is beyond the metric prefixes this copy of humanize.metric handles")
    old_bucket = exponent // 3 * 3
    v = value / 10**old_bucket
    digits = int(max(0, precision - exponent % 3 - 1))
    if round(abs(v), digits) >= 1000:
        exponent += 3 - exponent % 3
        new_bucket = exponent // 3 * 3
        v /= 10 ** (new_bucket - old_bucket)
        digits = int(max(0, precision - exponent % 3 - 1))
    ordinal = "kMGTPEZYRQ"[exponent // 3 - 1] if exponent >= 3 else ""
    space = " " if (unit or ordinal) else ""
    return f"{format(v, f'.{digits}f')}{space}{ordinal}{unit}"
