"""The one way to read the work directory's tables: DuckDB views, whole tables, row counts, rejects by reason.

Local or on an object store alike: connections come from `storage.duckdb_connect`, which reads s3:// and
gs:// through fsspec.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import duckdb
import pyarrow as pa

from pipeline.core import storage
from pipeline.core.errors import ConfigError
from pipeline.core.storage import Location
from pipeline.core.workdir import TABLE_NAMES, Workdir


def connect(workdir: Workdir, tables: Sequence[str] = TABLE_NAMES, threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with one view per existing table of the work directory."""
    con = storage.duckdb_connect(threads=threads)
    for name in tables:
        if workdir.has_table(name):
            # Views cannot hold prepared parameters; the glob is our own path, quoted for SQL.
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet({sql_string(workdir.glob(name))}, "
                        "union_by_name = true)")
    return con


def read_table(workdir: Workdir, name: str, columns: list[str] | None = None) -> pa.Table:
    """A whole table as Arrow. Raises ConfigError naming the stage to run when it does not exist."""
    if not workdir.has_table(name):
        raise ConfigError(
            f"no {name} table in {workdir.root} (expected {workdir.glob(name)}); run the stage that writes it first"
        )
    cols = ", ".join(f'"{c}"' for c in columns) if columns else "*"
    con = storage.duckdb_connect()
    try:
        return con.sql(f"SELECT {cols} FROM read_parquet($glob, union_by_name = true)",
                       params={"glob": workdir.glob(name)}).to_arrow_table()
    finally:
        con.close()


def rows(sql: str, files: Sequence[Location | str], **params: Any) -> list[tuple[Any, ...]]:
    """Every row of `sql` over `$files` (a list of Parquet files); [] when there are no files."""
    if not files:
        return []
    con = storage.duckdb_connect()
    try:
        return [tuple(r) for r in con.sql(sql, params={"files": [str(f) for f in files], **params}).fetchall()]
    finally:
        con.close()


def first_row(sql: str, files: Sequence[Location | str], **params: Any) -> tuple[Any, ...] | None:
    """The first row of `sql` over `$files`; None when there are no files (or no rows)."""
    found = rows(sql, files, **params)
    return found[0] if found else None


def count_rows(files: Sequence[Location | str]) -> int | None:
    """Rows of a set of Parquet files, from their footers (no data read); None when none is Parquet."""
    parquet = [storage.as_location(p) for p in files if str(p).endswith(".parquet")]
    if not parquet:
        return None
    return sum(parquet_rows(p) for p in parquet)


def parquet_rows(loc: Location) -> int:
    """Rows of one Parquet file from its footer; ConfigError naming the file when it is not readable Parquet."""
    try:
        return int(storage.read_parquet_metadata(loc).num_rows)
    except FileNotFoundError:
        raise
    except Exception as e:  # pyarrow's ArrowInvalid / OSError for a truncated or foreign file
        raise ConfigError(f"{loc} is not a readable Parquet file ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from e


def rejects_by_reason(folder: Location, stage: str) -> dict[str, int]:
    """Reject counts per reason in folder/<stage>-*.parquet, most frequent first ({} when there are none)."""
    files = folder.glob(f"{stage}-*.parquet")
    if not files:
        return {}
    con = storage.duckdb_connect()
    try:
        rows = con.sql(
            "SELECT reason, count(*) AS n FROM read_parquet($files, union_by_name = true) "
            "GROUP BY reason ORDER BY n DESC, reason",
            params={"files": [str(f) for f in files]},
        ).fetchall()
    finally:
        con.close()
    return {str(r): int(n) for r, n in rows}


def sql_string(value: str) -> str:
    """A string as a SQL literal, for the few places DuckDB takes no parameter (views, list literals)."""
    return "'" + value.replace("'", "''") + "'"


def sql_list(values: Sequence[str]) -> str:
    """Strings as a comma-separated list of SQL literals (`IN (...)`)."""
    return ", ".join(sql_string(v) for v in values)


def teacher_models(workdir: Workdir) -> dict[str, int]:
    """Annotations per teacher model in W/annotations, most first ({} when there are none): who made the
    labels (the teacher's directly, or the student's trained on them)."""
    found = rows("SELECT teacher_model, count(*) FROM read_parquet($files, union_by_name = true) GROUP BY 1 ORDER BY 2 DESC, 1",
                 workdir.files("annotations"))  # fmt: skip
    return {str(m): int(n) for m, n in found}


def describe_teachers(models: dict[str, int]) -> str:
    """The teachers in one line, saying plainly when one is not an LLM (the demo's keyword-rule teacher)."""
    if not models:
        return "no annotations in this work directory"
    text = ", ".join(f"`{m}` ({n:,} annotations)" for m, n in models.items())
    if any("not an LLM" in m for m in models):
        text += ("; **heuristic labels (keyword rules, not an LLM)**: for seeing what the pipeline's outputs "
                 "look like, never for training a model you mean to use")  # fmt: skip
    return text
