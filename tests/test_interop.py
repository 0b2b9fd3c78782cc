"""Biomed-Enriched interop: import-labels, curate/report on imported labels, the export in their schema.

The published package `biomed-enriched==0.1.0` is the oracle: its own extractor (`_extractor.py`,
loaded by file path because the package's __init__ needs `datasets`, not installed: see the Makefile)
resolves the (PMID, path) keys of the BE-shaped files these tests build from the real sample.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.cli import main
from pipeline.core.errors import ConfigError
from pipeline.interop import biomed_enriched as BE
from pipeline.stages import curate as C
from pipeline.stages.import_labels import import_labels
from pipeline.stages.report import report

pytestmark = [pytest.mark.shared_data, pytest.mark.filterwarnings("ignore:Truth-testing of elements:FutureWarning")]


def _oracle() -> Any:
    spec = importlib.util.find_spec("biomed_enriched")
    assert spec is not None and spec.submodule_search_locations, \
        "biomed-enriched==0.1.0 (the oracle) is not installed: make install adds it with --no-deps"
    path = Path(next(iter(spec.submodule_search_locations))) / "_extractor.py"
    s = importlib.util.spec_from_file_location("be_oracle_extractor", path)
    assert s is not None and s.loader is not None
    module = importlib.util.module_from_spec(s)
    s.loader.exec_module(module)
    return module._XmlParagraphExtractor


@pytest.fixture(scope="module")
def parsed(shared_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    wd = tmp_path_factory.mktemp("be") / "w"
    assert main(["parse", "--workdir", str(wd), str(shared_sample)]) == 0
    return wd


@pytest.fixture()
def wd(parsed: Path, tmp_path: Path) -> Path:
    w = tmp_path / "w"
    shutil.copytree(parsed, w)
    return w


def _ours(wd: Path) -> list[dict[str, Any]]:
    paras = pq.read_table(wd / "paragraphs").to_pylist()
    arts = {a["pmcid"]: a for a in pq.read_table(wd / "articles").to_pylist()}
    return [{**p, "pmid": arts[p["article_id"]]["pmid"], "source": arts[p["article_id"]]["source"]} for p in paras]


def _known(pid: str) -> dict[str, Any]:
    """Labels for a paragraph from a hash of its id, vectors in THEIR order (argmax = the label)."""
    h = int(hashlib.sha256(pid.encode()).hexdigest(), 16)
    d, t = h % 3, (h >> 4) % 4
    ds, ts = [0.1, 0.1, 0.1], [0.1, 0.1, 0.1, 0.1]
    ds[d], ts[t] = 0.8, 0.7
    return {"domain": BE.ORDERS["domain"][d], "document_type": BE.ORDERS["document_type"][t],
            "educational_score": 1 + (h >> 8) % 41 / 10, "domain_scores": ds, "document_type_scores": ts}  # fmt: skip


def _be_rows(wd: Path) -> tuple[list[dict[str, Any]], dict[tuple[str, str], str]]:
    """A BE-shaped table: one row per paragraph the published extractor resolves, text from the extractor."""
    extractor = _oracle()
    cache: dict[str, Any] = {}
    rows, key_to_id = [], {}
    for p in _ours(wd):
        if p["pmid"] is None:
            continue
        ex = cache.setdefault(p["source"], extractor(p["source"]))
        text = ex.extract(p["path"])
        if text is None:
            continue
        rows.append({"id": f"{p['pmid']}_p{len(rows)}", "article_id": p["pmid"], "path": p["path"], "text": text,
                     "language": "en", "section_title": p["section_title"], **_known(p["id"]), "language_score": 0.9,
                     "authors": [], "article_url": None, "license_url": None})  # fmt: skip
        key_to_id[(p["pmid"], p["path"])] = p["id"]
    return rows, key_to_id


def _write(rows: list[dict[str, Any]], path: Path, schema: pa.Schema = BE.SCHEMA) -> Path:
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


def _imported(wd: Path) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in pq.read_table(wd / "labels_imported").to_pylist()}


def _rejects(wd: Path) -> list[dict[str, Any]]:
    return pq.read_table(wd / "rejects" / "import-labels-00000.parquet").to_pylist()


def _reordered(head: str, theirs: list[float]) -> list[float]:
    return [theirs[BE.ORDERS[head].index(c)] for c in BE.ours(head)]


def test_be_file_from_their_extractor_imports_back_to_its_labels(wd: Path, tmp_path: Path) -> None:
    rows, key_to_id = _be_rows(wd)
    assert len(rows) > 1000
    summary = import_labels([str(_write(rows, tmp_path / "be.parquet"))], wd)
    got = _imported(wd)
    ours = {p["id"]: p for p in _ours(wd)}
    matched = [r for r in rows if ours[key_to_id[(r["article_id"], r["path"])]]["be_addressable"]]
    assert summary["imported"] == len(got) == len(matched)
    for r in matched:
        g = got[key_to_id[(r["article_id"], r["path"])]]
        assert (g["document_type"], g["domain"], g["educational_score"]) == (r["document_type"], r["domain"], r["educational_score"])
        assert g["domain_scores"] == _reordered("domain", r["domain_scores"])
        assert g["document_type_scores"] == _reordered("document_type", r["document_type_scores"])
        assert g["model_id"] == "biomed-enriched:almanach/Biomed-Enriched" and g["article_id"] == ours[g["id"]]["article_id"]
    # Rows the extractor resolves at a path that is not our element (a hyphenated step never parses, so
    # these are the default-namespace / missing-body files): rejected, with the reason, not mis-joined.
    rejects = _rejects(wd)
    assert len(rejects) == len(rows) - len(matched)
    assert {r["reason"] for r in rejects} <= {"not_addressable"}
    assert summary["orders"]["domain"]["agreement"] == 1.0 and len(summary["orders"]["document_type"]["confirmed"]) == 4
    page = (wd / "reports" / "import-labels.md").read_text()
    assert f"**{len(matched):,} imported**" in page


def test_bad_rows_become_rejects_with_reasons(wd: Path, tmp_path: Path) -> None:
    rows, key_to_id = _be_rows(wd)
    good = rows[:200]
    bad = [dict(r) for r in rows[200:206]]
    bad[0]["document_type"] = "Case report"  # unknown label value
    bad[1]["domain_scores"] = [0.5, 0.5]  # wrong length
    bad[2]["educational_score"] = 7.0
    bad[3]["article_id"] = "999999999"  # no such PMID here
    bad[4]["path"] = "sec[99]/p[0]"  # no paragraph there
    bad[5]["article_id"] = None
    dup = dict(rows[206], id="dup")
    dup2 = dict(rows[207], id="dup")  # a duplicate id on two different keys
    same_key = [rows[208], dict(rows[208], id="other")]  # two rows for one (PMID, path)
    summary = import_labels([str(_write(good + bad + [dup, dup2] + same_key, tmp_path / "be.parquet"))], wd)
    reasons = {r["record_id"]: (r["reason"], r["detail"]) for r in _rejects(wd)}
    assert reasons[bad[0]["id"]][0] == "unknown_label_value" and "'Case report'" in reasons[bad[0]["id"]][1]
    assert reasons[bad[1]["id"]][0] == "bad_score_vector"
    assert reasons[bad[2]["id"]][0] == "bad_score"
    assert reasons[bad[3]["id"]][0] == "no_article_with_pmid"
    assert reasons[bad[4]["id"]][0] == "no_paragraph_at_path"
    assert reasons[bad[5]["id"]][0] == "no_join_key"
    assert reasons["dup"][0] == "duplicate_row"
    assert reasons[rows[208]["id"]][0] == reasons["other"][0] == "duplicate_row"
    # Every row is accounted for: imported or rejected with a reason.
    assert summary["imported"] + sum(summary["rejected"].values()) == summary["rows"] == len(good) + 6 + 2 + 2
    assert set(_imported(wd)) <= {key_to_id[(r["article_id"], r["path"])] for r in good}


def test_wrong_columns_and_an_order_the_data_contradict_are_refused(wd: Path, tmp_path: Path) -> None:
    rows, _ = _be_rows(wd)
    schema = pa.schema([f for f in BE.SCHEMA if f.name != "domain_scores"])
    f = _write([{k: v for k, v in r.items() if k != "domain_scores"} for r in rows[:50]], tmp_path / "x.parquet", schema)
    with pytest.raises(ConfigError, match="missing column domain_scores"):
        import_labels([str(f)], wd)
    # Vectors in OUR order, not theirs: the argmax no longer names the label, and the import says so.
    swapped = [dict(r, domain_scores=_reordered("domain", r["domain_scores"])) for r in rows]
    f = _write(swapped, tmp_path / "swapped.parquet")
    with pytest.raises(ConfigError, match="cannot establish the order of domain_scores"):
        import_labels([str(f)], wd)
    assert not (wd / "labels_imported").exists()
    # Told the order, it imports them, put back in ours.
    s = import_labels([str(f)], wd, orders={"domain": BE.ours("domain")})
    assert s["imported"] > 1000 and s["orders"]["domain"]["agreement"] == 1.0
    r0 = swapped[0]
    got = next(g for g in _imported(wd).values() if g["educational_score"] == r0["educational_score"] and g["domain"] == r0["domain"])
    assert got["domain_scores"] == r0["domain_scores"]
    assert main(["import-labels", str(f), "--format", "biomed-enriched", "--workdir", str(wd)]) == 2


def test_curate_and_report_on_imported_and_merged_labels(wd: Path, tmp_path: Path) -> None:
    rows, _ = _be_rows(wd)
    import_labels([str(_write(rows, tmp_path / "be.parquet"))], wd)
    m = C.curate(C.CurateConfig(workdir=wd, recipe="be-all", labels="imported", threads=1))
    assert m["labels_source"] == "imported" and m["label_tables"] == ["labels_imported"]
    ids = set(pq.read_table(wd / "subsets" / "be-all" / "data", columns=["paragraph_id"]).column("paragraph_id").to_pylist())
    assert ids and ids <= set(_imported(wd))
    # merged: imported where present, a (propagated) label elsewhere; the propagated ones here are "Other".
    paras = pq.read_table(wd / "paragraphs", columns=["id", "article_id"]).to_pylist()
    (wd / "labels").mkdir()
    own = [{"id": p["id"], "article_id": p["article_id"], "document_type": "Other", "domain": "other",
            "educational_score": 2.0, "document_type_scores": [0, 0, 0, 1.0], "domain_scores": [0, 0, 1.0],
            "model_id": "student", "truncated": False, "input_hash": None} for p in paras]  # fmt: skip
    from pipeline.core.records import Label, arrow_schema

    pq.write_table(pa.Table.from_pylist(own, schema=arrow_schema(Label)), wd / "labels" / "part-0.parquet")
    m = C.curate(C.CurateConfig(workdir=wd, recipe="be-base", labels="merged", threads=1))
    assert m["label_tables"] == ["labels_imported", "labels"]
    data = pq.read_table(wd / "subsets" / "be-base" / "data").to_pylist()
    imported = _imported(wd)
    assert {r["paragraph_id"] for r in data} == {p["id"] for p in paras}  # be-base keeps every labelled paragraph
    for r in data:
        assert r["document_type"] == (imported[r["paragraph_id"]]["document_type"] if r["paragraph_id"] in imported
                                      else "Other")
    report(wd, labels="merged", threads=1)
    stats = json.loads((wd / "reports" / "stats.json").read_text())
    assert stats["labels_source"] == "merged" and stats["stats"]["labelled_paragraphs"] == len(paras)
    # The import compares itself with the work directory's own labels when there are some.
    s = import_labels([str(tmp_path / "be.parquet")], wd)
    assert s["agreement"]["labels"]["n"] == len(imported)
    assert s["agreement"]["labels"]["document_type"]["accuracy"] == pytest.approx(
        sum(v["document_type"] == "Other" for v in imported.values()) / len(imported))


def test_export_round_trips_through_import_and_their_tools(wd: Path, tmp_path: Path) -> None:
    rows, _ = _be_rows(wd)
    import_labels([str(_write(rows, tmp_path / "be.parquet"))], wd)
    before = _imported(wd)
    m = C.curate(C.CurateConfig(workdir=wd, recipe="be-all", labels="imported", export_format="biomed-enriched", threads=1))
    folder = wd / "subsets" / "be-all" / "biomed-enriched"
    assert not (wd / "subsets" / "be-all" / "export").exists() and m["files"]["biomed_enriched"]
    table = pq.read_table(folder / "part-00000.parquet")
    assert table.schema.names == list(BE.COLUMNS)
    assert [f.type for f in table.schema] == [f.type for f in BE.SCHEMA]
    out = table.to_pylist()
    assert len({r["id"] for r in out}) == len(out)  # one row per paragraph, copies not repeated
    # Their re-population tool's pieces: the index gives the XML, the extractor resolves each path.
    index = {r["pmid"]: r["xml_path"] for r in pq.read_table(folder / "pmid_xml_index.parquet").to_pylist()}
    extractor = _oracle()
    for r in out:
        assert r["article_id"] in index and extractor(index[r["article_id"]]).extract(r["path"])
    # Import the export into a fresh copy: the same labels come back, for the same paragraphs.
    again = tmp_path / "again"
    shutil.copytree(wd, again)
    shutil.rmtree(again / "labels_imported")
    s = import_labels([str(folder / "part-00000.parquet")], again)
    back = _imported(again)
    assert s["imported"] == len(out) == len(back) and not s["rejected"]
    for pid, g in back.items():
        b = before[pid]
        for k in ("document_type", "domain", "educational_score", "domain_scores", "document_type_scores"):
            assert g[k] == pytest.approx(b[k]), (pid, k)


def test_import_from_and_into_s3(s3_workdir: str, parsed: Path, tmp_path: Path) -> None:
    from pipeline.core.storage import Location
    from pipeline.core.workdir import Workdir

    remote = Workdir.of(s3_workdir)
    for t in ("articles", "paragraphs"):
        remote.table(t).upload_from(parsed / t)
    rows, _ = _be_rows(parsed)
    src = Location(f"{s3_workdir}-inputs/be.parquet")
    src.write_bytes(_write(rows, tmp_path / "be.parquet").read_bytes())
    s = import_labels([str(src.parent)], s3_workdir)
    assert s["imported"] > 1000 and s["files"] == [str(src)]
    assert remote.has_table("labels_imported") and (remote.reports / "import-labels.json").exists()
    assert (remote.rejects / "import-labels-00000.parquet").exists()
