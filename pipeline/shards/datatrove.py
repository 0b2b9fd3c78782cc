"""datatrove / nanotron tokenized files: `x.ds` + `x.ds.index` + `x.ds.metadata`, plus our `x.csv.gz`.

The layout, from huggingface/datatrove `src/datatrove/pipeline/tokens/tokenizer.py` (`TokenizedFile`,
checked at commit a649de79, 2026-08-13) and `src/datatrove/utils/dataset.py` (`DatatroveFileDataset`):
- `x.ds`: the documents' token ids back to back, little-endian `H` (uint16) or `I` (uint32);
  `token_size` is 4 when the vocabulary has more than 65,536 entries, else 2
  (`PipelineStepWithTokenizer.token_size`, src/datatrove/utils/tokenization.py).
- `x.ds.index`: one little-endian uint64 per document, its end offset in tokens (exclusive), no header.
- `x.ds.metadata`: text, three lines without a final newline: `{tokenizer_name}|{token_size}`, the token
  count, and the count as `humanize.metric(count, "T")` (e.g. `1.50 kT`). nanotron reads the first line
  to load the tokenizer (`AutoTokenizer.from_pretrained(name)`) and the token size, so the name must be
  a hub id or a path the trainer can load.

nanotron's Nanoset reads every `*.ds` of a folder (`dataset_folder`) as fixed windows of
`sequence_length + 1` tokens and drops each file's last partial window; document boundaries for
positions come from `.ds.index` (or from the EOS id). One folder per mixture component:
`pipeline.shards.mixture.write_nanotron_weights` writes `dataset_folder` + `dataset_weights`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.core.errors import ConfigError
from pipeline.shards.common import (
    DOC_INDEX_SUFFIX,
    ShardFormatError,
    ShardWriter,
    check_contiguous,
    choose_token_dtype,
    humanize_metric,
    positional_ids,
    read_doc_index,
    shard_names,
)

FORMAT = "datatrove"
DATA_SUFFIX = ".ds"
INDEX_SUFFIX = ".ds.index"
METADATA_SUFFIX = ".ds.metadata"
ALLOWED_DTYPES = ("uint16", "uint32")


def default_dtype(vocab_size: int) -> str:
    """datatrove's rule: 4-byte tokens when the vocabulary exceeds 65,536 entries."""
    return "uint32" if vocab_size > np.iinfo(np.uint16).max + 1 else "uint16"


def encode_metadata(tokenizer_name: str, token_size: int, tokens: int) -> bytes:
    """The `.ds.metadata` text, byte for byte as `TokenizedFile.write_final_metadata` writes it."""
    return "\n".join([f"{tokenizer_name}|{token_size}", str(tokens), humanize_metric(tokens, "T")]).encode("utf-8")


class DatatroveWriter(ShardWriter):
    """Writes `{prefix}-NNNNN.ds` + `.ds.index` + `.ds.metadata` (+ `.csv.gz`).

    Needs `tokenizer_name`: nanotron loads the tokenizer named in `.ds.metadata`.
    """

    format = FORMAT

    def _validate(self) -> None:
        super()._validate()
        name = self.tokenizer_name
        if not name or "|" in name or "\n" in name:
            raise ConfigError(
                "the datatrove format needs tokenizer_name (a hub id or path without '|'): nanotron loads "
                "the tokenizer named in each .ds.metadata file"
            )

    @classmethod
    def choose_dtype(cls, vocab_size: int, override: str | None) -> np.dtype:
        return choose_token_dtype(
            vocab_size, allowed=ALLOWED_DTYPES, default=default_dtype(vocab_size), fmt=FORMAT, override=override
        )

    def _data_name(self, name: str) -> str:
        return name + DATA_SUFFIX

    def _finish(self, name: str) -> tuple[str, tuple[str, ...]]:
        self.out.write_bytes(name + INDEX_SUFFIX, np.asarray(self._ends, dtype="<u8").tobytes())
        assert self.tokenizer_name is not None
        self.out.write_bytes(
            name + METADATA_SUFFIX, encode_metadata(self.tokenizer_name, self.dtype.itemsize, self._tokens)
        )
        return name + DATA_SUFFIX, (name + DATA_SUFFIX, name + INDEX_SUFFIX, name + METADATA_SUFFIX)


@dataclass(frozen=True)
class DatatroveMetadata:
    tokenizer_name: str
    token_size: int
    tokens: int


def read_metadata(path: str | os.PathLike[str]) -> DatatroveMetadata:
    """Parse a `.ds.metadata` file (first line `name|token_size`, second the token count)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    if not lines or "|" not in lines[0]:
        raise ShardFormatError(f"{path}: the first line should be 'tokenizer_name|token_size'")
    name, size = lines[0].rsplit("|", 1)
    tokens = int(lines[1]) if len(lines) > 1 and lines[1].strip().lstrip("-").isdigit() else -1
    return DatatroveMetadata(name, int(size), tokens)


def _base(path: Path) -> Path:
    for suffix in (METADATA_SUFFIX, INDEX_SUFFIX, DATA_SUFFIX, DOC_INDEX_SUFFIX):
        if path.name.endswith(suffix):
            return path.with_name(path.name[: -len(suffix)])
    return path


def read_shard(path: str | os.PathLike[str], *, token_size: int | None = None) -> Iterator[tuple[np.ndarray, str]]:
    """Documents of one `.ds` file (or any of its companions), as (token ids, document id).

    The token size comes from `.ds.metadata` (else from the sizes of `.ds` and `.ds.index`, else the
    argument). Ids come from `x.csv.gz`; files from datatrove itself get positional ids `x.ds#0`, ...
    The arrays are read-only views of a memory map.
    """
    base = _base(Path(path))
    data = base.with_name(base.name + DATA_SUFFIX)
    index = base.with_name(base.name + INDEX_SUFFIX)
    meta = base.with_name(base.name + METADATA_SUFFIX)
    if not data.exists() or not index.exists():
        raise ShardFormatError(f"{data}: needs both {data.name} and {index.name}")
    ends = np.fromfile(index, dtype="<u8").astype(np.int64)
    size = data.stat().st_size
    if meta.exists():
        token_size = read_metadata(meta).token_size
    elif token_size is None:
        n = int(ends[-1]) if ends.size else 0
        if n == 0 or size % n or size // n not in (2, 4):
            raise ShardFormatError(f"{data}: cannot tell the token size from {size:,} bytes and {n:,} tokens; pass it")
        token_size = size // n
    if token_size not in (2, 4):
        raise ShardFormatError(f"{data}: token size {token_size}, datatrove writes 2 or 4")
    dtype = np.dtype("<u2" if token_size == 2 else "<u4")
    n_tokens = size // token_size
    if size % token_size or (ends.size and int(ends[-1]) != n_tokens) or np.any(np.diff(ends, prepend=0) < 0):
        raise ShardFormatError(f"{index}: document ends do not tile the {n_tokens:,} tokens of {data.name}")
    sidecar = base.with_name(base.name + DOC_INDEX_SUFFIX)
    if sidecar.exists():
        rows = read_doc_index(sidecar)
        check_contiguous(sidecar, rows, n_tokens)
        if [r.end for r in rows] != ends.tolist():
            raise ShardFormatError(f"{sidecar}: document ends differ from {index.name}")
        ids: Iterator[str] = (r.id for r in rows)
    else:
        ids = positional_ids(data.name, int(ends.size))
    if n_tokens == 0:
        return
    mm = np.memmap(data, dtype=dtype, mode="r")
    start = 0
    for end, doc_id in zip(ends.tolist(), ids, strict=True):
        yield mm[start:end], doc_id
        start = end


def read_documents(path: str | os.PathLike[str], *, token_size: int | None = None) -> Iterator[tuple[np.ndarray, str]]:
    """Documents of a `.ds` file, or of every `.ds` in a directory (sorted by name), as (token ids, id)."""
    p = Path(path)
    if p.is_dir():
        for name in shard_names(p, DATA_SUFFIX):
            yield from read_shard(p / name, token_size=token_size)
    else:
        yield from read_shard(p, token_size=token_size)
