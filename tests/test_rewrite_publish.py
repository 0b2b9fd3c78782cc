"""A full rewrite of a table is built beside it and published whole (pipeline/core/storage/publishing.py).

A full `parse` over an existing work directory, killed at chosen points, locally and on the S3 server:
a glob over W/<table>/*.parquet read right after the kill sees, for each table, all the old rows or all
the new ones, never a mix and never a duplicate (remotely: once the journal the kill left is finished, as
the next writer does); other stages' rejects stay; the next parse converges to a fresh one. And the swap
itself: atomic exchange, the two-rename fallback, a shared folder replaced only in its prefix, an error
in the block leaving the old folder and no temporary one.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.cli import main
from pipeline.core import storage
from pipeline.core.records import Reject, arrow_schema
from pipeline.core.storage import Location
from pipeline.core.storage import publishing as P
from pipeline.core.workdir import Workdir
from pipeline.flow import debris
from tests.faults import Killed, kill_at
from tests.test_parse_update import table
from tests.test_parse_update_kill import ARGS, days  # noqa: F401 - the module fixture

TABLES = ("articles", "paragraphs", "versions")


def listing(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.is_dir() else {}


def hidden(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith(".") and ".tmp-" in p.name)


# ------------------------------------------------------------------------------------- the swap itself


@pytest.mark.parametrize("atomic", [True, False], ids=["renameat2", "two-renames"])
def test_replacing_swaps_the_folder_whole(tmp_path, monkeypatch, atomic) -> None:
    if not atomic:
        monkeypatch.setattr(P, "_exchange_call", None)
    final = Location(tmp_path / "t")
    final.mkdir()
    (tmp_path / "t" / "part-0.parquet").write_bytes(b"old0")
    (tmp_path / "t" / "part-1.parquet").write_bytes(b"old1")
    with storage.replacing([final]) as (new,):
        (new.local / "part-0.parquet").write_bytes(b"new0")
        assert listing(tmp_path / "t") == {"part-0.parquet": b"old0", "part-1.parquet": b"old1"}  # unseen yet
        assert new.name.startswith(".t.tmp-") and new.parent == final.parent  # beside it: same filesystem
    assert listing(tmp_path / "t") == {"part-0.parquet": b"new0"}  # part-1 went with the old folder
    assert hidden(tmp_path) == []


def test_exchange_is_one_step_where_the_system_has_it(tmp_path) -> None:
    if P._exchange_call is None:
        pytest.skip("no renameat2 on this system")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "x").write_text("a")
    assert P.exchange(tmp_path / "a", tmp_path / "b")
    assert (tmp_path / "b" / "x").read_text() == "a" and not (tmp_path / "a" / "x").exists()


def test_an_error_in_the_block_leaves_the_old_folder_and_no_temporary_one(tmp_path) -> None:
    final = Location(tmp_path / "t")
    final.mkdir()
    (tmp_path / "t" / "part-0.parquet").write_bytes(b"old")
    with pytest.raises(RuntimeError), storage.replacing([final]) as (new,):
        (new.local / "part-0.parquet").write_bytes(b"half")
        raise RuntimeError("the pipeline failed")
    assert listing(tmp_path / "t") == {"part-0.parquet": b"old"}
    assert hidden(tmp_path) == []


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_shared_folder_is_replaced_only_in_the_writers_prefix(tmp_path, request, where) -> None:
    root = Location(tmp_path) if where == "local" else Location(request.getfixturevalue("s3_workdir"))
    final = root / "rejects"
    (final / "parse-00000.parquet").write_bytes(b"old parse")
    (final / "parse-00001.parquet").write_bytes(b"old parse 2")
    (final / "propagate-00000.parquet").write_bytes(b"propagate's")
    with storage.replacing([final], ["parse-"]) as (new,):
        (new / "parse-00000.parquet").write_bytes(b"new parse")
    got = {f.name: f.read_bytes() for f in final.glob("*")}
    assert got == {"parse-00000.parquet": b"new parse", "propagate-00000.parquet": b"propagate's"}
    assert not [e for e in root.iterdir() if ".tmp-" in e.name]


# --------------------------------------------------------------------------- a full parse, killed


@pytest.fixture
def work(days, tmp_path):  # noqa: F811
    """Day 1's work directory, with another stage's reject file beside parse's."""
    w = tmp_path / "w"
    shutil.copytree(days["w1"], w)
    row = {"source": "s", "stage": "propagate", "reason": "too_long", "detail": "", "record_id": "r", "raw": None}
    pq.write_table(pa.Table.from_pylist([row], schema=arrow_schema(Reject)), w / "rejects" / "propagate-00000.parquet")
    return w


def tables_of(w: str) -> dict[str, object]:
    return {t: table(w, t) for t in TABLES}


def test_a_full_parse_killed_before_it_publishes_leaves_every_table_as_it_was(days, work, monkeypatch) -> None:  # noqa: F811
    before = tables_of(str(work))
    seen: list[list[str]] = []
    real = P.publish

    def killed(new: Location, final: Location, only: str = "") -> None:
        seen.append(sorted(f.name for f in new.glob("*.parquet")))  # the new table was complete, unseen
        raise Killed("killed before the first publish")

    monkeypatch.setattr(P, "publish", killed)
    with pytest.raises(Killed):
        main(["parse", days["root"], "--workdir", str(work), *ARGS])
    assert seen and seen[0], "the new paragraphs were written beside the table"
    monkeypatch.setattr(P, "publish", real)
    assert tables_of(str(work)) == before
    assert (work / "rejects" / "propagate-00000.parquet").is_file()
    assert main(["parse", days["root"], "--workdir", str(work), *ARGS]) == 0
    assert tables_of(str(work)) == tables_of(days["fresh"])
    assert hidden(work) == []


def test_a_full_parse_killed_between_two_tables_leaves_each_table_whole(days, work, monkeypatch) -> None:  # noqa: F811
    old = tables_of(str(work))
    real = P._swap_local
    swaps: list[str] = []

    def swap(new: Path, final: Path, only: str) -> None:
        if len(swaps) == 2:  # paragraphs and versions are new, the rest old
            raise Killed("killed at the third swap")
        swaps.append(final.name)
        real(new, final, only)

    monkeypatch.setattr(P, "_swap_local", swap)
    with pytest.raises(Killed):
        main(["parse", days["root"], "--workdir", str(work), *ARGS])
    monkeypatch.undo()
    assert swaps == ["paragraphs", "versions"]
    new = tables_of(days["fresh"])
    assert table(str(work), "paragraphs") == new["paragraphs"]
    assert table(str(work), "versions") == new["versions"]
    assert table(str(work), "articles") == old["articles"]
    assert (work / "rejects" / "propagate-00000.parquet").is_file()
    assert main(["parse", days["root"], "--workdir", str(work), *ARGS]) == 0
    assert tables_of(str(work)) == new


def test_a_full_parse_on_s3_killed_mid_publish_is_finished_by_the_next_writer(days, work, s3_workdir, monkeypatch) -> None:  # noqa: F811
    root = Location(s3_workdir)
    root.upload_from(work)
    old = tables_of(s3_workdir)
    # the first server-side copy into W/versions: paragraphs are published, the journal of versions is written
    fault = kill_at(monkeypatch, "copy_to", lambda loc: ".versions.tmp-" in str(loc), 1)
    with pytest.raises(Killed):
        main(["parse", days["root"], "--workdir", s3_workdir, *ARGS])
    assert fault.fired, fault.calls
    monkeypatch.undo()
    new = tables_of(days["fresh"])
    assert (root / f".versions{storage.PUBLISHING}").is_file()
    assert table(s3_workdir, "paragraphs") == new["paragraphs"]  # published: whole and new
    assert table(s3_workdir, "articles") == old["articles"]  # not reached: whole and old
    assert debris.unfinished_publishes(Workdir.of(s3_workdir)) == [root / "versions"]
    debris.collect(Workdir.of(s3_workdir))  # what the next writer does when it takes the lease
    assert table(s3_workdir, "versions") == new["versions"]
    assert not [e for e in root.iterdir() if ".tmp-" in e.name or e.name.endswith(storage.PUBLISHING)]
    assert main(["parse", days["root"], "--workdir", s3_workdir, *ARGS]) == 0
    assert tables_of(s3_workdir) == new
    assert (root / "rejects" / "propagate-00000.parquet").is_file()
