"""pipeline.storage against a local folder, a real S3 server (moto) and a real GCS emulator, over sockets.

Every test runs on the three backends: the stages rely on the same behaviour wherever W lives.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.core import storage
from pipeline.core.errors import ConfigError
from pipeline.core.storage import Location
from tests.servers import env_vars, free_port

BACKENDS = ("local", "s3", "gcs")


@pytest.fixture(params=BACKENDS)
def root(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Location]:
    """A fresh, empty folder on each backend (servers started only when a test needs them)."""
    if request.param == "local":
        yield Location(tmp_path / "root")
        return
    server = request.getfixturevalue("s3_server" if request.param == "s3" else "gcs_server")
    sch = "s3" if request.param == "s3" else "gs"
    with server.use():
        yield Location(f"{sch}://{server.bucket()}/root")


def _rel(files: list[Location], base: Location) -> list[str]:
    return [f.relative_to(base) for f in files]


def test_names(root: Location):
    f = root / "a" / "b.parquet"
    sep = "/" if root.is_remote else os.sep
    assert str(f) == f"{root}{sep}a{sep}b.parquet"
    assert f.name == "b.parquet" and f.stem == "b" and f.suffix == ".parquet"
    assert f.parent == root / "a" and f.parent.parent == root
    assert f.relative_to(root) == f"a{sep}b.parquet"
    assert Location(f) == f and hash(Location(str(f))) == hash(f)
    if root.is_remote:
        assert Location(f"{root}/a/") == root / "a"  # a trailing slash names the same prefix
        assert str(root).startswith(("s3://", "gs://")) and "//" not in str(f).split("://", 1)[1]
        with pytest.raises(ConfigError):
            os.fspath(f)  # a remote location never becomes a local folder named "s3:"
    else:
        assert Location(f"file://{f}") == f and os.fspath(f) == str(f)


def test_glob(root: Location):
    for rel in ("a/1.parquet", "a/b/2.parquet", "a/b/c/3.parquet", "top.parquet", "a/notes.txt"):
        (root / rel).write_bytes(rel.encode())
    assert _rel(root.glob("*.parquet"), root) == ["top.parquet"]
    assert _rel((root / "a").glob("*.parquet"), root / "a") == ["1.parquet"]
    everything = sorted(["a/1.parquet", "a/b/2.parquet", "a/b/c/3.parquet", "a/notes.txt", "top.parquet"])
    assert sorted(_rel(root.glob("**"), root)) == everything  # files only, every depth
    deep = sorted(_rel(root.glob("a/**/*.parquet"), root))
    assert {"a/b/2.parquet", "a/b/c/3.parquet"} <= set(deep) <= {"a/1.parquet", "a/b/2.parquet", "a/b/c/3.parquet"}
    assert root.glob("nothing/*") == [] and (root / "missing").glob("**") == []
    assert (root / "a").is_dir() and not (root / "a").is_file() and (root / "a/1.parquet").is_file()
    assert _rel((root / "a").iterdir(), root / "a") == ["1.parquet", "b", "notes.txt"]


def test_write_bytes_replaces_whole_file(root: Location):
    f = root / "d" / "f.bin"
    f.write_bytes(b"first version, longer than the second")
    f.write_bytes(b"second")
    assert f.read_bytes() == b"second"
    assert _rel((root / "d").glob("**"), root / "d") == ["f.bin"]  # no temporary file left behind
    if not root.is_remote:
        assert os.listdir(f.parent.local) == ["f.bin"]  # not even a hidden one


def test_read_text(root: Location):
    f = root / "t.txt"
    f.write_text("fièvre ≥ 38 °C\n")
    assert f.read_text() == "fièvre ≥ 38 °C\n"
    assert f.info()["size"] == len("fièvre ≥ 38 °C\n".encode())


def test_create_exclusive(root: Location):
    lock = root / "_stages" / "lock"
    assert lock.create_exclusive(b"me") is True
    second = lock.create_exclusive(b"someone else")
    if str(root).startswith("gs://"):
        # gcp-storage-emulator ignores ifGenerationMatch=0, so the second create overwrites; real GCS
        # refuses it (412). Only the first call can be checked here.
        pytest.skip("gcp-storage-emulator does not enforce ifGenerationMatch preconditions")
    assert second is False
    assert lock.read_bytes() == b"me"


def test_rmtree(root: Location):
    for rel in ("t/1", "t/x/2", "t/x/y/3", "tx/keep", "t.keep"):
        (root / rel).write_bytes(b".")
    (root / "t").rmtree()
    assert not (root / "t").exists() and (root / "t").glob("**") == []
    assert sorted(_rel(root.glob("**"), root)) == ["t.keep", "tx/keep"]  # same-prefix siblings are kept
    (root / "absent").rmtree()  # nothing there: no error


def test_upload_and_download_round_trip(root: Location, tmp_path: Path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("a")
    (src / "sub" / "b.bin").write_bytes(bytes(range(256)) * 100)
    target = root / "model"
    (target / "stale.txt").write_text("from an earlier run")
    target.upload_from(src)
    assert sorted(_rel(target.glob("**"), target)) == ["a.txt", "sub/b.bin"]  # stale.txt removed
    back = target.download_to(tmp_path / "back")
    assert (back / "a.txt").read_text() == "a"
    assert (back / "sub" / "b.bin").read_bytes() == bytes(range(256)) * 100
    assert sorted(str(p.relative_to(back)) for p in back.rglob("*") if p.is_file()) == ["a.txt", "sub/b.bin"]


def test_fingerprint(root: Location):
    files = [root / "t" / "1.parquet", root / "t" / "2.parquet"]
    for f in files:
        f.write_bytes(b"0123456789")
    fp = storage.fingerprint(files, root)
    assert fp["files"] == 2 and fp["bytes"] == 20
    assert storage.fingerprint(files, root) == fp  # stable while nothing changes
    assert storage.fingerprint((root / "t").glob("*"), root) == fp
    files[1].write_bytes(b"abcdefghij")  # same size, new content, right away
    assert storage.fingerprint(files, root)["digest"] != fp["digest"]


def test_local_copy(root: Location):
    (root / "m" / "config.json").write_text('{"v": 1}')
    (root / "m" / "w" / "weights.bin").write_bytes(b"\0" * 1000)
    first = storage.local_copy(root / "m")
    assert storage.local_copy(root / "m") == first
    assert (first / "config.json").read_text() == '{"v": 1}' and (first / "w" / "weights.bin").stat().st_size == 1000
    if not root.is_remote:
        assert first == (root / "m").local  # a local folder is used in place
        return
    (root / "m" / "config.json").write_text('{"v": 2}')
    second = storage.local_copy(root / "m")
    assert second != first and (second / "config.json").read_text() == '{"v": 2}'
    with pytest.raises(ConfigError, match="nothing at"):
        storage.local_copy(root / "empty")


def test_check_access_passes_and_leaves_nothing(root: Location):
    storage.check_access(root / "w")
    storage.check_access(root / "w", write=False)
    assert (root / "w").glob("**") == []  # the write probe is removed again


@pytest.mark.parametrize("backend", ["s3", "gcs"])
def test_check_access_missing_bucket(backend: str, request: pytest.FixtureRequest):
    server = request.getfixturevalue("s3_server" if backend == "s3" else "gcs_server")
    url = f"{'s3' if backend == 's3' else 'gs'}://no-such-bucket-{free_port()}/w"
    with server.use():
        for write in (True, False):
            with pytest.raises(ConfigError, match="does not exist") as e:
                storage.check_access(url, write=write)
            assert url.split("/w")[0] in str(e.value)


def test_check_access_unreachable_endpoint(s3_server):
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    # Default retry settings, as a user has them: s3fs and botocore retry a refused connection (~10 s).
    with env_vars({**s3_server.env(), "AWS_ENDPOINT_URL": dead}):
        t0 = time.monotonic()
        with pytest.raises(ConfigError, match="cannot reach") as e:
            storage.check_access("s3://bucket/w")
        assert "AWS_ENDPOINT_URL" in str(e.value)
        assert time.monotonic() - t0 < 30


def test_unsupported_scheme():
    with pytest.raises(ConfigError) as e:
        storage.check_access("hdfs://namenode/w")
    msg = str(e.value)
    assert "hdfs://" in msg and all(s in msg for s in ("local path", "s3://", "gs://"))
    with pytest.raises(ConfigError):
        Location("hdfs://namenode/w")


def test_duckdb_reads_and_writes_parquet(root: Location, request: pytest.FixtureRequest):
    if not str(root).startswith("gs://"):
        # This process has named gs:// locations (the gcs params), so duckdb_connect builds a gcsfs client,
        # which without STORAGE_EMULATOR_HOST searches for Google credentials (~15 s of metadata-server
        # retries). Point it at the emulator; test_duckdb_connect_without_cloud_settings covers a fresh process.
        gcs = request.getfixturevalue("gcs_server")
        os.environ["STORAGE_EMULATOR_HOST"] = gcs.endpoint
        request.addfinalizer(lambda: os.environ.pop("STORAGE_EMULATOR_HOST", None))
    con = storage.duckdb_connect(threads=2)
    try:
        out = root / "t" / "part-0.parquet"
        (root / "t").mkdir()  # DuckDB's COPY needs the local folder (nothing to do on an object store)
        con.execute(f"COPY (SELECT range AS i, 'p' || range AS s FROM range(1000)) TO '{out}' (FORMAT parquet)")
        assert out.is_file()
        assert storage.read_parquet_metadata(out).num_rows == 1000
        con.execute(f"COPY (SELECT 1000 + range AS i, 'q' AS s FROM range(10)) TO '{root / 't' / 'part-1.parquet'}' (FORMAT parquet)")
        got = con.sql(f"SELECT count(*), sum(i), count(DISTINCT s) FROM read_parquet('{root / 't'}/*.parquet')").fetchall()
        assert got == [(1010, sum(range(1010)), 1001)]
        assert con.sql(f"SELECT s FROM read_parquet('{out}') WHERE i = 7").fetchall() == [("p7",)]
    finally:
        con.close()


def test_duckdb_connect_without_cloud_settings(tmp_path: Path):
    """A local run on a machine with no cloud settings at all: DuckDB works at once (no search for
    Google credentials, which costs ~15 s of metadata-server retries) and needs no httpfs download."""
    import subprocess
    import sys

    code = (
        "import time; t = time.monotonic()\n"
        "from pipeline.core import storage\n"
        f"con = storage.duckdb_connect(); con.execute(\"COPY (SELECT 42 AS x) TO '{tmp_path}/x.parquet' (FORMAT parquet)\")\n"
        f"assert con.sql(\"SELECT x FROM read_parquet('{tmp_path}/x.parquet')\").fetchall() == [(42,)]\n"
        "print(round(time.monotonic() - t, 2))\n"
    )
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "TMPDIR": str(tmp_path), "LANG": "C.UTF-8"}
    r = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert float(r.stdout.strip().splitlines()[-1]) < 5.0, r.stderr[-3000:]


def test_locations_sort_by_their_text() -> None:
    # status sorts a stage's reject files; several of them (after parse --update) must not raise.
    L = Location

    assert sorted([L("s3://b/w/parse-2.parquet"), L("s3://b/w/parse-10.parquet"), L("s3://b/w/a.parquet")]) == [
        L("s3://b/w/a.parquet"), L("s3://b/w/parse-10.parquet"), L("s3://b/w/parse-2.parquet")]


def test_read_bytes_whole_or_up_to_a_limit(root: Location, request: pytest.FixtureRequest):
    (root / "x").write_bytes(b"hello world")
    (root / "empty").write_bytes(b"")
    assert (root / "x").read_bytes() == b"hello world"
    assert (root / "x").read_bytes(limit=4) == b"hello"  # limit + 1 bytes: the caller sees it is over
    assert (root / "x").read_bytes(limit=100) == b"hello world"
    assert (root / "empty").read_bytes(limit=4) == b"" == (root / "empty").read_bytes()
    for limit in (None, 4):
        with pytest.raises(FileNotFoundError):
            (root / "missing").read_bytes(limit=limit)
    if str(root).startswith("s3://"):  # one GET each, no HEAD first (the PMC Cloud reader does 2 per article)
        server = request.getfixturevalue("s3_server")
        n = server.requests()
        (root / "x").read_bytes()
        (root / "x").read_bytes(limit=4)
        assert server.requests() - n == 2
