"""Token shards a trainer reads directly, and the mixture files that weigh them (numpy only).

    olmo.py       OLMo-core / Dolma: x.npy (raw token memmap) + x.csv.gz (start,end,id,src,loc)
    megatron.py   Megatron-LM / NeMo: x.bin + x.idx (MMIDIDX index), + x.csv.gz
    datatrove.py  datatrove / nanotron: x.ds + x.ds.index + x.ds.metadata, + x.csv.gz
    mixture.py    repeats as weights (OLMo mix list / source mixture, Megatron blend, nanotron weights),
                  exact token budgets (`scale_to_target`)
    common.py     ShardWriter (the shared writer), ShardInfo, token widths
    files.py      files written atomically (OutputDir) and the per-shard document index (x.csv.gz)

Writing:

    from pipeline.shards import open_writer
    with open_writer("megatron", "out/clinical", "clinical", vocab_size=30522, eos_id=102) as w:
        for ids, doc_id in docs:                # ids without the end token
            w.add(ids, doc_id, source="be-clinical")
    shards = w.close()                          # list[ShardInfo]

Reading back (numpy only; a directory reads every shard in it, sorted by name):

    from pipeline.shards import read_documents
    for tokens, doc_id in read_documents("out/clinical", format="megatron"):
        ...                                     # tokens end with the EOS id
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.errors import ConfigError
from pipeline.shards import datatrove, megatron, olmo
from pipeline.shards.common import (
    DEFAULT_MAX_TOKENS,
    DocIndexRow,
    OutputDir,
    ShardFormatError,
    ShardInfo,
    ShardWriter,
    read_doc_index,
)
from pipeline.shards.datatrove import DatatroveWriter
from pipeline.shards.megatron import MegatronWriter
from pipeline.shards.mixture import (
    Component,
    ComponentBudget,
    Mixture,
    apportion,
    from_repeats,
    scale_to_target,
)
from pipeline.shards.olmo import OlmoWriter

WRITERS: dict[str, type[ShardWriter]] = {"olmo": OlmoWriter, "megatron": MegatronWriter, "datatrove": DatatroveWriter}
FORMATS = tuple(WRITERS)

# the file that marks a shard of each format, for format detection
_MARKERS = {"olmo": olmo.DATA_SUFFIX, "megatron": megatron.IDX_SUFFIX, "datatrove": datatrove.DATA_SUFFIX}


def writer_class(fmt: str) -> type[ShardWriter]:
    """The writer of a format name (ConfigError naming the formats for an unknown one)."""
    try:
        return WRITERS[fmt]
    except KeyError:
        raise ConfigError(f"unknown shard format {fmt!r}; choose one of {', '.join(FORMATS)}") from None


def open_writer(fmt: str, out_dir: str | os.PathLike[str] | OutputDir, prefix: str, **kwargs: Any) -> ShardWriter:
    """A writer of format `fmt`; keyword arguments as `ShardWriter` (vocab_size, eos_id, ...)."""
    return writer_class(fmt)(out_dir, prefix, **kwargs)


def token_dtype(fmt: str, vocab_size: int, override: str | None = None) -> np.dtype:
    """The token type a writer of `fmt` would use for this vocabulary (ConfigError if it cannot)."""
    return writer_class(fmt).choose_dtype(vocab_size, override)


def detect_format(path: str | os.PathLike[str]) -> str:
    """The format of a shard file or of the shards in a directory (ConfigError when none or several)."""
    p = Path(path)
    if p.is_dir():
        found = sorted({fmt for fmt, suffix in _MARKERS.items()
                        if any(not q.name.startswith(".") for q in p.glob("*" + suffix))})  # fmt: skip
    elif not p.exists():  # a bare shard name or Megatron prefix: look at the files beside it
        found = sorted(fmt for fmt, suffix in _MARKERS.items() if p.with_name(p.name + suffix).exists())
    else:
        name = p.name
        found = [fmt for fmt, suffixes in (("olmo", (".npy",)), ("megatron", (".bin", ".idx")),
                                           ("datatrove", (".ds", ".ds.index", ".ds.metadata")))
                 if name.endswith(suffixes)]  # fmt: skip
    if len(found) != 1:
        what = "no shards" if not found else f"shards of several formats ({', '.join(found)})"
        raise ConfigError(f"{p}: {what}; pass format= one of {', '.join(FORMATS)}")
    return found[0]


def read_documents(path: str | os.PathLike[str], format: str | None = None, **kwargs: Any) -> Iterator[tuple[np.ndarray, str]]:
    """(token ids, document id) of every document of a shard or a directory of shards, in order.

    The format is detected from the file names unless given. Arrays are read-only memory-map views
    (copy to keep); token ids include the end-of-document token the writer appended.
    """
    fmt = format or detect_format(path)
    readers = {"olmo": olmo.read_documents, "megatron": megatron.read_documents, "datatrove": datatrove.read_documents}
    if fmt not in readers:
        raise ConfigError(f"unknown shard format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return readers[fmt](path, **kwargs)


__all__ = [
    "DEFAULT_MAX_TOKENS",
    "FORMATS",
    "WRITERS",
    "Component",
    "ComponentBudget",
    "DatatroveWriter",
    "DocIndexRow",
    "MegatronWriter",
    "Mixture",
    "OlmoWriter",
    "OutputDir",
    "ShardFormatError",
    "ShardInfo",
    "ShardWriter",
    "apportion",
    "detect_format",
    "from_repeats",
    "open_writer",
    "read_doc_index",
    "read_documents",
    "scale_to_target",
    "token_dtype",
    "writer_class",
]
