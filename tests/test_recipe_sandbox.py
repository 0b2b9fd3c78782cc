"""Recipes are sandboxed: one SELECT over W's tables, nothing else (issue 18, item 6).

The four hostile recipes the issue found (a local file read into every document, the home directory
listed into the subset, a file written with COPY, a database ATTACHed outside W, INSTALL httpfs), each
as a plain statement and as an attempt to break out of a wrapping subquery. Each must fail with a
ConfigError that names what it tried, leave no subset and touch nothing outside W.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.core.errors import ConfigError
from pipeline.stages import curate as C
from tests.test_curate import build_workdir


@pytest.fixture
def wd(tmp_path: Path) -> Path:
    return build_workdir(tmp_path / "w")


def _recipe(tmp_path: Path, sql: str) -> str:
    f = tmp_path / "hostile.sql"
    f.write_text(sql + "\n")
    return str(f)


def _refused(wd: Path, recipe: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        C.curate(C.CurateConfig(workdir=wd, recipe=recipe, threads=1))
    subsets = wd / "subsets"
    assert not subsets.exists() or not any(subsets.iterdir())


def test_reading_a_local_file_into_the_subset_is_refused(wd: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("the password")
    sql = f"SELECT c.id, s.content AS prefix FROM corpus AS c, read_text('{secret}') AS s"
    _refused(wd, _recipe(tmp_path, sql), r"outside the work directory's tables.*secret\.txt")
    # A replacement scan over a path (FROM 'file') is a file read too.
    sql = f"SELECT c.id, s.column0 AS prefix FROM corpus AS c, '{secret}' AS s"
    _refused(wd, _recipe(tmp_path, sql), "secret.txt")


def test_listing_a_directory_is_refused(wd: Path, tmp_path: Path) -> None:
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "id_rsa").write_text("key")
    sql = f"SELECT c.id, g.file AS prefix FROM corpus AS c, glob('{tmp_path}/home/*') AS g"
    _refused(wd, _recipe(tmp_path, sql), "outside the work directory's tables")
    # W's other folders are outside the tables too (W/cache, W/subsets, the logs).
    sql = f"SELECT c.id, g.file AS prefix FROM corpus AS c, glob('{wd}/*') AS g"
    _refused(wd, _recipe(tmp_path, sql), "outside the work directory's tables")


@pytest.mark.parametrize(
    ("statement", "kind"),
    [
        ("COPY (SELECT 42 AS x) TO '{out}/copied.csv'", "COPY"),
        ("ATTACH '{out}/attached.db' AS elsewhere", "ATTACH"),
        ("INSTALL httpfs", "INSTALL"),
        ("LOAD httpfs", "LOAD"),
        ("SET enable_external_access = true", "SET"),
        ("PRAGMA version", "PRAGMA"),
    ],
)
def test_statements_other_than_one_select_are_refused(wd: Path, tmp_path: Path, statement: str, kind: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    stmt = statement.format(out=out)
    # As a statement of its own, before or after the SELECT ...
    _refused(wd, _recipe(tmp_path, f"{stmt};\nSELECT id FROM corpus"), rf"{kind}.*exactly one SELECT")
    _refused(wd, _recipe(tmp_path, f"SELECT id FROM corpus;\n{stmt}"), rf"{kind}.*exactly one SELECT")
    # ... and breaking out of a subquery the recipe might be pasted into.
    escape = f"SELECT id FROM corpus) AS x;\n{stmt};\nSELECT * FROM (SELECT id FROM corpus"
    with pytest.raises(ConfigError):
        C.curate(C.CurateConfig(workdir=wd, recipe=_recipe(tmp_path, escape), threads=1))
    assert list(out.iterdir()) == []


def test_recipe_alone_runs_and_reads_only_the_views(wd: Path, tmp_path: Path) -> None:
    # A SELECT over W's own table files is allowed (they are the views' files), a CTE too.
    sql = (f"WITH p AS (SELECT id FROM read_parquet('{wd}/paragraphs/*.parquet'))\n"
           "SELECT c.id FROM corpus AS c SEMI JOIN p ON p.id = c.id")  # fmt: skip
    m = C.curate(C.CurateConfig(workdir=wd, recipe=_recipe(tmp_path, sql), name="own", threads=1))
    assert m["stats"]["rows"] == pq.read_table(wd / "subsets" / "own" / "data").num_rows == 10


def test_trailing_semicolons_and_comments_are_one_statement(wd: Path, tmp_path: Path) -> None:
    _refused(wd, _recipe(tmp_path, "SELECT id FROM corpus; SELECT id FROM corpus"), "holds 2 statements")
    m = C.curate(C.CurateConfig(workdir=wd, recipe=_recipe(tmp_path, "SELECT id FROM corpus;;\n-- done"), threads=1))
    assert m["stats"]["rows"] == 10


def test_s3_workdir_recipe_reaches_only_its_tables(s3_workdir: str, tmp_path: Path) -> None:
    from pipeline.core.workdir import Workdir
    from tests.test_remote_curate import _upload

    remote = _upload(build_workdir(tmp_path / "w"), s3_workdir)
    (remote.cache / "private.csv").write_text("x\nsecret\n")  # in W, yet not one of the recipe's tables
    secret = tmp_path / "secret.txt"
    secret.write_text("the password")
    for sql, match in [
        (f"SELECT c.id, s.content AS prefix FROM corpus AS c, read_text('{secret}') AS s", "secret.txt"),
        (f"SELECT c.id, s.x AS prefix FROM corpus AS c, read_csv('{remote.cache}/private.csv') AS s", "private.csv"),
        (f"SELECT c.id, g.file AS prefix FROM corpus AS c, glob('{s3_workdir}/**') AS g", "outside"),
        ("SELECT id FROM corpus;\nINSTALL httpfs", "INSTALL"),
    ]:
        with pytest.raises(ConfigError, match=match):
            C.curate(C.CurateConfig(workdir=s3_workdir, recipe=_recipe(tmp_path, sql), threads=1))
    assert not Workdir.of(s3_workdir).subsets.exists() or not Workdir.of(s3_workdir).subsets.glob("**")
    # The tables' own files are readable, on the object store too.
    sql = f"SELECT id FROM read_parquet('{s3_workdir}/paragraphs/*.parquet') SEMI JOIN corpus USING (id)"
    m = C.curate(C.CurateConfig(workdir=s3_workdir, recipe=_recipe(tmp_path, sql), name="own", threads=1))
    assert m["stats"]["rows"] == 10
