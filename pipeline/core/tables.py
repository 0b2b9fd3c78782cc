"""Reading the Parquet tables of a work directory (DuckDB views, Arrow tables), local or on an object store."""

from __future__ import annotations

import duckdb
import pyarrow as pa

from pipeline.core import storage
from pipeline.core.errors import ConfigError
from pipeline.core.workdir import TABLES, Workdir


def connect(workdir: Workdir, tables: tuple[str, ...] = TABLES, threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with one view per existing table of the work directory.

    The connection comes from `storage.duckdb_connect`, so the views read s3:// and gs:// tables too.
    """
    con = storage.duckdb_connect(threads=threads)
    for name in tables:
        if workdir.has_table(name):
            # Views cannot hold prepared parameters; the glob is our own path, quoted for SQL.
            glob = workdir.glob(name).replace("'", "''")
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{glob}', union_by_name = true)")
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
        return con.sql(
            f"SELECT {cols} FROM read_parquet($glob, union_by_name = true)", params={"glob": workdir.glob(name)}
        ).to_arrow_table()
    finally:
        con.close()
