"""Builds, at test time, a mirror of the PMC Cloud layout (s3://pmc-oa-opendata) from ../shared/data/pmc-oa-sample.

    root/PMC<id>.<v>/PMC<id>.<v>.xml + .json, root/metadata/PMC<id>.<v>.json,
    root/inventory-reports/pmc-oa-opendata/metadata/<day>T01-00Z/manifest.json + data/<uuid>.csv.gz

Every sample article is version 1, open access, with the license its XML states as `license_code` (null
when the XML names no Creative Commons license), except the special cases in `Mirror.special`:
two versions, a retracted article, a manuscript, a JSON/XML license disagreement, a closed article, a
newer closed version, a JSON that is not JSON, a prefix without XML, an MD5 mismatch, and a retraction
notice. The newest manifest also names a missing part and a corrupt one; the older names one part only.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

BUCKET = "pmc-oa-opendata"
DAY1, DAY2 = "2026-01-07", "2026-01-08"
INV = f"inventory-reports/{BUCKET}/metadata"

NOTICE = b"""<?xml version="1.0"?>
<article article-type="retraction" xml:lang="en"><front><article-meta>
<article-id pub-id-type="pmcid">PMC9100001</article-id>
<article-id pub-id-type="pmcid-ver">PMC9100001.1</article-id>
<title-group><article-title>Retraction: a retracted study</article-title></title-group>
<related-article related-article-type="retracted-article" ext-link-type="pmc" xlink:href="RETRACTED"
 xmlns:xlink="http://www.w3.org/1999/xlink"/>
<permissions><license xlink:href="https://creativecommons.org/licenses/by/4.0/"
 xmlns:xlink="http://www.w3.org/1999/xlink"><license-p>CC BY</license-p></license></permissions>
</article-meta></front><body><p>This article has been retracted at the request of the authors because the
results could not be reproduced; the journal and the authors apologise to the readers for any confusion.</p>
</body></article>"""


@dataclass
class Mirror:
    root: Path
    pmcids: list[str]  # the sample's, sorted by number
    special: dict[str, str] = field(default_factory=dict)  # role -> pmcid
    xml_license: dict[str, str] = field(default_factory=dict)  # pmcid -> what its XML alone says
    day1_keys: set[str] = field(default_factory=set)  # versions named by the older inventory

    @property
    def manifest_day1(self) -> str:
        return f"{INV}/{DAY1}T01-00Z/manifest.json"


def _pmcid(name: str) -> str:
    return "PMC" + str(int(re.search(r"PMC(\d+)", name).group(1)))


def _xml_license(data: bytes) -> str:
    from pipeline.jats import extract_articles

    return extract_articles(data, "x.xml")[0].article.license


def build_mirror(sample: Path, root: Path, with_inventory: bool = True) -> Mirror:
    files = {_pmcid(p.name): p for p in sample.iterdir() if p.suffix in (".xml", ".nxml")}
    pmcids = sorted(files, key=lambda p: int(p[3:]))
    m = Mirror(root, pmcids)
    for p in pmcids:
        m.xml_license[p] = _xml_license(files[p].read_bytes())
    roles = ["two_versions", "retracted", "manuscript", "closed", "newer_closed", "bad_json", "no_xml", "bad_md5"]
    m.special = dict(zip(roles, pmcids[:len(roles)], strict=True))
    m.special["disagree"] = next(p for p in pmcids[len(roles):] if m.xml_license[p] == "CC BY")
    sp = {v: k for k, v in m.special.items()}
    rows: list[tuple[str, str]] = []  # (key, etag)

    def put(key: str, data: bytes) -> None:
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(data)

    def version(pmcid: str, v: int, xml: bytes | None, **meta: object) -> None:
        key = f"{pmcid}.{v}"
        lic = m.xml_license.get(pmcid)
        doc = {"pmcid": pmcid, "version": v, "pmid": None, "doi": None, "mid": None, "title": None,
               "is_pmc_openaccess": True, "is_manuscript": False, "is_historical_ocr": False, "is_retracted": False,
               "license_code": lic if lic and lic.startswith("CC") else None,
               "xml_url": f"s3://{BUCKET}/{key}/{key}.xml?md5={hashlib.md5(xml or b'').hexdigest()}",
               "text_url": f"s3://{BUCKET}/{key}/{key}.txt?md5=0", "pdf_url": None, "media_urls": []}
        doc.update(meta)
        if xml is not None:
            put(f"{key}/{key}.xml", xml)
        body = json.dumps(doc).encode()
        if pmcid == m.special["bad_json"]:
            body = b'{"pmcid": "' + pmcid.encode() + b'", "version": 1, not json'
        put(f"{key}/{key}.json", body)
        put(f"metadata/{key}.json", body)
        rows.append((f"metadata/{key}.json", hashlib.md5(body).hexdigest()))

    for p in pmcids:
        xml = files[p].read_bytes()
        role = sp.get(p)
        if role == "two_versions":
            version(p, 1, xml)
            version(p, 2, xml.replace(b"<article-title>", b"<article-title>Version two: ", 1))
        elif role == "retracted":
            version(p, 1, xml, is_retracted=True)
        elif role == "manuscript":
            version(p, 1, xml, is_manuscript=True, license_code="TDM")
        elif role == "closed":
            version(p, 1, xml, is_pmc_openaccess=False)
        elif role == "newer_closed":
            version(p, 1, xml)
            version(p, 2, xml, is_pmc_openaccess=False)
        elif role == "no_xml":
            version(p, 1, None)
        elif role == "bad_md5":
            version(p, 1, xml, xml_url=f"s3://{BUCKET}/{p}.1/{p}.1.xml?md5={'0' * 32}")
        elif role == "disagree":
            version(p, 1, xml, license_code="CC BY-NC-ND")
        else:
            version(p, 1, xml)
    version("PMC9100001", 1, NOTICE.replace(b"RETRACTED", m.special["retracted"].encode()), license_code="CC BY")
    if with_inventory:
        _inventory(root, rows, m)
    return m


def _part(rows: list[tuple[str, str]]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, quoting=csv.QUOTE_ALL, lineterminator="\n")
    for key, etag in rows:
        w.writerow([BUCKET, key, "2026-01-08T11:47:59.000Z", etag])
    return gzip.compress(buf.getvalue().encode())


def _manifest(keys: list[str]) -> bytes:
    return json.dumps({"sourceBucket": BUCKET, "destinationBucket": f"arn:aws:s3:::{BUCKET}", "version": "2016-11-30",
                       "fileFormat": "CSV", "fileSchema": "Bucket, Key, LastModifiedDate, ETag",
                       "files": [{"key": k, "size": 0, "MD5checksum": "x"} for k in keys]}).encode()


def _inventory(root: Path, rows: list[tuple[str, str]], m: Mirror) -> None:
    half = len(rows) // 2
    a, b = f"{INV}/data/0a1b-part-a.csv.gz", f"{INV}/data/0a1b-part-b.csv.gz"
    missing, corrupt = f"{INV}/data/0a1b-missing.csv.gz", f"{INV}/data/0a1b-corrupt.csv.gz"
    for key, data in ((a, _part(rows[:half])), (b, _part(rows[half:])),
                      (corrupt, gzip.compress(b'"x","metadata/PMC1.1.json"\n')[:20])):
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(data)
    for day, keys in ((DAY1, [a]), (DAY2, [a, b, missing, corrupt])):
        d = root / INV / f"{day}T01-00Z"
        d.mkdir(parents=True, exist_ok=True)
        (d / "manifest.json").write_bytes(_manifest(keys))
    m.day1_keys = {k.split("/")[-1][: -len(".json")] for k, _ in rows[:half]}


def upload(root: Path, client: object, bucket: str, acl: str = "public-read") -> None:
    """Copy the mirror into an S3 bucket (moto), key for key, readable by anyone like the real bucket."""
    for p in sorted(root.rglob("*")):
        if p.is_file():
            client.put_object(Bucket=bucket, Key=str(p.relative_to(root)), Body=p.read_bytes(), ACL=acl)  # type: ignore[attr-defined]


class LayoutWriter:
    """Writes and edits a PMC Cloud layout version by version; `inventory(day)` indexes what is there now."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def version(self, pmcid: str, v: int, xml: bytes | None, **meta: object) -> None:
        key = f"{pmcid}.{v}"
        doc = {"pmcid": pmcid, "version": v, "is_pmc_openaccess": True, "is_manuscript": False,
               "is_retracted": False, "license_code": None,
               "xml_url": f"s3://{BUCKET}/{key}/{key}.xml?md5={hashlib.md5(xml or b'').hexdigest()}"}
        doc.update(meta)
        d = self.root / key
        d.mkdir(parents=True, exist_ok=True)
        if xml is not None:
            (d / f"{key}.xml").write_bytes(xml)
        body = json.dumps(doc).encode()
        (d / f"{key}.json").write_bytes(body)
        (self.root / "metadata").mkdir(exist_ok=True)
        (self.root / "metadata" / f"{key}.json").write_bytes(body)

    def remove(self, pmcid: str, v: int) -> None:
        key = f"{pmcid}.{v}"
        for p in sorted((self.root / key).iterdir()):
            p.unlink()
        (self.root / key).rmdir()
        (self.root / "metadata" / f"{key}.json").unlink()

    def inventory(self, day: str) -> str:
        rows = [(f"metadata/{p.name}", hashlib.md5(p.read_bytes()).hexdigest())
                for p in sorted((self.root / "metadata").glob("PMC*.json"))]
        part = f"{INV}/data/{day}-part.csv.gz"
        (self.root / part).parent.mkdir(parents=True, exist_ok=True)
        (self.root / part).write_bytes(_part(rows))
        man = self.root / INV / f"{day}T01-00Z" / "manifest.json"
        man.parent.mkdir(parents=True, exist_ok=True)
        man.write_bytes(_manifest([part]))
        return str(man.relative_to(self.root))
