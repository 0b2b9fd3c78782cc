"""Curate and report on s3:// and gs:// work directories write what a local run writes.

The object stores are real servers on 127.0.0.1 (moto for S3, gcp-storage-emulator for GCS); the
remote work directory gets the very Parquet files of a local one (tests.test_curate.build_workdir),
so every difference in the subsets would be curate's or the storage layer's.
"""

from __future__ import annotations

import gzip
import io
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from pipeline.core import labels as L
from pipeline.core import storage
from pipeline.core.errors import ConfigError
from pipeline.core.records import Article, Label, Paragraph, arrow_schema
from pipeline.core.workdir import Workdir
from pipeline.stages import curate as C
from pipeline.stages.report import report
from tests.test_curate import build_workdir

TABLES = ("articles", "paragraphs", "labels")


def _upload(local_root: Path, remote: str) -> Workdir:
    """The same tables in a remote work directory (the same bytes, uploaded)."""
    wd = Workdir.of(remote)
    for t in TABLES:
        wd.table(t).upload_from(local_root / t)
    return wd


def _decode(name: str, raw: bytes) -> list[dict[str, Any]]:
    if name.endswith(".zst"):
        data = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw), read_across_frames=True).read()
    else:
        data = gzip.decompress(raw)
    return [json.loads(line) for line in data.decode().splitlines()]


def _subset(loc: storage.Location) -> dict[str, Any]:
    """What a subset folder holds, read through the storage layer (local or remote alike)."""
    files = {f.relative_to(loc).replace("\\", "/"): f for f in loc.glob("**")}
    data = [pq.read_table(io.BytesIO(files[n].read_bytes())) for n in sorted(files) if n.startswith("data/")]
    table = pa.concat_tables(data)
    docs = [d for n in sorted(files) if n.startswith("export/") for d in _decode(n, files[n].read_bytes())]
    manifest = json.loads(files["manifest.json"].read_text())
    return {
        "names": sorted(files),
        "table": table,
        "rows": sorted(table.to_pylist(), key=lambda r: (r["paragraph_id"], r["copy"])),
        "docs": docs,
        "manifest": manifest,
        "card": files["README.md"].read_text(),
    }


def _approx(a: Any, b: Any) -> bool:
    """Equal, floats to 1e-9 relative: DuckDB's parallel sums (a score mean) may differ in the last digits
    between two runs on the same data, wherever it lives."""
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_approx(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_approx(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _differences(a: Any, b: Any, at: str = "") -> list[str]:
    """Where two JSON values differ beyond _approx (for a readable failure)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(a.keys() | b.keys()) for d in _differences(a.get(k), b.get(k), f"{at}.{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in _differences(x, y, f"{at}[{i}]")]
    return [] if _approx(a, b) else [f"{at}: {a!r} != {b!r}"]


def _assert_same_subset(local: dict[str, Any], remote: dict[str, Any]) -> None:
    assert remote["names"] == local["names"]
    assert remote["table"].num_rows > 0
    assert remote["rows"] == local["rows"]
    assert remote["table"].equals(local["table"])  # same order, columns and types too
    assert remote["docs"] == local["docs"]
    lm, rm = local["manifest"], remote["manifest"]
    for key in ("name", "recipe", "parameters", "label_bindings", "stats", "tokens", "files", "export"):
        assert _approx(rm[key], lm[key]), key
    assert rm["stats"]["rows"] == remote["table"].num_rows
    assert _approx(rm["stats"]["labels"], lm["stats"]["labels"])
    for t in TABLES:  # same files and bytes; the path and the versions (mtime vs ETag) differ
        assert {k: rm["inputs"][t][k] for k in ("files", "bytes")} == {k: lm["inputs"][t][k] for k in ("files", "bytes")}
        assert rm["inputs"][t]["path"] == f"W/{t}" and len(rm["inputs"][t]["digest"]) == 16  # relative to W
    assert remote["card"] == local["card"]


def _report_files(wd: Workdir) -> dict[str, bytes]:
    # iterdir, not glob: a local glob skips dot-files such as the report's own-file list.
    return {f.name: f.read_bytes() for f in wd.reports.iterdir()}


def _assert_same_report(local: Workdir, remote: Workdir) -> None:
    lf, rf = _report_files(local), _report_files(remote)
    assert sorted(rf) == sorted(lf)
    assert {"index.md", "stats.json", "labels.png", "scores.png", ".corpus-report-files.json"} <= set(rf)
    ls, rs = json.loads(lf["stats.json"]), json.loads(rf["stats.json"])
    assert _approx(rs, ls), _differences(rs, ls)
    assert rs["subsets"], "the report lists the subsets built"

    def page(raw: bytes) -> list[str]:
        return [x for x in raw.decode().splitlines() if not x.startswith("Generated ")]

    diff = [(r, x) for r, x in zip(page(rf["index.md"]), page(lf["index.md"]), strict=False) if r != x]
    assert not diff and len(page(rf["index.md"])) == len(page(lf["index.md"])), diff
    for name in rf:
        if name.endswith(".png"):
            assert rf[name][:8] == b"\x89PNG\r\n\x1a\n"


def _curate(wd: str | Path, recipe: str, **kw: Any) -> dict[str, Any]:
    return C.curate(C.CurateConfig(workdir=wd, recipe=recipe, threads=2, **kw))


def test_s3_workdir_gives_the_local_subsets_and_report(s3_workdir: str, tmp_path: Path) -> None:
    local = Workdir.of(build_workdir(tmp_path / "w"))
    remote = _upload(local.root.local, s3_workdir)
    # Another stage's report, which the corpus report must leave alone.
    (remote.reports / "classifier.md").write_text("evaluate's report")
    (local.reports / "classifier.md").write_text("evaluate's report")
    # A first remote run with many tiny export shards: the re-run below must replace all of them.
    _curate(s3_workdir, "be-clinicalcase", shard_mb=0.000001)
    assert len(remote.subsets.glob("be-clinicalcase/export/*")) > 3
    for recipe in ("be-base", "be-all", "be-clinicalcase"):
        _curate(local.root.local, recipe)
        _curate(s3_workdir, recipe)
        _assert_same_subset(_subset(local.subsets / recipe), _subset(remote.subsets / recipe))
    assert [x.name for x in remote.subsets.iterdir()] == ["be-all", "be-base", "be-clinicalcase"]
    index = report(s3_workdir, threads=2)
    assert str(index) == f"{s3_workdir}/reports/index.md"
    report(local.root.local, threads=2)
    _assert_same_report(local, remote)
    assert (remote.reports / "classifier.md").read_text() == "evaluate's report"
    # A file the previous report wrote and this one does not is removed; other stages' files are kept.
    own = remote.reports / ".corpus-report-files.json"
    (remote.reports / "old-plot.png").write_bytes(b"x")
    own.write_text(json.dumps([*json.loads(own.read_text()), "old-plot.png"]))
    report(s3_workdir, threads=2)
    assert not (remote.reports / "old-plot.png").exists()
    assert sorted(x.name for x in remote.reports.iterdir()) == sorted(x.name for x in local.reports.iterdir())
    # Nothing staged is left on this machine, and no local folder named after the URL appeared.
    staged = remote.local_cache / "staging"
    assert not staged.exists() or not any(staged.iterdir())
    assert not Path("s3:").exists()


def test_s3_cli_takes_a_url(s3_workdir: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pipeline.cli import main

    _upload(build_workdir(tmp_path / "w"), s3_workdir)
    assert main(["curate", "--workdir", s3_workdir, "--recipe", "be-clinical", "--param", "factor=2"]) == 0
    assert "be-clinical: 14 rows, 4 articles, 5 documents" in (out := capsys.readouterr().out)
    assert f"-> {s3_workdir}/subsets/be-clinical" in out
    assert main(["report", "--workdir", s3_workdir]) == 0
    assert f"report: {s3_workdir}/reports/index.md" in capsys.readouterr().out
    assert "| be-clinical | 14 | 4 | 5 |" in storage.Location(f"{s3_workdir}/reports/index.md").read_text()


def test_gcs_workdir_gives_the_local_subsets_and_report(gcs_workdir: str, tmp_path: Path) -> None:
    local = Workdir.of(build_workdir(tmp_path / "w"))
    remote = _upload(local.root.local, gcs_workdir)
    for recipe in ("be-base", "be-all"):
        _curate(local.root.local, recipe)
        _curate(gcs_workdir, recipe)
        _assert_same_subset(_subset(local.subsets / recipe), _subset(remote.subsets / recipe))
    report(gcs_workdir, threads=2)
    report(local.root.local, threads=2)
    _assert_same_report(local, remote)


# ---- requests scale with files, not rows ----------------------------------------------------


def _write_corpus(wd: Workdir, n_paragraphs: int, files: int) -> None:
    """A labelled corpus of n_paragraphs (5 per article) in `files` Parquet files per table."""
    n_articles = n_paragraphs // 5
    arts = [{"pmcid": f"PMC{a}", "pmid": None, "doi": None, "title": f"T{a}", "journal": "J", "year": 2020,
             "article_type": "research-article", "license": "CC BY", "license_url": "https://example.org/cc-by",
             "commercial": True, "language": "en", "n_paragraphs": 5, "source": f"{a}.xml", "authors": ["A"],
             "article_url": None, "n_short_paragraphs": 0, "n_sub_articles": 0, "dtd_version": None}
            for a in range(n_articles)]  # fmt: skip
    paras = [{"id": f"PMC{a}/p[{i}]", "article_id": f"PMC{a}", "path": f"p[{i}]", "section_title": "S",
              "text": f"Paragraph {i} of article {a} about the kidney.", "n_tokens": 9, "language": "en",
              "language_score": 0.9}
             for a in range(n_articles) for i in range(5)]  # fmt: skip
    labs = [{"id": p["id"], "article_id": p["article_id"], "document_type": L.DOCUMENT_TYPES[k % 4],
             "domain": L.DOMAINS[k % 3], "educational_score": 1.0 + k % 5, "document_type_scores": [0.25] * 4,
             "domain_scores": [1 / 3] * 3, "model_id": "m", "truncated": False, "input_hash": None}
            for k, p in enumerate(paras)]  # fmt: skip
    for name, cls, rows in (("articles", Article, arts), ("paragraphs", Paragraph, paras), ("labels", Label, labs)):
        table = pa.Table.from_pylist(rows, schema=arrow_schema(cls))
        step = -(-table.num_rows // files)
        for i in range(files):
            storage.write_parquet(table.slice(i * step, step), wd.table(name) / f"part-{i}.parquet")


def test_reading_tables_costs_requests_per_file_not_per_row(s3_server: Any) -> None:
    cases = ((5_000, 1), (5_000, 4), (20_000, 4))  # (paragraphs, files per table)
    with s3_server.use():
        workdirs = []
        for n, files in cases:
            wd = Workdir.of(f"s3://{s3_server.bucket()}/run")
            _write_corpus(wd, n, files)
            workdirs.append(wd)
        # DuckDB's external file cache keeps blocks of remote files between the queries of a run, but only
        # for files older than ~10 s; inputs of a real run are. Every case in the same regime: all cached.
        time.sleep(11)
        requests = []
        for (n, _), wd in zip(cases, workdirs, strict=True):
            before = s3_server.requests()
            manifest = C.curate(C.CurateConfig(workdir=str(wd.root), recipe="be-base", threads=2))
            requests.append(s3_server.requests() - before)
            assert manifest["stats"]["rows"] == n
    small_1, small_4, large_4 = requests
    print(f"curate be-base, S3 requests: 5,000 rows in 1 file per table: {small_1}; in 4 files: {small_4}; "
          f"20,000 rows in 4 files: {large_4}")
    # Four times the rows in the same files: about the same requests (none per row or per batch).
    assert abs(large_4 - small_4) <= max(2, small_4 // 10), (small_4, large_4)
    # Three more files per table: a bounded number of requests per file (footers and column chunks of
    # each query that reads it; ~1 per file measured with the cache, ~13 without).
    assert small_1 < small_4 <= small_1 + 9 * 16, (small_1, small_4)
    # The recipe runs on a sandboxed connection of its own (curate/sandbox.py), which opens the tables'
    # files again: two connections' footers and chunks, still a bounded number per file. The subset is
    # published through a shadow prefix (storage.publish_folder): per output file an upload and a
    # server-side copy, plus the journal and the listings (~97 in all, measured).
    assert small_1 < 130


# ---- access errors ----------------------------------------------------------------------------


def test_missing_bucket_fails_clearly_before_any_work(s3_server: Any) -> None:
    url = f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/run"
    with s3_server.use():
        wd = Workdir.of(url)
        with pytest.raises(ConfigError, match=rf"{url}.*bucket s3://no-such-bucket-\w+ does not exist"):
            C.curate(C.CurateConfig(workdir=url, recipe="be-base"))
        with pytest.raises(ConfigError, match=rf"{url}.*does not exist"):
            report(url)
        assert not wd.local_cache.exists()  # no DuckDB spill folder, no staging: nothing was started
