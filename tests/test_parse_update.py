"""`pmc-curate parse SOURCE --workdir W --update`: two inventory days of a mirror built from the real sample;
the update's tables equal parsing day 2 from scratch, and only files holding affected articles are rewritten."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.cli import main
from pipeline.stages.parse.update import diff
from tests.pmc_cloud_mirror import DAY1, DAY2, NOTICE, LayoutWriter
from tests.test_parse_pmc_cloud import q

EXCLUDE = {"articles": "snapshot", "versions": "snapshot"}


def table(work: str, name: str) -> list[tuple]:
    drop = EXCLUDE.get(name)
    cols = f"* EXCLUDE ({drop})" if drop else "*"
    return sorted(q(work, f"SELECT {cols} FROM {name.upper()}"), key=repr)


@pytest.fixture(scope="module")
def days(shared_sample: Path, tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("update")
    files = sorted((p for p in shared_sample.iterdir() if p.suffix in (".xml", ".nxml")), key=lambda p: p.name)[:24]
    pmcid = {p: "PMC" + str(int(p.stem[3:])) for p in files}
    root = base / "pmc-oa-opendata"
    lw = LayoutWriter(root)
    for p in files[:20]:
        lw.version(pmcid[p], 1, p.read_bytes())
    lw.inventory(DAY1)
    w = base / "w"
    assert main(["parse", str(root), "--workdir", str(w), "--min-tokens", "0"]) == 0
    day1 = {t: table(str(w), t) for t in ("articles", "versions")}
    ids = [pmcid[p] for p in files]
    # Day 2: a new article, a changed version (edited text), a removed version, a newly retracted one,
    # a second version of one article, a retraction notice and a manuscript.
    lw.version(ids[20], 1, files[20].read_bytes())
    lw.version(ids[0], 1, files[0].read_bytes().replace(b"<article-title>", b"<article-title>Edited: ", 1))
    lw.remove(ids[1], 1)
    lw.version(ids[2], 1, files[2].read_bytes(), is_retracted=True)
    lw.version(ids[3], 2, files[3].read_bytes().replace(b"<article-title>", b"<article-title>Second: ", 1))
    lw.version("PMC9100001", 1, NOTICE.replace(b"RETRACTED", ids[2].encode()))
    lw.version(ids[21], 1, files[21].read_bytes(), is_manuscript=True, license_code="TDM")
    lw.inventory(DAY2)
    assert main(["parse", str(root), "--workdir", str(w), "--min-tokens", "0", "--update"]) == 0
    fresh = base / "fresh"
    assert main(["parse", str(root), "--workdir", str(fresh), "--min-tokens", "0"]) == 0
    return {"w": str(w), "fresh": str(fresh), "ids": ids, "day1": day1, "root": root}


def test_update_equals_parsing_day2_from_scratch(days):
    for t in ("articles", "paragraphs", "versions"):
        assert table(days["w"], t) == table(days["fresh"], t), t
    assert sorted(q(days["w"], "SELECT reason, record_id FROM REJECTS")) == \
        sorted(q(days["fresh"], "SELECT reason, record_id FROM REJECTS")) == [
            ("retracted", f"{days['ids'][2]}.1"), ("retraction_notice", "PMC9100001.1")]
    assert q(days["w"], "SELECT count(*), count(DISTINCT id) FROM PARAGRAPHS") == \
        q(days["fresh"], "SELECT count(*), count(DISTINCT id) FROM PARAGRAPHS")


def test_update_summary_and_tombstones(days):
    ids = days["ids"]
    s = json.loads(Path(days["w"], "_stages", "parse.json").read_text())["update"]
    assert (s["new"], s["changed"], s["removed"], s["affected_pmcids"]) == (4, 2, 1, 7)
    assert s["previous_versions"] == 20 and s["tombstones"] == 2
    tomb = pq.read_table(Path(days["w"], "tombstones")).to_pylist()
    assert sorted((t["pmcid"], t["key"], t["reason"], t["snapshot"]) for t in tomb) == sorted([
        (ids[1], None, "removed", DAY2), (ids[2], f"{ids[2]}.1", "retracted", DAY2)])
    got = dict(q(days["w"], "SELECT pmcid, title FROM ARTICLES"))
    assert got[ids[0]].startswith("Edited: ") and got[ids[3]].startswith("Second: ")
    assert ids[1] not in got and ids[2] not in got and ids[21] not in got and ids[20] in got
    # unchanged articles keep the snapshot they were read at; re-read ones carry the new one
    snaps = dict(q(days["w"], "SELECT pmcid, snapshot FROM ARTICLES"))
    assert snaps[ids[5]] == DAY1 and snaps[ids[0]] == DAY2 and snaps[ids[20]] == DAY2


def test_an_update_with_nothing_new_rewrites_nothing(days, tmp_path):
    w = tmp_path / "w"
    shutil.copytree(days["w"], w)
    mtimes = {f: f.stat().st_mtime_ns for t in ("articles", "paragraphs", "versions") for f in (w / t).glob("*.parquet")}
    before = table(str(w), "articles")
    assert main(["parse", str(days["root"]), "--workdir", str(w), "--min-tokens", "0", "--update"]) == 0
    s = json.loads((w / "_stages" / "parse.json").read_text())["update"]
    assert (s["new"], s["changed"], s["removed"], s["affected_pmcids"]) == (0, 0, 0, 0)
    assert all(f.stat().st_mtime_ns == m for f, m in mtimes.items())  # no old part file rewritten
    assert table(str(w), "articles") == before


def test_update_needs_a_previous_run(days, tmp_path):
    assert main(["parse", str(days["root"]), "--workdir", str(tmp_path / "empty"), "--update"]) == 2


def test_diff():
    from pipeline.sources.pmc_cloud import entry_from_key

    state = {"PMC1.1": ("PMC1", "e1"), "PMC2.1": ("PMC2", "e2"), "PMC3.1": ("PMC3", "e3")}
    new = [entry_from_key("metadata/PMC1.1.json", "e1"), entry_from_key("metadata/PMC2.1.json", "X"),
           entry_from_key("metadata/PMC4.1.json", "e4"), entry_from_key("metadata/PMC1.2.json", "e5")]
    d = diff(state, new)
    assert (d.new, d.changed, d.removed, d.affected) == (["PMC1.2", "PMC4.1"], ["PMC2.1"], ["PMC3.1"],
                                                         {"PMC1", "PMC2", "PMC3", "PMC4"})


def test_the_duckdb_diff_equals_the_in_memory_one(tmp_path):
    """inventory_diff.diff_inventory (DuckDB, spilling to disk) against update.diff (the definition): new,
    changed and removed keys, a missing part, the --pmcids filters."""
    import random

    from pipeline.core.workdir import Workdir
    from pipeline.sources import pmc_cloud as pc
    from pipeline.stages.parse.inventory_diff import diff_inventory
    from tests.pmc_cloud_mirror import _part

    rng = random.Random(7)
    state = {f"PMC{p}.{v}": (f"PMC{p}", f"e{p}-{v}") for p in range(1000, 4000) for v in (1, 2) if v == 1 or p % 7 == 0}
    inv = {k: (e if rng.random() > 0.05 else "changed") for k, (_, e) in state.items() if rng.random() > 0.02}
    inv.update({f"PMC{p}.1": f"n{p}" for p in range(4000, 4100)})
    w = Workdir.of(str(tmp_path / "w"))
    keys = sorted(state)
    (tmp_path / "w" / "versions").mkdir(parents=True)
    for i in (0, 1):  # two part files, as Beam writes them
        part = keys[i::2]
        pq.write_table(pa.table({"key": part, "pmcid": [state[k][0] for k in part], "etag": [state[k][1] for k in part],
                                 "outcome": ["parsed"] * len(part)}), tmp_path / "w" / "versions" / f"part-{i}.parquet")
    root = tmp_path / "layout"
    rows = sorted((f"metadata/{k}.json", e) for k, e in inv.items())
    (root / "inv").mkdir(parents=True)
    (root / "inv" / "a.csv.gz").write_bytes(_part(rows[: len(rows) // 2]))
    (root / "inv" / "b.csv.gz").write_bytes(_part(rows[len(rows) // 2:]))
    index = pc.Index(str(root), "2026-01-09", parts=("inv/a.csv.gz", "inv/b.csv.gz", "inv/missing.csv.gz"))
    entries = [pc.entry_from_key(k, e) for k, e in rows]
    for keep in (None, pc.pmcid_filter("PMC1500-PMC2600"), pc.PmcidFilter(ids=frozenset({"PMC1001", "PMC4001", "PMC2002"}))):
        got = diff_inventory(w, index, keep, memory_limit="32MB")
        st = {k: v for k, v in state.items() if keep is None or keep(v[0])}
        want = diff(st, [e for e in entries if keep is None or keep(e.pmcid)])
        assert (got.delta.new, got.delta.changed, got.delta.removed, got.delta.affected) == \
            (want.new, want.changed, want.removed, want.affected)
        assert got.previous_versions == len(st) and want.affected and (keep is not None or (want.new and want.changed and want.removed))
        assert [e.key for e in got.entries] == sorted(e.key for e in entries if e.pmcid in want.affected)
        assert [r.reason for r in got.rejects] == ["inventory_part_missing"]
