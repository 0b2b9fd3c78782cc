"""What killed runs leave in W (Beam temp folders whose files end in .parquet, half-written files, swapped-out
folders) is removed by the next writer, locally and on the S3 server; a live process's temporary file is not."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.cli import main
from pipeline.core import storage
from pipeline.core.storage import Location
from pipeline.core.workdir import Workdir
from pipeline.flow import debris
from tests.test_curate import build_workdir
from tests.test_remote_curate import _upload

DEAD = 4_000_000  # above pid_max: no such process


def _paragraph_rows(root: str) -> int:
    con = storage.duckdb_connect()
    try:
        return con.sql(f"SELECT count(*) FROM read_parquet('{root}/paragraphs/**/*.parquet')").fetchall()[0][0]
    finally:
        con.close()


def test_the_next_writer_collects_the_debris_of_killed_runs(tmp_path: Path) -> None:
    w = build_workdir(tmp_path / "w")
    rows = _paragraph_rows(str(w))
    temp = w / "paragraphs" / "beam-temp-part-0123abcd"
    temp.mkdir()
    pq.write_table(pa.table({"x": [1]}), temp / "5f2e.parquet")  # a killed Beam write's temporary shard
    (w / "labels" / f".part.parquet.tmp-{DEAD}-0a1b2c3d").write_bytes(b"half")
    (w / "subsets").mkdir(exist_ok=True)
    (w / "subsets" / f".be-base.tmp-{DEAD}-0a1b2c3d").mkdir()
    (w.parent / "w" / f"model.old-{DEAD}").mkdir()
    shadow = w / f".paragraphs.tmp-{DEAD}-0a1b2c3d"  # a killed full rewrite's new table (Workdir.rewriting)
    shadow.mkdir()
    pq.write_table(pa.table({"x": [1]}), shadow / "part-00000-of-00001.parquet")
    live = w / "labels" / f".part.parquet.tmp-{os.getpid()}-0a1b2c3d"  # a live writer's: kept
    live.write_bytes(b"still writing")
    assert _paragraph_rows(str(w)) == rows + 1  # the glob reads the temporary shard
    assert main(["curate", "--workdir", str(w), "--recipe", "be-base", "--threads", "1"]) == 0
    assert not temp.exists() and not (w / "subsets" / f".be-base.tmp-{DEAD}-0a1b2c3d").exists()
    assert not (w / "labels" / f".part.parquet.tmp-{DEAD}-0a1b2c3d").exists() and not (w / f"model.old-{DEAD}").exists()
    assert live.exists() and not shadow.exists()
    assert _paragraph_rows(str(w)) == rows
    assert debris.find(Workdir.of(w)) == []


def test_debris_on_s3(tmp_path: Path, s3_workdir: str) -> None:
    _upload(build_workdir(tmp_path / "w"), s3_workdir)
    wd = Workdir.of(s3_workdir)
    rows = _paragraph_rows(s3_workdir)
    temp = wd.paragraphs / "beam-temp-part-0123abcd"
    storage.write_parquet(pa.table({"x": [1]}), temp / "5f2e.parquet")
    assert [str(x) for x in debris.find(wd)] == [str(temp)]
    assert main(["curate", "--workdir", s3_workdir, "--recipe", "be-base", "--threads", "1"]) == 0
    assert not temp.glob("**") and _paragraph_rows(s3_workdir) == rows
    assert Location(s3_workdir).glob("paragraphs/*.parquet")


@pytest.mark.parametrize("name", ["part-00000-of-00001.parquet", ".hidden", "x.tmp-12", ".y.tmp-abc"])
def test_ordinary_names_are_not_debris(tmp_path: Path, name: str) -> None:
    wd = Workdir.of(tmp_path / "w")
    (tmp_path / "w" / "paragraphs").mkdir(parents=True)
    (tmp_path / "w" / "paragraphs" / name).write_bytes(b"x")
    assert debris.find(wd) == []


def test_a_folder_a_killed_two_rename_swap_moved_aside_is_put_back(tmp_path: Path) -> None:
    """Where the system has no atomic exchange, storage.publish renames the table aside, then the new one in:
    killed between the two, the table is missing and `.NAME.old-PID-*` holds it. The next writer puts it back."""
    w = tmp_path / "w"
    aside = w / f".sample.old-{DEAD}-0a1b2c3d"
    aside.mkdir(parents=True)
    (aside / "part-00000.parquet").write_bytes(b"the sample")
    (w / f".sample.tmp-{DEAD}-0a1b2c3d").mkdir()  # the new folder the kill kept from being swapped in
    assert debris.swapped_out(Workdir.of(w)) == [(Location(aside), Location(w / "sample"))]
    debris.collect(Workdir.of(w))
    assert (w / "sample" / "part-00000.parquet").read_bytes() == b"the sample"
    assert sorted(p.name for p in w.iterdir()) == ["sample"]
