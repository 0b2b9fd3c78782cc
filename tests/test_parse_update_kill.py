"""`parse --update` killed at chosen points, locally and on the S3 server: a glob over W/<table>/**/*.parquet,
read right after the kill, shows every article that exists before and after the update exactly once, with
all its paragraphs, and no paragraph twice; `status` says an update was interrupted; the next
`parse --update` converges to a fresh parse of the new day."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.core import storage
from pipeline.core.storage import Location
from pipeline.core.workdir import Workdir
from pipeline.stages.parse import update_journal
from tests.faults import Killed, kill_at
from tests.pmc_cloud_mirror import DAY1, DAY2, LayoutWriter
from tests.test_parse_update import table

ARGS = ["--min-tokens", "0"]


def glob_rows(work: str, sql: str) -> list[tuple]:
    """What a user's DuckDB sees over W/<table>/**/*.parquet."""
    for t in ("articles", "paragraphs"):
        sql = sql.replace(t.upper(), f"read_parquet('{work}/{t}/**/*.parquet')")
    con = storage.duckdb_connect()
    try:
        return con.sql(sql).fetchall()
    finally:
        con.close()


@pytest.fixture(scope="module")
def days(shared_sample: Path, tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("update-kill")
    files = sorted((p for p in shared_sample.iterdir() if p.suffix in (".xml", ".nxml")), key=lambda p: p.name)[:16]
    ids = ["PMC" + str(int(p.stem[3:])) for p in files]
    lw = LayoutWriter(base / "pmc-oa-opendata")
    for p, i in zip(files[:14], ids[:14], strict=True):
        lw.version(i, 1, p.read_bytes())
    lw.inventory(DAY1)
    w1 = base / "w1"
    assert main(["parse", str(lw.root), "--workdir", str(w1), *ARGS]) == 0
    # Day 2: two new articles, three edited (one with a paragraph fewer), one removed.
    for p, i in zip(files[14:], ids[14:], strict=True):
        lw.version(i, 1, p.read_bytes())
    for k in (0, 5, 9):
        edited = files[k].read_bytes().replace(b"<article-title>", b"<article-title>Edited: ", 1)
        if k == 5:
            edited = edited.replace(b"</p>", b"</p><!--", 1).replace(b"<p>", b"--><p>", 2)  # drops a paragraph
        lw.version(ids[k], 1, edited)
    lw.remove(ids[3], 1)
    lw.inventory(DAY2)
    fresh = base / "fresh"
    assert main(["parse", str(lw.root), "--workdir", str(fresh), *ARGS]) == 0
    per_article = {d: dict(glob_rows(str(w), "SELECT article_id, count(*) FROM PARAGRAPHS GROUP BY 1"))
                   for d, w in (("day1", w1), ("day2", fresh))}
    return {"root": str(lw.root), "w1": w1, "fresh": str(fresh), "ids": ids, "per_article": per_article}


def check_glob(work: str, days: dict) -> None:
    """Every article in both days once, with all the paragraphs of one of its versions; no id twice."""
    arts = Counter(r[0] for r in glob_rows(work, "SELECT pmcid FROM ARTICLES"))
    assert all(n == 1 for n in arts.values()), arts.most_common(3)
    both = set(days["per_article"]["day1"]) & set(days["per_article"]["day2"])
    assert both <= set(arts), sorted(both - set(arts))
    paras = glob_rows(work, "SELECT id FROM PARAGRAPHS")
    assert len(paras) == len({r[0] for r in paras})
    for a, n in glob_rows(work, "SELECT article_id, count(*) FROM PARAGRAPHS GROUP BY 1"):
        assert n in (days["per_article"]["day1"].get(a), days["per_article"]["day2"].get(a)), a


def converges(work: str, days: dict) -> None:
    assert main(["parse", days["root"], "--workdir", work, *ARGS, "--update"]) == 0
    for t in ("articles", "paragraphs", "versions"):
        assert table(work, t) == table(days["fresh"], t), t
    assert not (Location(work) / "_staging").glob("**")  # the staging folder and the journal are gone
    assert update_journal.pending(Workdir.of(work)) is None


def is_table_file(loc: Location) -> bool:
    s = str(loc)
    return s.endswith(".parquet") and "/_staging/" not in s and any(f"/{t}/" in s for t in ("articles", "paragraphs", "versions", "rejects"))


KILLS: dict[str, tuple[str, Callable[[Location], bool], int]] = {
    "after the staged parse": ("write_text", lambda loc: loc.name == "parse-update.json", 2),
    "at the first table file": ("write_bytes", is_table_file, 1),
    "at the third table file": ("write_bytes", is_table_file, 3),
    "at the last table file": ("write_bytes", lambda loc: is_table_file(loc) and "/articles/" in str(loc), 1),
    "removing the staging folder": ("rmtree", lambda loc: "/_staging/" in str(loc), 2),
    "removing the journal": ("unlink", lambda loc: loc.name == "parse-update.json", 1),
}


@pytest.mark.parametrize("point", list(KILLS))
def test_a_killed_update_never_shows_an_article_twice_or_loses_one(days, tmp_path, monkeypatch, point) -> None:
    w = tmp_path / "w"
    shutil.copytree(days["w1"], w)
    op, when, nth = KILLS[point]
    fault = kill_at(monkeypatch, op, when, nth)
    with pytest.raises(Killed):
        main(["parse", days["root"], "--workdir", str(w), *ARGS, "--update"])
    assert fault.fired, fault.calls
    monkeypatch.undo()
    check_glob(str(w), days)
    if point not in ("removing the staging folder", "removing the journal"):
        out = json.loads(_status(str(w)))
        parse = next(e for e in out if e["command"] == "parse")
        assert any("parse (parse-update) of" in p for p in parse["problems"]), parse
    converges(str(w), days)


def _status(work: str) -> str:
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["status", "--workdir", work, "--json"]) == 0
    return buf.getvalue()


@pytest.mark.parametrize(("store", "point"), [("s3", "at the third table file"), ("s3", "removing the staging folder"),
                                              ("gcs", "at the third table file")])
def test_a_killed_update_on_an_object_store(days, request, monkeypatch, store, point) -> None:
    root = request.getfixturevalue(f"{store}_workdir")
    Location(root).upload_from(days["w1"])
    op, when, nth = KILLS[point]
    fault = kill_at(monkeypatch, op, when, nth)
    with pytest.raises(Killed):
        main(["parse", days["root"], "--workdir", root, *ARGS, "--update"])
    assert fault.fired, fault.calls
    monkeypatch.undo()
    check_glob(root, days)
    converges(root, days)


def test_a_dry_run_update_writes_nothing_to_w(days, tmp_path) -> None:
    w = tmp_path / "w"
    shutil.copytree(days["w1"], w)
    before = sorted(str(p.relative_to(w)) for p in w.rglob("*") if "/logs/" not in f"/{p.relative_to(w)}")
    out = tmp_path / "job.json"
    assert main(["parse", days["root"], "--workdir", str(w), *ARGS, "--update", "--dry-run", str(out)]) == 0
    assert json.loads(out.read_text())["runner"] == "DirectRunner"
    after = sorted(str(p.relative_to(w)) for p in w.rglob("*") if "/logs/" not in f"/{p.relative_to(w)}")
    assert after == before  # no journal, no staging folder
