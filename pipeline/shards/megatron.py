"""Megatron-LM / NeMo indexed datasets: `x.bin` (token ids) + `x.idx` (the index), plus our `x.csv.gz`.

Layout of `x.idx`, from NVIDIA/Megatron-LM `megatron/core/datasets/indexed_dataset.py` (`_IndexWriter`,
`_IndexReader`, `IndexedDatasetBuilder`; checked at commit d98e8a64, 2026-08-22), all little-endian:

    offset 0   9 bytes  b"MMIDIDX\\x00\\x00"              _INDEX_HEADER
           9   uint64   1                                 version
          17   uint8    dtype code (DType enum below)
          18   uint64   S, the sequence count
          26   uint64   D, the document count = documents + 1
          34   int32[S] sequence lengths, in tokens
               int64[S] sequence pointers: byte offset of each sequence in x.bin
               int64[D] document indices: sequence index where each document starts, a leading 0, then
                        the running count after each document (IndexedDatasetBuilder.document_indices)

`DType`: uint8=1, int8=2, int16=3, int32=4, int64=5, float64=6, float32=7, uint16=8. `x.bin` holds the
sequences' tokens back to back in that type. As `tools/preprocess_data.py` writes it without
`--split-sentences`, each document is one sequence (its tokens then the EOD token, `--append-eod`), and
the type is `DType.optimal_dtype(vocab_size)`: uint16 when the vocabulary has fewer than 65,500
entries, else int32. We follow that rule (there is no uint32 code).

Load in Megatron-LM: `--data-path PREFIX` per shard, or `--data-path W1 PREFIX1 W2 PREFIX2 ...`, or
`--data-args-path FILE` with that list (what `pipeline.shards.mixture.write_megatron_blend` writes);
`--tokenizer-type` / `--vocab-size` as the export's tokenizer. NeMo reads the same files.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.shards.common import (
    DOC_INDEX_SUFFIX,
    ShardFormatError,
    ShardWriter,
    choose_token_dtype,
    positional_ids,
    read_doc_index,
    shard_names,
)

FORMAT = "megatron"
INDEX_HEADER = b"MMIDIDX\x00\x00"
INDEX_VERSION = 1
BIN_SUFFIX = ".bin"
IDX_SUFFIX = ".idx"
HEADER_BYTES = 34  # 9 header + 8 version + 1 dtype code + 8 sequence count + 8 document count

# megatron/core/datasets/indexed_dataset.py, class DType
DTYPE_CODES: dict[str, int] = {
    "uint8": 1, "int8": 2, "int16": 3, "int32": 4, "int64": 5, "float64": 6, "float32": 7, "uint16": 8,
}  # fmt: skip
CODE_DTYPES = {code: name for name, code in DTYPE_CODES.items()}
ALLOWED_DTYPES = ("uint8", "int8", "int16", "uint16", "int32", "int64")  # the integer codes
OPTIMAL_UINT16_BELOW = 65500  # DType.optimal_dtype: `cardinality < 65500` -> uint16, else int32


def default_dtype(vocab_size: int) -> str:
    """Megatron's `DType.optimal_dtype(vocab_size)`: uint16 below 65,500 entries, else int32."""
    return "uint16" if vocab_size < OPTIMAL_UINT16_BELOW else "int32"


class MegatronWriter(ShardWriter):
    """Writes `{prefix}-NNNNN.bin` + `.idx` (+ `.csv.gz`), one sequence per document."""

    format = FORMAT

    @classmethod
    def choose_dtype(cls, vocab_size: int, override: str | None) -> np.dtype:
        return choose_token_dtype(
            vocab_size, allowed=ALLOWED_DTYPES, default=default_dtype(vocab_size), fmt=FORMAT, override=override
        )

    @property
    def max_document_tokens(self) -> int:
        # a sequence length is an int32 in the index
        return min(self.max_tokens_per_shard, int(np.iinfo(np.int32).max))

    def _data_name(self, name: str) -> str:
        return name + BIN_SUFFIX

    def _finish(self, name: str) -> tuple[str, tuple[str, ...]]:
        ends = np.asarray(self._ends, dtype=np.int64)
        self.out.write_bytes(name + IDX_SUFFIX, encode_index(ends, self.dtype))
        return name, (name + BIN_SUFFIX, name + IDX_SUFFIX)


def encode_index(doc_ends: np.ndarray, dtype: np.dtype) -> bytes:
    """The `.idx` bytes for documents ending at `doc_ends` (token offsets), one sequence each."""
    n = int(doc_ends.shape[0])
    lengths = np.diff(doc_ends, prepend=0).astype("<i4")
    pointers = (np.concatenate(([0], doc_ends[:-1])) * np.dtype(dtype).itemsize).astype("<i8")
    doc_indices = np.arange(n + 1, dtype="<i8")
    return b"".join((
        INDEX_HEADER,
        struct.pack("<Q", INDEX_VERSION),
        struct.pack("<B", DTYPE_CODES[np.dtype(dtype).name]),
        struct.pack("<Q", n),
        struct.pack("<Q", n + 1),
        lengths.tobytes(),
        pointers.tobytes(),
        doc_indices.tobytes(),
    ))  # fmt: skip


@dataclass(frozen=True)
class MegatronIndex:
    """The fields of a `.idx` file, as `_IndexReader` reads them."""

    version: int
    dtype_code: int
    dtype: np.dtype
    sequence_count: int
    document_count: int
    sequence_lengths: np.ndarray  # int32[S]
    sequence_pointers: np.ndarray  # int64[S]
    document_indices: np.ndarray  # int64[D]

    @property
    def documents(self) -> int:
        return self.document_count - 1


def read_index(path: str | os.PathLike[str]) -> MegatronIndex:
    """Read and check a `.idx` file (header, version, dtype code, counts, lengths, pointers, indices)."""
    path = Path(path)
    raw = path.read_bytes()
    if len(raw) < HEADER_BYTES or raw[:9] != INDEX_HEADER:
        raise ShardFormatError(f"{path}: not a Megatron index (header {raw[:9]!r}, expected {INDEX_HEADER!r})")
    (version,) = struct.unpack_from("<Q", raw, 9)
    if version != INDEX_VERSION:
        raise ShardFormatError(f"{path}: index version {version}, only {INDEX_VERSION} exists")
    (code,) = struct.unpack_from("<B", raw, 17)
    if code not in CODE_DTYPES:
        raise ShardFormatError(f"{path}: unknown dtype code {code} (Megatron's DType has 1-8)")
    s, d = struct.unpack_from("<QQ", raw, 18)
    expected = HEADER_BYTES + 4 * s + 8 * s + 8 * d
    if len(raw) not in (expected, expected + s):  # + s: the int8 sequence modes of a multimodal index
        raise ShardFormatError(f"{path}: {len(raw):,} bytes, expected {expected:,} for {s:,} sequences and {d:,} documents")
    dtype = np.dtype(CODE_DTYPES[code]).newbyteorder("<")
    off = HEADER_BYTES
    lengths = np.frombuffer(raw, dtype="<i4", count=s, offset=off)
    pointers = np.frombuffer(raw, dtype="<i8", count=s, offset=off + 4 * s)
    doc_indices = np.frombuffer(raw, dtype="<i8", count=d, offset=off + 12 * s)
    if s and (pointers[0] != 0 or np.any(pointers[1:] != np.cumsum(lengths[:-1], dtype=np.int64) * dtype.itemsize)):
        raise ShardFormatError(f"{path}: sequence pointers disagree with the sequence lengths")
    if d == 0 or doc_indices[0] != 0 or doc_indices[-1] != s or np.any(np.diff(doc_indices) < 0):
        raise ShardFormatError(f"{path}: document indices must run from 0 to the sequence count {s}, non-decreasing")
    return MegatronIndex(version, code, dtype, s, d, lengths, pointers, doc_indices)


def _prefix(path: Path) -> Path:
    for suffix in (BIN_SUFFIX, IDX_SUFFIX, DOC_INDEX_SUFFIX):
        if path.name.endswith(suffix):
            return path.with_name(path.name[: -len(suffix)])
    return path


def read_shard(path: str | os.PathLike[str]) -> Iterator[tuple[np.ndarray, str]]:
    """Documents of one dataset (the prefix, or its `.bin`/`.idx`), as (token ids, document id).

    A document is the concatenation of its sequences (one per document in our files). Ids come from
    `x.csv.gz`; a dataset written by another tool gets positional ids `x#0`, `x#1`, ...
    The arrays are read-only views of a memory map.
    """
    prefix = _prefix(Path(path))
    idx = read_index(prefix.with_name(prefix.name + IDX_SUFFIX))
    bin_path = prefix.with_name(prefix.name + BIN_SUFFIX)
    n_tokens = int(idx.sequence_lengths.sum(dtype=np.int64))
    size = bin_path.stat().st_size if bin_path.exists() else -1
    if size != n_tokens * idx.dtype.itemsize:
        raise ShardFormatError(f"{bin_path}: {size:,} bytes, the index describes {n_tokens:,} tokens of {idx.dtype.name}")
    sidecar = prefix.with_name(prefix.name + DOC_INDEX_SUFFIX)
    if sidecar.exists():
        rows = read_doc_index(sidecar)
        if len(rows) != idx.documents:
            raise ShardFormatError(f"{sidecar}: {len(rows):,} documents, {prefix.name}{IDX_SUFFIX} has {idx.documents:,}")
        ids: Iterator[str] = (r.id for r in rows)
    else:
        ids = positional_ids(prefix.name, idx.documents)
    if n_tokens == 0:
        yield from ((np.zeros(0, dtype=idx.dtype), doc_id) for doc_id in ids)
        return
    mm = np.memmap(bin_path, dtype=idx.dtype, mode="r")
    starts = idx.sequence_pointers // idx.dtype.itemsize
    for i, doc_id in enumerate(ids):
        first, last = int(idx.document_indices[i]), int(idx.document_indices[i + 1])
        if last == first:
            yield mm[0:0], doc_id
            continue
        begin = int(starts[first])
        end = int(starts[last - 1] + idx.sequence_lengths[last - 1])
        yield mm[begin:end], doc_id


def read_documents(path: str | os.PathLike[str]) -> Iterator[tuple[np.ndarray, str]]:
    """Documents of a dataset, or of every dataset in a directory (sorted by prefix), as (token ids, id)."""
    p = Path(path)
    if p.is_dir():
        for name in shard_names(p, IDX_SUFFIX):
            yield from read_shard(p / name)
    else:
        yield from read_shard(p)
