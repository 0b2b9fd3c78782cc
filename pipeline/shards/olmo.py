"""OLMo-core / Dolma token files: `x.npy` (a raw memmap of token ids, no .npy header) + `x.csv.gz`.

The layout, as the sources write and read it:
- allenai/dolma `python/dolma/tokenizer/memmap_writer.py`: the `.npy` file is `np.memmap` data, the
  documents' token ids one after another; beside it `x.csv.gz` (same base name) holds one CSV row per
  document, `start,end,id,src,loc`, no header; `start`/`end` are token offsets (0-based, end exclusive),
  `loc` the document's 1-based line in its source file. A file holds at most 512Mi tokens by default.
- allenai/OLMo-core `src/olmo_core/data/utils.py` (`iter_document_indices`): reads only the first two
  columns (`line.split(",")`) of `x.npy -> x.csv.gz` for remote files; for local files with `eos_token_id`
  and `dtype` it finds documents by their EOS token instead. So every document must end with EOS, and
  the EOS id should not occur inside a document.
- The token type: OLMo-core's `get_dtype()` (data/numpy_dataset.py, data/composable/numpy_document_source.py)
  and Dolma (`np.min_scalar_type(vocab_size - 1)`) take the smallest unsigned type holding
  `vocab_size - 1`. We write uint16 up to 65,536 entries and uint32 above (OLMo-2's dolma2 tokenizer:
  100,278 entries, EOS 100257); uint8 only on request, since OLMo-core would also infer it for
  vocabularies of up to 256 entries. Set `dtype` in the OLMo-core config explicitly all the same.

Load in OLMo-core (paths from a mix file written by `pipeline.shards.mixture.write_olmo_mix`):

    NumpyFSLDatasetConfig(paths=[...], metadata=[{"label": ...}, ...], sequence_length=4096,
                          tokenizer=TokenizerConfig.dolma2(), dtype=NumpyDatasetDType.uint32, ...)
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from pipeline.shards.common import (
    DOC_INDEX_SUFFIX,
    ShardFormatError,
    ShardWriter,
    check_contiguous,
    choose_token_dtype,
    positional_ids,
    read_doc_index,
    shard_names,
)

FORMAT = "olmo"
DATA_SUFFIX = ".npy"
ALLOWED_DTYPES = ("uint8", "uint16", "uint32", "uint64")


def default_dtype(vocab_size: int) -> str:
    """uint16 for vocabularies of up to 65,536 entries, else uint32 (uint64 beyond 2**32)."""
    if vocab_size - 1 <= np.iinfo(np.uint16).max:
        return "uint16"
    return "uint32" if vocab_size - 1 <= np.iinfo(np.uint32).max else "uint64"


class OlmoWriter(ShardWriter):
    """Writes `{prefix}-NNNNN.npy` + `{prefix}-NNNNN.csv.gz` shards (see the module docstring)."""

    format = FORMAT

    @classmethod
    def choose_dtype(cls, vocab_size: int, override: str | None) -> np.dtype:
        return choose_token_dtype(
            vocab_size, allowed=ALLOWED_DTYPES, default=default_dtype(vocab_size), fmt=FORMAT, override=override
        )

    def _data_name(self, name: str) -> str:
        return name + DATA_SUFFIX

    def _finish(self, name: str) -> tuple[str, tuple[str, ...]]:
        # the document index (x.csv.gz) is written by the base class: it is this format's own metadata
        return name + DATA_SUFFIX, (name + DATA_SUFFIX,)


def _shard_base(path: Path) -> Path:
    name = path.name
    for suffix in (DATA_SUFFIX, DOC_INDEX_SUFFIX):
        if name.endswith(suffix):
            return path.with_name(name[: -len(suffix)])
    return path


def read_shard(
    path: str | os.PathLike[str], *, dtype: str | None = None, eos_id: int | None = None
) -> Iterator[tuple[np.ndarray, str]]:
    """Documents of one shard (`x.npy`, `x.csv.gz` or the base `x`), as (token ids, document id).

    The token type is read from the sizes (file bytes / tokens in the index) unless given. Without a
    `.csv.gz` (files from another tool), `eos_id` and `dtype` are needed: documents are then cut after
    each EOS, as OLMo-core does, and get positional ids `x#0`, `x#1`, ...
    The arrays are read-only views of a memory map; copy them (`np.array(a)`) to keep them.
    """
    base = _shard_base(Path(path))
    data = base.with_name(base.name + DATA_SUFFIX)
    index = base.with_name(base.name + DOC_INDEX_SUFFIX)
    if not data.exists():
        raise ShardFormatError(f"{data}: no such OLMo token file")
    size = data.stat().st_size
    if index.exists():
        rows = read_doc_index(index)
        n_tokens = rows[-1].end if rows else 0
        if dtype is None:
            if n_tokens == 0 or size % n_tokens or size // n_tokens not in (1, 2, 4, 8):
                raise ShardFormatError(
                    f"{data}: {size:,} bytes for {n_tokens:,} tokens in {index.name}: cannot tell the token type; "
                    "pass dtype"
                )
            np_dtype = np.dtype(f"<u{size // n_tokens}")
        else:
            np_dtype = np.dtype(dtype).newbyteorder("<")
        if size != n_tokens * np_dtype.itemsize:
            raise ShardFormatError(f"{data}: {size:,} bytes, expected {n_tokens:,} tokens of {np_dtype.name}")
        check_contiguous(index, rows, n_tokens)
        if n_tokens == 0:
            return
        mm = np.memmap(data, dtype=np_dtype, mode="r")
        for r in rows:
            yield mm[r.start : r.end], r.id
        return
    if dtype is None or eos_id is None:
        raise ShardFormatError(f"{data}: no {index.name} beside it; pass dtype and eos_id to split it at EOS tokens")
    np_dtype = np.dtype(dtype).newbyteorder("<")
    if size == 0:
        return
    mm = np.memmap(data, dtype=np_dtype, mode="r")
    ends = (np.flatnonzero(mm == eos_id) + 1).tolist()
    if not ends or ends[-1] != mm.shape[0]:
        ends.append(mm.shape[0])  # trailing tokens without an EOS: one last document
    start = 0
    for end, doc_id in zip(ends, positional_ids(base.name, len(ends)), strict=True):
        yield mm[start:end], doc_id
        start = end


def read_documents(
    path: str | os.PathLike[str], *, dtype: str | None = None, eos_id: int | None = None
) -> Iterator[tuple[np.ndarray, str]]:
    """Documents of a shard, or of every shard in a directory (sorted by name), as (token ids, id)."""
    p = Path(path)
    if p.is_dir():
        for name in shard_names(p, DATA_SUFFIX):
            yield from read_shard(p / name, dtype=dtype, eos_id=eos_id)
    else:
        yield from read_shard(p, dtype=dtype, eos_id=eos_id)
