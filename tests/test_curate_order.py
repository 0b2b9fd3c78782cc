"""Curate's two ordering paths (Arrow take by integer position, or one DuckDB sort) write the same subset."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import zstandard

from pipeline.stages import curate as C
from tests.test_curate import build_workdir


def _subset(wd: Path, recipe: str, name: str, **kw) -> tuple[object, list[str], dict]:
    manifest = C.curate(C.CurateConfig(workdir=wd, recipe=recipe, threads=2, name=name, **kw))
    out = wd / "subsets" / name
    table = pq.read_table(out / "data")
    lines: list[str] = []
    for f in sorted((out / "export").iterdir()):
        raw = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(f.read_bytes()), read_across_frames=True).read()
        lines += raw.decode().splitlines()
    return table, lines, manifest


@pytest.mark.parametrize("recipe", ["be-base", "be-all", "encoder"])
def test_in_memory_order_equals_duckdb_sort(tmp_path: Path, recipe: str) -> None:
    wd = build_workdir(tmp_path / "w")
    # batch_rows=2: the integer-sorted text stream arrives in many batches, articles straddle them.
    fast = _subset(wd, recipe, "fast", batch_rows=2)
    slow = _subset(wd, recipe, "slow", batch_rows=2, in_memory_rows=0)
    assert fast[0].num_rows > 0
    assert fast[0].equals(slow[0])  # same rows, same order, same columns and types
    def doc(line: str) -> dict:
        d = json.loads(line)
        d["metadata"].pop("subset")  # the subset's name, "fast" or "slow"
        return d

    assert [doc(x) for x in fast[1]] == [doc(x) for x in slow[1]]
    assert fast[2]["stats"] == slow[2]["stats"] and fast[2]["tokens"] == slow[2]["tokens"]
