"""The pure parts of the PMC Cloud reader, the license resolution order, and legacy file lists beside packages."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import duckdb
import pytest
from lxml import etree

from pipeline.cli import main
from pipeline.core.errors import ConfigError, RecordError, RejectReason
from pipeline.jats.license import License, extract_license, from_code, resolve_license
from pipeline.sources import pmc_cloud as pc
from pipeline.sources.filelist import read_filelist

FILELIST_HEADER = "Article File,Article Citation,AccessionID,LastUpdated (YYYY-MM-DD HH:MM:SS),PMID,License,Retracted"


def meta(version: int, oa: bool = True, retracted: bool = False, pmcid: str = "PMC7") -> pc.VersionMeta:
    e = pc.Entry(f"{pmcid}.{version}", pmcid, version, f"metadata/{pmcid}.{version}.json")
    return pc.VersionMeta(e, oa, False, retracted, "CC BY", None)


def test_choose_version():
    c = pc.choose_version([meta(1), meta(3), meta(2)])
    assert c.chosen.entry.version == 3 and [o for _, o, _, _ in c.outcomes] == ["superseded", "superseded"]
    c = pc.choose_version([meta(1), meta(2, oa=False)])
    assert c.chosen.entry.version == 1 and [(v.entry.version, o, r) for v, o, r, _ in c.outcomes] == [
        (2, "not_open_access", None)]
    c = pc.choose_version([meta(1), meta(2, retracted=True)])  # no older version stands in for a retracted one
    assert c.chosen is None and c.outcomes[0][1:3] == ("retracted", RejectReason.RETRACTED)
    assert pc.choose_version([meta(1, retracted=True)], keep_retracted=True).chosen.is_retracted
    c = pc.choose_version([meta(1, oa=False), meta(2, oa=False)])
    assert c.chosen is None and [(v.entry.version, r) for v, _, r, _ in c.outcomes] == [
        (2, RejectReason.NOT_OPEN_ACCESS), (1, None)]


def test_inventory_parts_and_keys():
    rows = ('"pmc-oa-opendata","metadata/PMC10000002.1.json","2026-01-08T11:47:59.000Z","abc"\n'
            '"pmc-oa-opendata","metadata/PMC10000002.2.json","2026-01-09T11:47:59.000Z","def"\n'
            '"pmc-oa-opendata","PMC10000002.1/PMC10000002.1.xml","2026-01-08T11:47:59.000Z","x"\n'
            '"pmc-oa-opendata","metadata/README.txt","2026-01-08T11:47:59.000Z","y"\n')
    got = pc.read_part(gzip.compress(rows.encode()))
    assert [(e.key, e.pmcid, e.version, e.etag) for e in got] == [
        ("PMC10000002.1", "PMC10000002", 1, "abc"), ("PMC10000002.2", "PMC10000002", 2, "def")]
    with pytest.raises(RecordError) as err:
        pc.read_part(b"not gzip at all")
    assert err.value.reason is RejectReason.CORRUPT_INVENTORY
    assert pc.entry_from_key("PMC00123.4/PMC00123.4.json").pmcid == "PMC123"


def test_metadata_json():
    e = pc.Entry("PMC5.2", "PMC5", 2, "metadata/PMC5.2.json")
    m = pc.parse_metadata(json.dumps({"pmcid": "PMC5", "version": 2, "is_pmc_openaccess": True, "is_manuscript": True,
                                      "is_retracted": False, "license_code": "TDM", "pmid": 99,
                                      "xml_url": "s3://pmc-oa-opendata/PMC5.2/PMC5.2.xml?md5=ABC"}).encode(), e)
    assert (m.is_manuscript, m.license_code, m.pmid, m.md5, pc.xml_key(m)) == (True, "TDM", "99", "abc",
                                                                              "PMC5.2/PMC5.2.xml")
    for bad in (b"{nope", b"[1, 2]", json.dumps({"pmcid": "PMC6", "version": 2}).encode()):
        with pytest.raises(RecordError) as err:
            pc.parse_metadata(bad, e)
        assert err.value.reason is RejectReason.BAD_METADATA
    with pytest.raises(RecordError) as err:
        pc.check_md5(b"<article/>", m)
    assert err.value.reason is RejectReason.MD5_MISMATCH


def test_filters(tmp_path):
    assert pc.license_filter("commercial") >= {"CC BY", "CC0", "public domain"}
    assert pc.license_filter("CC BY-NC-ND, cc-by") == {"CC BY-NC-ND", "CC BY"}
    assert pc.license_filter("TDM") == {"other"} and pc.license_filter(None) is None
    with pytest.raises(ConfigError):
        pc.license_filter("GPL")
    r = pc.pmcid_filter("PMC10-PMC20")
    assert r("PMC10") and r("PMC20") and not r("PMC21")
    f = tmp_path / "ids"
    f.write_text("PMC1\n2\n# comment\n")
    assert pc.pmcid_filter(str(f)).ids == {"PMC1", "PMC2"}
    with pytest.raises(ConfigError):
        pc.pmcid_filter(str(tmp_path / "missing"))


def test_layout_detection(tmp_path):
    (tmp_path / "legacy").mkdir()
    (tmp_path / "legacy" / "PMC1.xml").write_text("<article/>")
    assert not pc.is_cloud_layout(str(tmp_path / "legacy"))
    (tmp_path / "m" / "PMC1.1").mkdir(parents=True)
    assert pc.is_cloud_layout(str(tmp_path / "m")) and not pc.is_cloud_layout(str(tmp_path / "m" / "*.xml"))
    ix = pc.open_index(str(tmp_path / "m"))
    assert [e.json_key for e in ix.entries] == ["PMC1.1/PMC1.1.json"] and not ix.parts


META = """<article-meta xmlns:ali="http://www.niso.org/schemas/ali/1.0/" xmlns:xlink="http://www.w3.org/1999/xlink">
<permissions>{ali}<license xlink:href="https://creativecommons.org/licenses/by-nc/4.0/"><license-p>x</license-p></license>
</permissions><custom-meta-group>{custom}</custom-meta-group></article-meta>"""
ALI = '<ali:license_ref specific-use="textmining">https://creativecommons.org/licenses/by-sa/4.0/</ali:license_ref>'
CUSTOM = "<custom-meta><meta-name>pmc-license-ref</meta-name><meta-value>CC BY-ND</meta-value></custom-meta>"


@pytest.mark.parametrize("ali, custom, want", [
    (ALI, CUSTOM, "CC BY-SA"),  # ali:license_ref specific-use="textmining" first
    ("", CUSTOM, "CC BY-ND"),  # then the pmc-license-ref custom-meta
    ("", "", "CC BY-NC"),  # then the publisher's <license>
])
def test_xml_license_order(ali, custom, want):
    assert extract_license(etree.fromstring(META.format(ali=ali, custom=custom))).name == want


def test_license_code_comes_first():
    xml = License("CC BY", "https://creativecommons.org/licenses/by/4.0/", True)
    assert resolve_license("CC BY", xml) == (xml, True)
    assert resolve_license("CC BY-NC", xml) == (License("CC BY-NC", None, False), False)
    assert resolve_license(None, xml) == (xml, None) and resolve_license("NO-CC CODE", xml) == (xml, None)
    assert from_code("TDM") == "other" and from_code("CC0") == "CC0"


def test_filelist_rows():
    text = FILELIST_HEADER + "\noa_comm/xml/PMC1.xml,J. 2001,PMC1,2023-12-18 10:00:00,11,CC BY,no\n" \
                             "oa_comm/xml/PMC2.xml,J. 2002,PMC2,2023-12-18 10:00:00,,CC BY-NC,yes\n"
    assert [(r.pmcid, r.license_code, r.retracted) for r in read_filelist(text)] == [
        ("PMC1", "CC BY", False), ("PMC2", "CC BY-NC", True)]


def test_legacy_package_with_filelist(shared_sample: Path, tmp_path: Path):
    names = ["PMC1160574.xml", "PMC12389689.xml", "PMC13133655.xml"]
    pkg = tmp_path / "in" / "oa_comm_xml.PMC000xxxxxx.baseline.2023-12-18.tar.gz"
    pkg.parent.mkdir()
    with tarfile.open(pkg, "w:gz") as tf:
        for n in names:
            data = (shared_sample / n).read_bytes()
            info = tarfile.TarInfo(f"PMC000xxxxxx/{n}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    pkg.with_name(pkg.name.replace(".tar.gz", ".filelist.csv")).write_text(
        FILELIST_HEADER + "\n"
        "PMC000xxxxxx/PMC1160574.xml,PLoS Med. 2005,PMC1160574,2023-12-18 10:00:00,1,CC BY-NC,no\n"
        "PMC000xxxxxx/PMC12389689.xml,Pharm. 2025,PMC12389689,2023-12-18 10:00:00,2,CC BY,yes\n")
    (tmp_path / "loose").mkdir()
    (tmp_path / "loose" / "PMC13239955.xml").write_bytes((shared_sample / "PMC13239955.xml").read_bytes())

    def rows(work: Path, *flags: str) -> tuple[list[tuple], list[tuple]]:
        assert main(["parse", str(pkg), str(tmp_path / "loose"), "--workdir", str(work), *flags]) == 0
        arts = duckdb.sql(f"SELECT pmcid, license, license_code, is_retracted, version, snapshot "
                          f"FROM read_parquet('{work}/articles/*.parquet') ORDER BY 1").fetchall()
        rej = duckdb.sql(f"SELECT record_id, reason FROM read_parquet('{work}/rejects/parse-*.parquet')").fetchall()
        return arts, rej

    arts, rej = rows(tmp_path / "w1")
    assert arts == [("PMC1160574", "CC BY-NC", "CC BY-NC", False, None, None),  # the list's License wins
                    ("PMC13133655", "CC BY", None, None, None, None),  # not in the list
                    ("PMC13239955", "CC BY-NC-ND", None, None, None, None)]  # a loose file: legacy fields stay None
    assert rej == [("PMC12389689", "retracted")]
    arts, rej = rows(tmp_path / "w2", "--keep-retracted")
    assert ("PMC12389689", "CC BY", "CC BY", True, None, None) in arts and rej == []


def test_baseline_and_incremental_packages_merge_last_wins(shared_sample: Path, tmp_path: Path):
    from pipeline.sources.filelist import merge_order

    base = "oa_comm_xml.PMC000xxxxxx.baseline.2023-12-18.tar.gz!a.xml"
    incr = "oa_comm_xml.incr.2024-01-05.tar.gz!a.xml"
    same_day = "oa_comm_xml.incr.2023-12-18.tar.gz!a.xml"
    assert sorted([base, "/x/loose.xml", incr, same_day], key=merge_order) == [incr, same_day, base, "/x/loose.xml"]
    xml = (shared_sample / "PMC1160574.xml").read_bytes()
    (tmp_path / "in").mkdir()
    for name, data in ((base, xml), (incr, xml.replace(b"<article-title>", b"<article-title>Updated: ", 1))):
        with tarfile.open(tmp_path / "in" / name.split("!")[0], "w:gz") as tf:
            info = tarfile.TarInfo("PMC000xxxxxx/PMC1160574.xml")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    work = tmp_path / "w"
    assert main(["parse", str(tmp_path / "in"), "--workdir", str(work)]) == 0
    (title, source), = duckdb.sql(f"SELECT title, source FROM read_parquet('{work}/articles/*.parquet')").fetchall()
    assert title.startswith("Updated: ") and ".incr.2024-01-05.tar.gz!" in source
    (reason, src), = duckdb.sql(f"SELECT reason, source FROM read_parquet('{work}/rejects/parse-*.parquet')").fetchall()
    assert reason == "duplicate_article" and ".baseline.2023-12-18.tar.gz!" in src
