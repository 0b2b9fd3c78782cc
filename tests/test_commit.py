"""pipeline.core.commit.substitute: keyed rows replaced in place, one whole-file write each, idempotent after a kill."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.core.commit import substitute
from pipeline.core.storage import Location
from tests.faults import Killed, kill_at


def _files(tmp_path: Path) -> tuple[Location, Location, Location]:
    a, b = Location(tmp_path / "t" / "a.parquet"), Location(tmp_path / "t" / "b.parquet")
    a.local.parent.mkdir(parents=True)
    pq.write_table(pa.table({"pmcid": ["PMC1", "PMC2", "PMC2"], "v": [1, 1, 1]}), a.local)
    pq.write_table(pa.table({"pmcid": ["PMC3", "PMC4"], "v": [1, 1]}), b.local)
    return a, b, Location(tmp_path / "t" / "new.parquet")


def _rows(folder: Path) -> list[tuple[str, int]]:
    return sorted((r["pmcid"], r["v"]) for f in folder.glob("*.parquet") for r in pq.read_table(f).to_pylist())


STAGED = pa.table({"pmcid": ["PMC2", "PMC5", "PMC9"], "v": [2, 2, 2]})


def test_keys_are_replaced_in_the_file_that_held_them_and_new_keys_get_a_file(tmp_path: Path) -> None:
    a, b, new = _files(tmp_path)
    mtime_b = b.local.stat().st_mtime_ns
    counts = substitute([a, b], "pmcid", {"PMC2", "PMC5", "PMC1"}, STAGED, new)
    # PMC2 changed (two old rows -> one new, in a.parquet), PMC5 new (new.parquet), PMC1 removed;
    # PMC9 is staged but not affected: not placed
    assert pq.read_table(a.local).to_pydict() == {"pmcid": ["PMC2"], "v": [2]}
    assert pq.read_table(new.local).to_pydict() == {"pmcid": ["PMC5"], "v": [2]}
    assert b.local.stat().st_mtime_ns == mtime_b  # a file holding no affected key is not rewritten
    assert counts == {"files_rewritten": 2, "files_removed": 0, "rows_dropped": 3, "rows_added": 2, "split_keys": 0}


def test_a_file_left_empty_is_removed(tmp_path: Path) -> None:
    a, b, new = _files(tmp_path)
    substitute([a, b], "pmcid", {"PMC3", "PMC4"}, STAGED.slice(0, 0), new)
    assert not b.exists() and not new.exists()
    assert _rows(tmp_path / "t") == [("PMC1", 1), ("PMC2", 1), ("PMC2", 1)]


def test_a_key_split_over_files_is_never_shown_twice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b, new = _files(tmp_path)
    pq.write_table(pa.table({"pmcid": ["PMC3", "PMC4", "PMC2"], "v": [1, 1, 1]}), b.local)  # PMC2 in a and b
    fault = kill_at(monkeypatch, "write_bytes", nth=2)
    with pytest.raises(Killed):
        substitute([a, b], "pmcid", {"PMC2"}, STAGED, new)
    assert fault.calls == [str(b), str(a)]  # the file that only loses rows goes first; the home (a) last
    assert _rows(tmp_path / "t") == [("PMC1", 1), ("PMC2", 1), ("PMC2", 1), ("PMC3", 1), ("PMC4", 1)]  # b's PMC2 row gone, no v2 yet
    monkeypatch.undo()
    counts = substitute([a, b], "pmcid", {"PMC2"}, STAGED, new)
    assert counts["split_keys"] == 0  # b was rewritten before the kill: the re-run finds PMC2 in a only
    assert _rows(tmp_path / "t") == [("PMC1", 1), ("PMC2", 2), ("PMC3", 1), ("PMC4", 1)]


@pytest.mark.parametrize("nth", [1, 2])
def test_a_rerun_after_a_kill_converges_to_the_same_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, nth: int) -> None:
    clean = tmp_path / "clean"
    a, b, new = _files(clean)
    substitute([a, b], "pmcid", {"PMC2", "PMC5", "PMC1"}, STAGED, new)
    want = _rows(clean / "t")

    a, b, new = _files(tmp_path)
    kill_at(monkeypatch, "write_bytes", nth=nth)
    with pytest.raises(Killed):
        substitute([a, b], "pmcid", {"PMC2", "PMC5", "PMC1"}, STAGED, new)
    seen = [k for k, _ in _rows(tmp_path / "t")]
    assert seen.count("PMC2") in (1, 2) and set(seen) >= {"PMC3", "PMC4"}  # old (2 rows) or new (1): never mixed
    monkeypatch.undo()
    files = [Location(p) for p in sorted((tmp_path / "t").glob("*.parquet"))]  # new.parquet too, when written
    substitute(files, "pmcid", {"PMC2", "PMC5", "PMC1"}, STAGED, new)
    assert _rows(tmp_path / "t") == want


def test_prefix_keys_and_null_keys(tmp_path: Path) -> None:
    f = Location(tmp_path / "r.parquet")
    pq.write_table(pa.table({"record_id": ["PMC1.1", "PMC2.1", None], "why": ["x", "y", "z"]}), f.local)
    staged = pa.table({"record_id": ["PMC1.2", None], "why": ["new", "inventory"]})
    substitute([f], "record_id", {"PMC1"}, staged, Location(tmp_path / "n.parquet"), prefix=True)
    # PMC1's reject replaced by its new one in place; a null key is always stale: replaced too
    assert sorted(pq.read_table(f.local).column("why").to_pylist()) == ["inventory", "new", "y"]
