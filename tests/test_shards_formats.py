"""pipeline.shards writers and readers, every format: round trips, widths, bad input, determinism, atomicity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.core.errors import ConfigError
from pipeline.shards import (
    FORMATS,
    ShardFormatError,
    detect_format,
    open_writer,
    read_documents,
    token_dtype,
)

EOS = 7


def random_docs(n: int, vocab: int, seed: int = 0, max_len: int = 60) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, vocab, size=int(rng.integers(1, max_len)), dtype=np.int64) for _ in range(n)]


def write(fmt: str, out: Path, docs, vocab: int = 1000, prefix: str = "part", **kw) -> list:
    kw.setdefault("max_tokens_per_shard", 400)
    with open_writer(fmt, out, prefix, vocab_size=vocab, eos_id=EOS, tokenizer_name="bert-base-uncased", **kw) as w:
        for i, d in enumerate(docs):
            w.add(d, f"PMC{i}/sec[0]/p[{i}]", source="be-test")
    return w.close()


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_in_order_with_ids_and_eos(fmt, tmp_path):
    docs = random_docs(200, 1000)
    shards = write(fmt, tmp_path, docs)
    assert len(shards) > 3, "the 400-token bound should cut several shards"
    assert all(s.tokens <= 400 for s in shards)
    back = list(read_documents(tmp_path))
    assert len(back) == len(docs)
    for i, ((tokens, doc_id), doc) in enumerate(zip(back, docs, strict=True)):
        assert doc_id == f"PMC{i}/sec[0]/p[{i}]"
        assert tokens[-1] == EOS
        np.testing.assert_array_equal(tokens[:-1], doc)
    assert sum(s.tokens for s in shards) == sum(len(d) + 1 for d in docs)
    assert sum(s.documents for s in shards) == len(docs)
    # every file a shard names exists, and nothing else (no temporary files left behind)
    named = {f for s in shards for f in s.files}
    assert {p.name for p in tmp_path.iterdir()} == named
    assert detect_format(tmp_path) == fmt
    # each shard reads alone too, through any of its files
    for s in shards:
        for f in s.files[:1]:
            assert sum(1 for _ in read_documents(tmp_path / f)) == s.documents


@pytest.mark.parametrize("fmt", FORMATS)
def test_lists_and_any_integer_dtype_are_accepted(fmt, tmp_path):
    docs = [[1, 2, 3], np.array([4, 5], dtype=np.uint8), np.array([999], dtype=np.int32)]
    write(fmt, tmp_path, docs)
    assert [t.tolist() for t, _ in read_documents(tmp_path)] == [[1, 2, 3, EOS], [4, 5, EOS], [999, EOS]]


@pytest.mark.parametrize("fmt", FORMATS)
def test_same_input_gives_byte_identical_files(fmt, tmp_path):
    docs = random_docs(120, 50_000, seed=3)
    a = write(fmt, tmp_path / "a", docs, vocab=50_000)
    b = write(fmt, tmp_path / "b", docs, vocab=50_000)
    assert [s.files for s in a] == [s.files for s in b]
    for s in a:
        for f in s.files:
            assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f


@pytest.mark.parametrize("fmt", FORMATS)
def test_empty_input_writes_nothing(fmt, tmp_path):
    shards = write(fmt, tmp_path, [])
    assert shards == []
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_empty_documents_are_skipped_and_counted(fmt, tmp_path):
    with open_writer(fmt, tmp_path, "p", vocab_size=100, eos_id=EOS, tokenizer_name="t") as w:
        w.add([], "empty-1")
        assert w.add([5, 6], "full") == 3
        w.add(np.array([], dtype=np.int64), "empty-2")
    assert w.skipped_empty == 2 and w.documents == 1 and w.tokens == 3
    assert [(t.tolist(), i) for t, i in read_documents(tmp_path)] == [([5, 6, EOS], "full")]


@pytest.mark.parametrize(
    ("fmt", "vocab", "expected"),
    [
        ("olmo", 65_536, "uint16"), ("olmo", 65_537, "uint32"), ("olmo", 100_278, "uint32"),
        ("datatrove", 65_536, "uint16"), ("datatrove", 65_537, "uint32"),
        # Megatron's DType.optimal_dtype: uint16 below 65,500 entries, else int32
        ("megatron", 65_499, "uint16"), ("megatron", 65_500, "int32"), ("megatron", 100_278, "int32"),
    ],
)  # fmt: skip
def test_width_from_vocabulary(fmt, vocab, expected, tmp_path):
    assert token_dtype(fmt, vocab).name == expected
    top = vocab - 1  # the largest id must survive the round trip
    shards = write(fmt, tmp_path, [[0, top, top - 1]], vocab=vocab)
    assert shards[0].dtype == expected
    data = tmp_path / shards[0].files[0]
    assert data.stat().st_size == 4 * np.dtype(expected).itemsize
    assert next(read_documents(tmp_path))[0].tolist() == [0, top, top - 1, EOS]


@pytest.mark.parametrize("fmt", FORMATS)
def test_vocabulary_too_large_for_the_width_names_both(fmt, tmp_path):
    with pytest.raises(ConfigError) as e:
        open_writer(fmt, tmp_path / "x", "p", vocab_size=100_278, eos_id=EOS, token_dtype="uint16", tokenizer_name="t")
    assert "100,278" in str(e.value) and "uint16" in str(e.value)
    assert not (tmp_path / "x").exists()


def test_vocabulary_beyond_every_width_of_the_format():
    with pytest.raises(ConfigError, match="int32"):
        token_dtype("megatron", 2**31 + 1)
    with pytest.raises(ConfigError, match="uint32"):
        token_dtype("datatrove", 2**32 + 1)
    with pytest.raises(ConfigError, match="not one the datatrove format can hold"):
        token_dtype("datatrove", 100, "int32")
    with pytest.raises(ConfigError, match="unknown shard format"):
        token_dtype("mds", 100)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("bad", [1000, 5000, -1])
def test_token_outside_the_vocabulary_is_refused_and_leaves_no_partial_shard(fmt, bad, tmp_path):
    good = random_docs(30, 1000)
    w = open_writer(fmt, tmp_path, "p", vocab_size=1000, eos_id=EOS, max_tokens_per_shard=400, tokenizer_name="t")
    with pytest.raises(ConfigError) as e, w:
        for i, d in enumerate(good):
            w.add(d, f"d{i}")
        w.add([1, bad, 2], "bad-doc")
    assert "bad-doc" in str(e.value) and f"{bad:,}" in str(e.value) and "1,000" in str(e.value)
    # closed shards stay whole; the open one's temporary file is gone
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    back = list(read_documents(tmp_path)) if any(tmp_path.iterdir()) else []
    assert [i for _, i in back] == [f"d{i}" for i in range(len(back))]


def test_bad_configuration_is_refused_before_any_file(tmp_path):
    out = tmp_path / "x"
    with pytest.raises(ConfigError, match="eos_id"):
        open_writer("olmo", out, "p", vocab_size=10, eos_id=10)
    with pytest.raises(ConfigError, match="prefix"):
        open_writer("olmo", out, "a/b", vocab_size=10, eos_id=1)
    with pytest.raises(ConfigError, match="tokenizer_name"):
        open_writer("datatrove", out, "p", vocab_size=10, eos_id=1)
    with pytest.raises(ConfigError, match="unknown shard format"):
        open_writer("mds", out, "p", vocab_size=10, eos_id=1)
    with pytest.raises(ConfigError, match="local directory"):
        open_writer("olmo", "s3://bucket/x", "p", vocab_size=10, eos_id=1)
    assert not out.exists()


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_document_longer_than_a_shard_is_refused(fmt, tmp_path):
    with open_writer(fmt, tmp_path, "p", vocab_size=100, eos_id=EOS, max_tokens_per_shard=10, tokenizer_name="t") as w:
        w.add(list(range(9)), "fits")  # 9 + EOS = 10
        with pytest.raises(ConfigError, match="raise max_tokens_per_shard"):
            w.add(list(range(10)), "too-long")


@pytest.mark.parametrize("fmt", FORMATS)
def test_non_integer_tokens_and_bad_ids_are_refused(fmt, tmp_path):
    with open_writer(fmt, tmp_path, "p", vocab_size=100, eos_id=EOS, tokenizer_name="t") as w:
        with pytest.raises(ValueError, match="integers"):
            w.add(np.array([1.0, 2.0]), "floats")
        with pytest.raises(ValueError, match="one-dimensional"):
            w.add(np.zeros((2, 2), dtype=np.int64), "2d")
        with pytest.raises(ValueError, match="line break"):
            w.add([1], "id\nwith a newline")


def test_no_eos_when_eos_id_is_none(tmp_path):
    with open_writer("megatron", tmp_path, "p", vocab_size=100, eos_id=None) as w:
        w.add([1, 2], "a")
        w.add([3], "b")
    assert [t.tolist() for t, _ in read_documents(tmp_path)] == [[1, 2], [3]]


def test_loc_is_the_input_position_unless_given(tmp_path):
    from pipeline.shards import read_doc_index

    with open_writer("olmo", tmp_path, "p", vocab_size=100, eos_id=EOS) as w:
        w.add([1], "a")
        w.add([], "skipped")
        w.add([2], "b", source="s.parquet")
        w.add([3], "c", loc=42)
    rows = read_doc_index(tmp_path / "p-00000.csv.gz")
    assert [(r.start, r.end, r.id, r.src, r.loc) for r in rows] == [
        (0, 2, "a", "", 1), (2, 4, "b", "s.parquet", 3), (4, 6, "c", "", 42),
    ]  # fmt: skip


def test_several_writers_share_a_directory_by_prefix(tmp_path):
    write("olmo", tmp_path, [[1, 2]], prefix="w1")
    write("olmo", tmp_path, [[3]], prefix="w0")
    assert [t.tolist() for t, _ in read_documents(tmp_path)] == [[3, EOS], [1, 2, EOS]]  # sorted by name


def test_close_twice_returns_the_same_shards_and_add_after_close_fails(tmp_path):
    w = open_writer("olmo", tmp_path, "p", vocab_size=100, eos_id=EOS)
    w.add([1], "a")
    assert w.close() == w.close()
    with pytest.raises(RuntimeError):
        w.add([1], "b")


def test_detect_format_refuses_mixed_or_empty_directories(tmp_path):
    with pytest.raises(ConfigError, match="no shards"):
        detect_format(tmp_path)
    write("olmo", tmp_path, [[1]])
    write("megatron", tmp_path, [[1]], prefix="m")
    with pytest.raises(ConfigError, match="several formats"):
        detect_format(tmp_path)
    assert len(list(read_documents(tmp_path, format="megatron"))) == 1


def test_reading_a_truncated_data_file_fails_clearly(tmp_path):
    shards = write("olmo", tmp_path, random_docs(5, 1000))
    data = tmp_path / shards[0].files[0]
    data.write_bytes(data.read_bytes()[:-2])
    with pytest.raises(ShardFormatError):
        list(read_documents(tmp_path))
