"""The parse stage end to end through the CLI: inputs of every kind, rejects, dedup, summary, re-runs."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from pipeline.cli import main
from pipeline.core.errors import ConfigError
from pipeline.stages.parse.transforms import expand_inputs
from tests.parse_inputs import build_inputs


@pytest.fixture(scope="module")
def run_once(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("parse")
    paths = build_inputs(root / "in")
    work = root / "w"
    (work / "rejects").mkdir(parents=True)
    (work / "rejects" / "annotate-00000-of-00001.parquet").write_bytes(b"another stage's file")
    rc = main(["parse", str(paths["xml"]), str(paths["pkg"] / "*.tar.gz"), "--workdir", str(work), "--min-tokens", "0"])
    assert rc == 0
    return paths, work


def q(work: Path, sql: str) -> list[tuple]:
    con = duckdb.connect()
    sql = sql.replace("ARTICLES", f"read_parquet('{work}/articles/*.parquet')")
    sql = sql.replace("PARAGRAPHS", f"read_parquet('{work}/paragraphs/*.parquet')")
    sql = sql.replace("REJECTS", f"read_parquet('{work}/rejects/parse-*.parquet')")
    return con.sql(sql).fetchall()


def test_articles_from_files_wrappers_and_archives(run_once):
    _, work = run_once
    got = q(work, "SELECT pmcid, n_paragraphs, license, commercial FROM ARTICLES ORDER BY pmcid")
    assert got == [
        ("PMC9000001", 11, "CC BY-NC-ND", False),
        ("PMC9000002", 1, "CC BY", True),
        ("PMC9000004", 0, "none", False),
        ("PMC9000005", 1, "none", False),
        ("PMC9000006", 1, "CC BY", True),
        ("PMC9000008", 0, "none", False),
    ]


def test_every_bad_input_is_a_reject_with_its_reason(run_once):
    _, work = run_once
    got = q(work, "SELECT regexp_replace(source, '.*/in/', ''), reason FROM REJECTS ORDER BY 1")
    assert got == [
        ("pkg/damaged.tar.gz", "corrupt_archive"),
        ("pkg/good.tar.gz!PMC9000007/PMC9000007.nxml", "malformed_xml"),
        ("xml/bomb.xml", "malformed_xml"),
        ("xml/empty.xml", "empty_file"),
        ("xml/inline.xml", "duplicate_article"),
        ("xml/latin1.xml", "bad_encoding"),
        ("xml/notes.txt", "unsupported_file"),  # not an article: accounted for, never read
        ("xml/scan.xml", "malformed_xml"),
        ("xml/truncated.xml", "malformed_xml"),
        ("xml/two_articles.xml#article[1]", "no_pmcid"),
        ("xml/xxe.xml", "malformed_xml"),
    ]
    details = dict(q(work, "SELECT regexp_replace(source, '.*/in/', ''), detail FROM REJECTS"))
    assert "entity" in details["xml/bomb.xml"] and "entity" in details["xml/xxe.xml"]
    assert "root:" not in " ".join(details.values())  # nothing from /etc/passwd leaked into a detail
    assert details["xml/truncated.xml"].startswith("truncated") and details["xml/scan.xml"].startswith("not XML")
    (detail,) = q(work, "SELECT detail FROM REJECTS WHERE reason = 'corrupt_archive'")[0]
    assert detail.startswith("after 1 XML members read intact")
    (dup,) = q(work, "SELECT detail FROM REJECTS WHERE reason = 'duplicate_article'")[0]
    assert "good.tar.gz!PMC9000001/copy.nxml, which is kept" in dup  # first by source path


def test_paragraph_rows_match_the_pure_function(run_once):
    from pipeline.jats import parse_article

    paths, work = run_once
    r = parse_article((paths["xml"] / "inline.xml").read_bytes(), "x", min_tokens=0)
    got = q(work, "SELECT id, section_title, text, n_tokens, language FROM PARAGRAPHS WHERE article_id = 'PMC9000001' ORDER BY id")
    want = sorted((p.id, p.section_title, p.text, p.n_tokens, p.language) for p in r.paragraphs)
    assert got == want


def test_schema_metadata_names_tokenizer_and_language_id(run_once):
    _, work = run_once
    for table in ("articles", "paragraphs"):
        (f,) = (work / table).glob("*.parquet")
        meta = pq.read_schema(f).metadata
        assert b"all-MiniLM-L6-v2" in meta[b"tokenizer"]
        assert b"lid.176.ftz" in meta[b"language_id"]
        assert meta[b"min_tokens"] == b"0"


def test_other_stages_rejects_untouched_and_marker_written(run_once):
    _, work = run_once
    assert (work / "rejects" / "annotate-00000-of-00001.parquet").read_bytes() == b"another stage's file"
    assert (work / "_stages" / "parse.json").is_file()


def test_rerun_replaces_outputs_and_prints_summary(run_once, capsys):
    paths, work = run_once
    rc = main(["parse", str(paths["xml"] / "inline.xml"), "--workdir", str(work), "--min-tokens", "64"])
    assert rc == 0
    out = capsys.readouterr().out
    assert q(work, "SELECT pmcid FROM ARTICLES") == [("PMC9000001",)]
    assert q(work, "SELECT count(*) FROM REJECTS") == [(0,)]
    assert "parse: 1 articles" in out and "short paragraphs dropped" in out


def test_too_large_file_rejected_by_flag(tmp_path: Path):
    paths = build_inputs(tmp_path / "in")
    work = tmp_path / "w"
    rc = main(["parse", str(paths["xml"] / "inline.xml"), str(paths["good_tar"]), "--workdir", str(work), "--max-file-mb", "0.002"])
    assert rc == 0
    got = q(work, "SELECT regexp_replace(source, '.*/in/', ''), reason FROM REJECTS WHERE reason = 'too_large' ORDER BY 1")
    assert got == [("pkg/good.tar.gz!PMC9000001/copy.nxml", "too_large"), ("xml/inline.xml", "too_large")]


def test_expand_inputs_and_missing_input(tmp_path: Path):
    paths = build_inputs(tmp_path / "in")
    got = expand_inputs([str(paths["xml"]), str(paths["pkg"] / "*.tar.gz"), str(paths["xml"] / "inline.xml")])
    names = sorted(Path(p).name for p in got)
    assert names == ["bomb.xml", "damaged.tar.gz", "empty.xml", "good.tar.gz", "inline.xml", "latin1.xml",
                     "nobody.xml", "scan.xml", "truncated.xml", "two_articles.xml", "wrapped_noprefix.nxml", "xxe.xml"]
    with pytest.raises(ConfigError):
        expand_inputs([str(tmp_path / "nope.xml")])
    assert main(["parse", str(tmp_path / "nope"), "--workdir", str(tmp_path / "w")]) == 2


def test_gzipped_xml_is_read_and_every_other_file_is_a_reject(tmp_path: Path) -> None:
    """A folder holding an .xml.gz and files that are not articles: the first parsed, the others accounted
    for as unsupported_file rejects, none skipped silently."""
    import gzip

    src = Path(__file__).resolve().parent.parent / "examples" / "jats" / "PMC9100001.xml"
    inp = tmp_path / "in"
    inp.mkdir()
    (inp / "PMC9100001.xml.gz").write_bytes(gzip.compress(src.read_bytes()))
    (inp / "notes.txt").write_text("not an article")
    (inp / "figure.jpg").write_bytes(b"\xff\xd8\xff")
    work = tmp_path / "w"
    assert main(["parse", str(inp), "--workdir", str(work)]) == 0
    assert q(work, "SELECT pmcid FROM ARTICLES") == [("PMC9100001",)]
    got = q(work, "SELECT regexp_replace(source, '.*/in/', ''), reason FROM REJECTS ORDER BY 1")
    assert got == [("figure.jpg", "unsupported_file"), ("notes.txt", "unsupported_file")]
