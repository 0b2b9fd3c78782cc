"""Recipes run sandboxed: exactly one SELECT, on a DuckDB connection that reaches only W's tables.

A recipe is a file anyone may share (a paper's appendix, a colleague's repository), so it is treated
as untrusted code:

- the file is split with DuckDB's own parser (`duckdb.extract_statements`) and must hold exactly one
  statement, a SELECT (WITH ... SELECT, FROM ..., VALUES and set operations are SELECTs too): COPY,
  ATTACH, INSTALL, LOAD, SET, PRAGMA, CALL, CREATE and the rest are refused with an error naming
  the statement, before anything runs;
- the SELECT runs on a connection of its own. Once its views (articles, paragraphs, labels, corpus)
  exist, external access is turned off, the table folders of the work directory the views read
  stay the only files it may open (DuckDB's `allowed_directories`), and the configuration is locked,
  so a recipe can neither turn access back on nor load an extension. A file-reading table function
  (read_text, read_csv, glob, a quoted path, ...) over any other path, local or s3:// / gs://,
  fails with an error naming the path;
- its rows stream, as Arrow batches, into the curate connection's table `raw_selection`, which the
  rest of curate reads; that connection never runs a recipe's SQL.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from pipeline.core.errors import ConfigError
from pipeline.core.tables import connect
from pipeline.core.workdir import Workdir
from pipeline.stages.curate.recipes import Recipe, _strip_comments_and_strings

# Rows per Arrow batch streamed from the sandbox into the curate connection.
BATCH_ROWS = 100_000
VIEWS_HINT = "a recipe sees the views articles, paragraphs, labels and corpus"
_DENIED = ("Permission Error", "disabled by configuration", "disabled through configuration")


def _where(recipe: Recipe) -> str:
    return f"recipe {recipe.name} ({recipe.path})"


def _excerpt(sql: str, width: int = 60) -> str:
    """The statement's first words on one line, for messages."""
    flat = " ".join(re.sub(r"--[^\n]*", " ", sql).split()).rstrip(";").strip()
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def _keyword(sql: str) -> str:
    """The statement's first keyword (INSTALL, not DuckDB's statement type LOAD)."""
    m = re.match(r"\s*\(*\s*([A-Za-z]+)", _strip_comments_and_strings(sql))
    return m.group(1).upper() if m else "an empty statement"


def recipe_statement(recipe: Recipe) -> str:
    """The recipe's one SELECT, as DuckDB's parser split it; ConfigError for anything else."""
    try:
        statements = duckdb.extract_statements(recipe.sql)
    except duckdb.Error as e:
        raise ConfigError(f"{_where(recipe)}: SQL syntax error: {e}") from e
    if not statements:
        raise ConfigError(f"{_where(recipe)} holds no SQL statement")
    others = [(i, s) for i, s in enumerate(statements, 1) if s.type != duckdb.StatementType.SELECT]
    if len(statements) == 1 and not others:
        return statements[0].query
    what = "; ".join(f"statement {i} is {_keyword(s.query)} (`{_excerpt(s.query)}`)" for i, s in others)
    raise ConfigError(
        f"{_where(recipe)} holds {len(statements)} statement{'s' if len(statements) > 1 else ''}"
        + (f": {what}" if what else "")
        + "; a recipe is exactly one SELECT (WITH ... SELECT is one) and cannot copy, attach, install, load or "
        "set anything (docs/curate.md, Writing your own recipe)"
    )


def allowed_directories(wd: Workdir, tables: Sequence[str]) -> list[str]:
    """The only folders a recipe's connection may open: those of the tables its views read."""
    return [str(wd.table(t)).rstrip("/") + "/" for t in tables]


@contextmanager
def sandbox(
    wd: Workdir,
    tables: Sequence[str],
    views: Callable[[duckdb.DuckDBPyConnection], None],
    *,
    threads: int | None,
    memory_limit: str,
    temp_directory: Path,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection with views over W's `tables` (`views` defines the recipe's), then locked down."""
    con = connect(wd, tables=tables, threads=threads)
    try:
        con.execute("SET memory_limit = $m", {"m": memory_limit})
        con.execute("SET temp_directory = $t", {"t": str(temp_directory)})  # DuckDB's own spill files
        con.execute("SET preserve_insertion_order = false")  # curate orders the rows itself
        views(con)
        con.execute("SET allowed_directories = $d", {"d": allowed_directories(wd, tables)})
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        yield con
    finally:
        con.close()


def _translate(recipe: Recipe, e: duckdb.Error) -> ConfigError:
    msg = str(e)
    if isinstance(e, duckdb.PermissionException) or any(d in msg for d in _DENIED):
        return ConfigError(
            f"{_where(recipe)} tried to reach something outside the work directory's tables ({msg.strip()}); "
            f"{VIEWS_HINT}, and may read only the table files behind them"
        )
    if isinstance(e, duckdb.ParserException):
        return ConfigError(f"{_where(recipe)}: SQL syntax error: {e}")
    if isinstance(e, duckdb.CatalogException | duckdb.BinderException):
        return ConfigError(f"{_where(recipe)}: {e} ({VIEWS_HINT})")
    return ConfigError(f"{_where(recipe)} failed: {e}")


def select_into(
    con: duckdb.DuckDBPyConnection, box: duckdb.DuckDBPyConnection, recipe: Recipe, bindings: dict[str, Any]
) -> None:
    """Run the recipe's one SELECT in the sandbox `box`; its rows become temp table `raw_selection` of `con`."""
    statement = recipe_statement(recipe)
    try:
        reader = box.sql(statement, params=bindings or None).to_arrow_reader(BATCH_ROWS)
    except duckdb.Error as e:
        raise _translate(recipe, e) from e
    con.register("recipe_rows", reader)
    try:
        con.execute("CREATE TEMP TABLE raw_selection AS SELECT * FROM recipe_rows")
    except duckdb.Error as e:
        raise _translate(recipe, e) from e
    finally:
        con.unregister("recipe_rows")
