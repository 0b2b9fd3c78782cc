"""The bytes of each format, checked field by field against the layouts their trainers publish.

- Megatron `.idx`: NVIDIA/Megatron-LM megatron/core/datasets/indexed_dataset.py (_IndexWriter/_IndexReader).
- OLMo `.npy` + `.csv.gz`: allenai/dolma python/dolma/tokenizer/memmap_writer.py, read as OLMo-core's
  src/olmo_core/data/utils.py iter_document_indices reads it.
- datatrove `.ds` + `.ds.index` + `.ds.metadata`: huggingface/datatrove src/datatrove/pipeline/tokens/tokenizer.py.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from pipeline.shards import ShardFormatError, open_writer, read_documents
from pipeline.shards.common import humanize_metric
from pipeline.shards.megatron import read_index

EOS = 2
DOCS = [[10, 11, 12], [13], [14, 15, 16, 17, 18]]  # + EOS: lengths 4, 2, 6


def _write(fmt: str, out: Path, vocab: int = 1000, docs=DOCS):
    with open_writer(fmt, out, "ds", vocab_size=vocab, eos_id=EOS, tokenizer_name="bert-base-uncased") as w:
        for i, d in enumerate(docs):
            w.add(d, f"doc{i}", source="src.parquet")
    (shard,) = w.close()
    return shard


@pytest.mark.parametrize(("vocab", "code", "itemsize"), [(1000, 8, 2), (100_278, 4, 4)])
def test_megatron_idx_field_by_field(tmp_path, vocab, code, itemsize):
    shard = _write("megatron", tmp_path, vocab)
    raw = (tmp_path / "ds-00000.idx").read_bytes()
    assert raw[:9] == b"MMIDIDX\x00\x00"
    assert struct.unpack("<Q", raw[9:17]) == (1,)  # version
    assert struct.unpack("<B", raw[17:18]) == (code,)  # DType: uint16 = 8, int32 = 4
    seq_count, doc_count = struct.unpack("<QQ", raw[18:34])
    assert (seq_count, doc_count) == (3, 4)  # one sequence per document; document indices hold a leading 0
    off = 34
    lengths = struct.unpack("<3i", raw[off : off + 12])
    pointers = struct.unpack("<3q", raw[off + 12 : off + 36])
    doc_indices = struct.unpack("<4q", raw[off + 36 : off + 68])
    assert len(raw) == off + 68
    assert lengths == (4, 2, 6)
    assert pointers == (0, 4 * itemsize, 6 * itemsize)  # byte offsets into .bin
    assert doc_indices == (0, 1, 2, 3)
    bin_raw = (tmp_path / "ds-00000.bin").read_bytes()
    fmt = "<12H" if itemsize == 2 else "<12i"
    assert struct.unpack(fmt, bin_raw) == (10, 11, 12, 2, 13, 2, 14, 15, 16, 17, 18, 2)
    assert shard.target == "ds-00000"  # Megatron is given the prefix
    idx = read_index(tmp_path / "ds-00000.idx")
    assert (idx.sequence_count, idx.document_count, idx.documents) == (3, 4, 3)


def _handmade_idx(lengths, doc_indices, code=8, itemsize=2) -> bytes:
    pointers = np.concatenate(([0], np.cumsum(lengths[:-1]))) * itemsize
    return (
        b"MMIDIDX\x00\x00" + struct.pack("<Q", 1) + struct.pack("<B", code)
        + struct.pack("<QQ", len(lengths), len(doc_indices))
        + np.asarray(lengths, "<i4").tobytes() + np.asarray(pointers, "<i8").tobytes()
        + np.asarray(doc_indices, "<i8").tobytes()
    )  # fmt: skip


def test_megatron_reader_joins_the_sentences_of_a_document(tmp_path):
    # preprocess_data.py --split-sentences: document 0 is two sequences, document 1 one
    (tmp_path / "x.idx").write_bytes(_handmade_idx([2, 3, 1], [0, 2, 3]))
    (tmp_path / "x.bin").write_bytes(np.array([1, 2, 3, 4, 5, 6], "<u2").tobytes())
    assert [(t.tolist(), i) for t, i in read_documents(tmp_path / "x")] == [([1, 2, 3, 4, 5], "x#0"), ([6], "x#1")]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b"NOTANIDX\x00" + b[9:], "header"),
        (lambda b: b[:9] + struct.pack("<Q", 2) + b[17:], "version"),
        (lambda b: b[:17] + b"\x09" + b[18:], "dtype code"),
        (lambda b: b[:-8], "bytes"),
        (lambda b: b[:34 + 12] + struct.pack("<q", 5) + b[34 + 20:], "pointers"),
    ],
)  # fmt: skip
def test_megatron_reader_refuses_a_corrupt_index(tmp_path, mutate, message):
    good = _handmade_idx([2, 3, 1], [0, 2, 3])
    (tmp_path / "x.idx").write_bytes(mutate(good))
    (tmp_path / "x.bin").write_bytes(np.zeros(6, "<u2").tobytes())
    with pytest.raises(ShardFormatError, match=message):
        read_index(tmp_path / "x.idx")


def test_olmo_npy_is_a_raw_memmap_and_csv_gz_is_dolmas_columns(tmp_path):
    shard = _write("olmo", tmp_path, 100_278)
    data = tmp_path / "ds-00000.npy"
    assert shard.target == "ds-00000.npy" and shard.dtype == "uint32"
    tokens = np.memmap(data, dtype=np.uint32, mode="r")  # no .npy header: OLMo-core memory-maps it as is
    assert tokens.tolist() == [10, 11, 12, 2, 13, 2, 14, 15, 16, 17, 18, 2]
    raw = (tmp_path / "ds-00000.csv.gz").read_bytes()
    assert raw[:2] == b"\x1f\x8b" and raw[4:8] == b"\x00\x00\x00\x00"  # gzip, mtime 0: deterministic
    lines = gzip.decompress(raw).decode().splitlines()
    assert lines == ["0,4,doc0,src.parquet,1", "4,6,doc1,src.parquet,2", "6,12,doc2,src.parquet,3"]
    # OLMo-core's iter_document_indices: `start, end, *_ = line.split(",")`, end exclusive
    spans = [tuple(int(x) for x in line.split(",")[:2]) for line in lines]
    assert [tokens[s:e][-1] for s, e in spans] == [EOS, EOS, EOS]
    # and its local path: documents end at each EOS
    assert (np.flatnonzero(np.asarray(tokens) == EOS) + 1).tolist() == [e for _, e in spans]


def test_olmo_reader_splits_a_foreign_file_at_eos(tmp_path):
    np.array([5, 6, EOS, 7, EOS], dtype=np.uint16).tofile(tmp_path / "f.npy")
    with pytest.raises(ShardFormatError, match="dtype and eos_id"):
        list(read_documents(tmp_path / "f.npy"))
    docs = [(t.tolist(), i) for t, i in read_documents(tmp_path / "f.npy", dtype="uint16", eos_id=EOS)]
    assert docs == [([5, 6, EOS], "f#0"), ([7, EOS], "f#1")]


def test_olmo_ids_with_commas_are_quoted_and_read_back(tmp_path):
    with open_writer("olmo", tmp_path, "q", vocab_size=100, eos_id=EOS) as w:
        w.add([1], 'PMC1/sec[0]/p[1],"odd"', source="a,b")
    line = gzip.decompress((tmp_path / "q-00000.csv.gz").read_bytes()).decode()
    assert line.startswith("0,2,")  # the first two fields, all OLMo-core reads, stay plain
    assert [i for _, i in read_documents(tmp_path)] == ['PMC1/sec[0]/p[1],"odd"']


@pytest.mark.parametrize(("vocab", "size", "fmt"), [(1000, 2, "<H"), (100_278, 4, "<I")])
def test_datatrove_ds_index_and_metadata(tmp_path, vocab, size, fmt):
    shard = _write("datatrove", tmp_path, vocab)
    assert shard.target == "ds-00000.ds"
    ds = (tmp_path / "ds-00000.ds").read_bytes()
    assert list(struct.unpack(f"<12{fmt[1]}", ds)) == [10, 11, 12, 2, 13, 2, 14, 15, 16, 17, 18, 2]
    index = (tmp_path / "ds-00000.ds.index").read_bytes()
    assert struct.unpack("<3Q", index) == (4, 6, 12)  # uint64 document ends, in tokens, no header
    meta = (tmp_path / "ds-00000.ds.metadata").read_text()
    assert meta == f"bert-base-uncased|{size}\n12\n12.0 T"  # name|token_size, count, humanize.metric(count, "T")


def test_datatrove_reader_without_our_sidecar(tmp_path):
    _write("datatrove", tmp_path)
    (tmp_path / "ds-00000.csv.gz").unlink()
    (tmp_path / "ds-00000.ds.metadata").unlink()
    assert [(t.tolist(), i) for t, i in read_documents(tmp_path)] == [
        ([10, 11, 12, 2], "ds-00000.ds#0"), ([13, 2], "ds-00000.ds#1"), ([14, 15, 16, 17, 18, 2], "ds-00000.ds#2"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("value", "text"),
    [(0, "0.00 T"), (12, "12.0 T"), (999, "999 T"), (1500, "1.50 kT"), (123_000, "123 kT"),
     (999_999, "1.00 MT"), (1_230_000, "1.23 MT"), (200_000_000, "200 MT"), (33_600_000_000, "33.6 GT")],
)  # fmt: skip
def test_humanize_metric_matches_humanize(value, text):
    # the strings python-humanize's own metric() returns (checked against its source, commit c3a124cd)
    assert humanize_metric(value, "T") == text
