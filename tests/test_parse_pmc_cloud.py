"""`pmc-curate parse` on the PMC Cloud layout (s3://pmc-oa-opendata): a mirror built from the real sample at
test time (tests/pmc_cloud_mirror.py), served as a local directory and through moto's S3 server."""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

import duckdb
import pytest

from pipeline.cli import main
from pipeline.jats.license import from_code
from tests.pmc_cloud_mirror import BUCKET, build_mirror, upload

NC = {"CC BY-NC", "CC BY-NC-SA", "CC BY-NC-ND"}
DEFAULT_REJECTS = {"bad_metadata": 1, "corrupt_inventory": 1, "inventory_part_missing": 1, "md5_mismatch": 1,
                   "no_xml": 1, "not_open_access": 1, "retracted": 1, "retraction_notice": 1}
DEFAULT_VERSIONS = {"parsed": 77, "rejected": 3, "not_open_access": 2, "retracted": 2, "manuscript": 1,
                    "superseded": 1}


@pytest.fixture(scope="module")
def mirror(shared_sample: Path, tmp_path_factory: pytest.TempPathFactory):
    return build_mirror(shared_sample, tmp_path_factory.mktemp("mirror") / "pmc-oa-opendata")


def parse(src: str, work: Path | str, *flags: str) -> str:
    assert main(["parse", src, "--workdir", str(work), *flags]) == 0
    return str(work)


def q(work: str, sql: str) -> list[tuple]:
    from pipeline.core import storage

    for t in ("articles", "paragraphs", "versions"):
        sql = sql.replace(t.upper(), f"read_parquet('{work}/{t}/*.parquet')")
    sql = sql.replace("REJECTS", f"read_parquet('{work}/rejects/parse-*.parquet')")
    con = storage.duckdb_connect() if "://" in work else duckdb.connect()
    return con.sql(sql).fetchall()


@pytest.fixture(scope="module")
def default_run(mirror, tmp_path_factory):
    return parse(str(mirror.root), tmp_path_factory.mktemp("w") / "w")


def test_counts_rejects_and_versions(default_run, mirror):
    w = default_run
    assert q(w, "SELECT count(*), count(DISTINCT pmcid) FROM ARTICLES") == [(77, 77)]
    assert dict(q(w, "SELECT reason, count(*) FROM REJECTS GROUP BY 1")) == DEFAULT_REJECTS
    assert dict(q(w, "SELECT outcome, count(*) FROM VERSIONS GROUP BY 1")) == DEFAULT_VERSIONS
    assert q(w, "SELECT count(*), count(DISTINCT key) FROM VERSIONS") == [(86, 86)]
    assert q(w, "SELECT DISTINCT snapshot FROM VERSIONS") == [("2026-01-08",)]
    s = __import__("json").loads(Path(w, "_stages", "parse.json").read_text())
    assert s["layout"] == "pmc-cloud" and s["inventory_parts"] == 4 and s["license_disagreements"] == 1
    sp = mirror.special
    gone = {sp[k] for k in ("retracted", "manuscript", "closed", "bad_json", "no_xml", "bad_md5")}
    assert {p for (p,) in q(w, "SELECT pmcid FROM ARTICLES")} == set(mirror.pmcids) - gone


def test_bad_inputs_are_rejects_with_reasons(default_run, mirror):
    sp = mirror.special
    got = q(default_run, "SELECT reason, regexp_replace(source, '^.*?/pmc-oa-opendata/', ''), record_id FROM REJECTS ORDER BY 1")
    inv = "inventory-reports/pmc-oa-opendata/metadata/data/"
    assert got == [
        ("bad_metadata", f"metadata/{sp['bad_json']}.1.json", f"{sp['bad_json']}.1"),
        ("corrupt_inventory", inv + "0a1b-corrupt.csv.gz", None),
        ("inventory_part_missing", inv + "0a1b-missing.csv.gz", None),
        ("md5_mismatch", f"{sp['bad_md5']}.1/{sp['bad_md5']}.1.xml", f"{sp['bad_md5']}.1"),
        ("no_xml", f"{sp['no_xml']}.1/{sp['no_xml']}.1.xml", f"{sp['no_xml']}.1"),
        ("not_open_access", f"{sp['closed']}.1", f"{sp['closed']}.1"),
        ("retracted", f"{sp['retracted']}.1", f"{sp['retracted']}.1"),
        ("retraction_notice", "PMC9100001.1/PMC9100001.1.xml", "PMC9100001.1"),
    ]
    details = dict(q(default_run, "SELECT reason, detail FROM REJECTS"))
    assert details["bad_metadata"].startswith("not JSON") and "0" * 32 in details["md5_mismatch"]
    assert details["corrupt_inventory"].startswith("after 0 rows read intact: EOFError")


def test_one_canonical_version_per_pmcid(default_run, mirror):
    sp, w = mirror.special, default_run
    two, newer_closed = sp["two_versions"], sp["newer_closed"]
    (title, ver, pv), = q(w, f"SELECT title, version, pmcid_version FROM ARTICLES WHERE pmcid = '{two}'")
    assert (ver, pv) == (2, f"{two}.2") and title.startswith("Version two: ")
    assert q(w, f"SELECT version FROM ARTICLES WHERE pmcid = '{newer_closed}'") == [(1,)]
    assert q(w, f"SELECT key, outcome FROM VERSIONS WHERE pmcid IN ('{two}', '{newer_closed}') AND outcome <> 'parsed' "
                "ORDER BY 1") == [(f"{two}.1", "superseded"), (f"{newer_closed}.2", "not_open_access")]
    assert q(w, "SELECT count(*) FROM ARTICLES WHERE version = 1") == [(76,)]
    # No paragraph of a superseded, retracted or rejected version; none duplicated.
    assert q(w, "SELECT count(*), count(DISTINCT id) FROM PARAGRAPHS WHERE article_id NOT IN "
                "(SELECT pmcid FROM ARTICLES)") == [(0, 0)]


def test_article_fields_and_md5(default_run, mirror):
    rows = q(default_run, "SELECT pmcid, pmcid_version, is_manuscript, is_retracted, source_md5, snapshot, source "
                          "FROM ARTICLES")
    for pmcid, pv, man, ret, md5, snap, source in rows:
        assert pv.startswith(pmcid + ".") and man is False and ret is False and snap == "2026-01-08"
        assert md5 == hashlib.md5(Path(source).read_bytes()).hexdigest()


def test_license_resolution_order(default_run, mirror):
    w, sp = default_run, mirror.special
    for pmcid, lic, code, commercial in q(w, "SELECT pmcid, license, license_code, commercial FROM ARTICLES"):
        want = from_code(code) if code else mirror.xml_license[pmcid]
        assert lic == want, pmcid  # the JSON's code first, else what the XML says
        assert commercial == (lic in {"public domain", "CC0", "CC BY", "CC BY-SA", "CC BY-ND"})
    assert q(w, f"SELECT license, license_code, license_url FROM ARTICLES WHERE pmcid = '{sp['disagree']}'") == [
        ("CC BY-NC-ND", "CC BY-NC-ND", None)]
    assert q(w, "SELECT key, license_xml FROM VERSIONS WHERE license_agrees = false") == [(f"{sp['disagree']}.1", "CC BY")]
    assert q(w, "SELECT count(*) FROM ARTICLES WHERE license_code IS NULL") == [
        (sum(1 for p, n in mirror.xml_license.items() if not n.startswith("CC") and p not in
             {sp['closed'], sp['bad_json'], sp['no_xml'], sp['bad_md5'], sp['retracted'], sp['manuscript']}),)]


def test_keep_retracted_and_include_manuscripts(mirror, tmp_path):
    w = parse(str(mirror.root), tmp_path / "w", "--keep-retracted", "--include-manuscripts")
    sp = mirror.special
    assert q(w, "SELECT count(*) FROM ARTICLES") == [(80,)]
    assert q(w, f"SELECT is_retracted FROM ARTICLES WHERE pmcid = '{sp['retracted']}'") == [(True,)]
    assert q(w, f"SELECT is_manuscript, license, license_code, commercial FROM ARTICLES WHERE pmcid = '{sp['manuscript']}'") \
        == [(True, "other", "TDM", False)]
    assert q(w, "SELECT article_type FROM ARTICLES WHERE pmcid = 'PMC9100001'") == [("retraction",)]
    assert dict(q(w, "SELECT reason, count(*) FROM REJECTS GROUP BY 1")) == {
        k: v for k, v in DEFAULT_REJECTS.items() if k not in ("retracted", "retraction_notice")}


def test_license_and_pmcid_filters(mirror, default_run, tmp_path):
    ids = tmp_path / "ids.txt"
    ids.write_text("# a partial run\n" + "\n".join(mirror.pmcids[::2]) + "\n")
    w = parse(str(mirror.root), tmp_path / "w1", "--license", "noncommercial", "--pmcids", str(ids))
    want = {p for p, lic in q(default_run, "SELECT pmcid, license FROM ARTICLES") if lic in NC and p in mirror.pmcids[::2]}
    assert want and {p for (p,) in q(w, "SELECT pmcid FROM ARTICLES")} == want
    lo, hi = mirror.pmcids[10], mirror.pmcids[30]
    w = parse(str(mirror.root), tmp_path / "w2", "--license", "CC BY,CC0", "--pmcids", f"{lo}-{hi}")
    want = {p for p, lic in q(default_run, "SELECT pmcid, license FROM ARTICLES")
            if lic in ("CC BY", "CC0") and int(lo[3:]) <= int(p[3:]) <= int(hi[3:])}
    assert want and {p for (p,) in q(w, "SELECT pmcid FROM ARTICLES")} == want
    assert q(w, "SELECT count(*) FROM REJECTS WHERE reason = 'inventory_part_missing'") == [(1,)]


def test_chosen_inventory_and_listing_fallback(mirror, default_run, shared_sample, tmp_path):
    w = parse(str(mirror.root), tmp_path / "w1", "--inventory", mirror.manifest_day1)
    assert q(w, "SELECT DISTINCT snapshot FROM VERSIONS") == [("2026-01-07",)]
    assert {k for (k,) in q(w, "SELECT key FROM VERSIONS")} == mirror.day1_keys
    assert q(w, "SELECT count(*) FROM REJECTS WHERE reason LIKE '%inventory%'") == [(0,)]
    # A mirror without an inventory is listed: same result, minus the inventory's own rejects.
    bare = build_mirror(shared_sample, tmp_path / "bare" / "m", with_inventory=False)
    w = parse(str(bare.root), tmp_path / "w2")
    assert q(w, "SELECT count(*) FROM ARTICLES") == [(77,)]
    assert dict(q(w, "SELECT reason, count(*) FROM REJECTS GROUP BY 1")) == {
        k: v for k, v in DEFAULT_REJECTS.items() if "inventory" not in k}
    (snap,) = q(w, "SELECT DISTINCT snapshot FROM ARTICLES")[0]
    assert snap.endswith("Z") and "T" in snap  # the listing time
    assert sorted(q(w, "SELECT pmcid, version, license, n_paragraphs FROM ARTICLES")) == \
        sorted(q(default_run, "SELECT pmcid, version, license, n_paragraphs FROM ARTICLES"))


def test_public_bucket_through_s3_server_anonymously(mirror, default_run, s3_server, s3_workdir):
    from pipeline.core import storage

    client = s3_server.client()
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(Bucket=BUCKET)
    upload(mirror.root, client, BUCKET)
    client.put_object(Bucket=BUCKET, Key="private/only-with-credentials.txt", Body=b"x")  # not public-read
    assert storage.filesystem(f"s3://{BUCKET}/x").anon is True  # unsigned requests, no credentials used
    assert storage.filesystem(f"{s3_workdir}/x").anon is False
    with pytest.raises(PermissionError):  # the credentials in the environment are not sent
        storage.Location(f"s3://{BUCKET}/private/only-with-credentials.txt").read_bytes()
    w = parse(f"s3://{BUCKET}/", s3_workdir)
    cols = "pmcid, pmcid_version, license, license_code, n_paragraphs, source_md5, snapshot"
    assert sorted(q(w, f"SELECT {cols} FROM ARTICLES")) == sorted(q(default_run, f"SELECT {cols} FROM ARTICLES"))
    assert dict(q(w, "SELECT reason, count(*) FROM REJECTS GROUP BY 1")) == DEFAULT_REJECTS
    assert dict(q(w, "SELECT outcome, count(*) FROM VERSIONS GROUP BY 1")) == DEFAULT_VERSIONS
    assert q(w, f"SELECT count(*) FROM ARTICLES WHERE source NOT LIKE 's3://{BUCKET}/PMC%'") == [(0,)]


def test_legacy_package_in_the_public_bucket_without_credentials(shared_sample, s3_server, tmp_path, monkeypatch):
    """The frozen bulk packages (deprecated/oa_bulk/) parse with no AWS credentials at all: listed and read
    unsigned through the storage layer, their .filelist.csv joined."""
    import io
    import tarfile

    from tests.servers import env_vars

    client = s3_server.client()
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(Bucket=BUCKET)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for n in ("PMC1160574.xml", "PMC13133655.xml"):
            data = (shared_sample / n).read_bytes()
            info = tarfile.TarInfo(f"PMC000xxxxxx/{n}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    pre = "deprecated/oa_bulk/oa_comm/xml/oa_comm_xml.PMC000xxxxxx.baseline.2023-12-18"
    client.put_object(Bucket=BUCKET, Key=f"{pre}.tar.gz", Body=buf.getvalue(), ACL="public-read")
    client.put_object(Bucket=BUCKET, Key=f"{pre}.filelist.csv", ACL="public-read", Body=(
        b"Article File,Article Citation,AccessionID,LastUpdated (YYYY-MM-DD HH:MM:SS),PMID,License,Retracted\n"
        b"PMC000xxxxxx/PMC1160574.xml,PLoS Med.,PMC1160574,2023-12-18 10:00:00,1,CC BY,yes\n"))
    with env_vars({"AWS_ENDPOINT_URL": s3_server.endpoint, "AWS_DEFAULT_REGION": "us-east-1"}):
        for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            monkeypatch.delenv(k, raising=False)
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
        monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
        w = parse(f"s3://{BUCKET}/deprecated/oa_bulk/oa_comm/xml/", tmp_path / "w", "--keep-retracted")
    assert q(w, "SELECT pmcid, license_code, is_retracted FROM ARTICLES ORDER BY 1") == [
        ("PMC1160574", "CC BY", True), ("PMC13133655", None, None)]


def test_private_s3_mirror_without_inventory_is_listed(shared_sample, s3_server, s3_workdir, tmp_path):
    """A private mirror (credentials from the environment) with no inventory: its prefixes are listed."""
    bare = build_mirror(shared_sample, tmp_path / "bare", with_inventory=False)
    bucket = s3_server.bucket()
    upload(bare.root, s3_server.client(), bucket, acl="private")
    lo, hi = bare.pmcids[0], bare.pmcids[12]
    n0 = s3_server.requests()
    w = parse(f"s3://{bucket}", tmp_path / "w", "--pmcids", f"{lo}-{hi}")
    requests = s3_server.requests() - n0
    sp = bare.special
    assert dict(q(w, "SELECT outcome, count(*) FROM VERSIONS GROUP BY 1")) == {
        "parsed": 7, "superseded": 1, "not_open_access": 2, "retracted": 1, "manuscript": 1, "rejected": 3}
    # One GET per JSON and per XML read (no HEAD before each), plus the listing: a real bucket charges
    # a round trip for each, so 5 requests an article would make the parse 2.5x slower than 2.
    (n_versions,) = q(w, "SELECT count(*) FROM VERSIONS")[0]
    assert requests <= 2 * n_versions + 12, requests
    assert q(w, f"SELECT version FROM ARTICLES WHERE pmcid = '{sp['two_versions']}'") == [(2,)]
    (snap,) = q(w, "SELECT DISTINCT snapshot FROM VERSIONS")[0]
    assert snap.endswith("Z")


def test_an_xml_over_the_size_limit_is_a_reject_and_is_not_downloaded_whole(mirror, tmp_path):
    lo, hi = mirror.pmcids[0], mirror.pmcids[12]
    w = parse(str(mirror.root), tmp_path / "w", "--pmcids", f"{lo}-{hi}", "--max-file-mb", "0.001")
    assert q(w, "SELECT count(*) FROM ARTICLES") == [(0,)]
    too_large = q(w, "SELECT count(*), min(detail) FROM REJECTS WHERE reason = 'too_large'")[0]
    assert too_large[0] >= 5 and "more than 1048 bytes (--max-file-mb)" in too_large[1]


def test_the_flow_fingerprints_a_layout_by_its_index_not_by_listing_every_object(mirror, shared_sample, tmp_path):
    from pipeline.flow.markers import _input_paths
    from tests.conftest import EXAMPLES

    got = _input_paths([str(mirror.root)])
    assert len(got) == 1 and got[0].name == "manifest.json" and str(got[0]) != f"{mirror.root}/{mirror.manifest_day1}"
    bare = build_mirror(shared_sample, tmp_path / "bare" / "m", with_inventory=False)
    got = _input_paths([f"{bare.root}/"])
    assert got and all(str(p).startswith(f"{bare.root}/metadata/") and p.suffix == ".json" for p in got)
    assert len(_input_paths([str(EXAMPLES / "jats")])) == 10  # loose files: every file, as before
