"""Order: the selected paragraphs streamed grouped by article, in document order, cut into whole articles.

Sort key of a path: its numeric components, so p[10] comes after p[2] and sec[1]/p[0] after
sec[0]/p[5] (see docs/curate.md, Document order). Copies of an article are laid out by
expand_indices, whole articles at a time.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

import duckdb
import numpy as np
import pyarrow as pa

from pipeline.core.errors import ConfigError
from pipeline.stages.curate.config import CurateConfig


def ordered_query() -> str:
    """Selected paragraphs with the raw text (`_text`), grouped by article, in document order."""
    return """SELECT m.* EXCLUDE (_key), p.text AS _text
        FROM meta AS m JOIN paragraphs AS p ON p.id = m.id
        ORDER BY m.article_id, m._key, m.path"""


def ordered_batches(con: duckdb.DuckDBPyConnection, config: CurateConfig) -> Iterator[pa.RecordBatch]:
    """The rows of ordered_query(), in its order, in Arrow batches.

    Up to config.in_memory_rows selected paragraphs, DuckDB never sorts the text by strings:
    the output position `_ord` is computed on a text-free table (article, path key, path), DuckDB
    sorts only (integer _ord, text), and the other columns are fetched once into Arrow and taken
    by _ord. Same rows, same order, a third of the sort work. Beyond that many rows the metadata
    would not fit in memory, and the single ordered query (which DuckDB spills) is used.
    """
    (n,) = con.sql("SELECT count(*) FROM meta").fetchall()[0]
    if n > config.in_memory_rows:
        yield from con.sql(ordered_query()).to_arrow_reader(config.batch_rows)
        return
    con.execute(
        "CREATE TEMP TABLE ordk AS SELECT id, row_number() OVER (ORDER BY article_id, _key, path) - 1 AS _ord FROM meta"
    )
    meta = con.sql("SELECT m.* EXCLUDE (_key), o._ord FROM meta AS m JOIN ordk AS o ON o.id = m.id").to_arrow_table()
    meta = meta.combine_chunks()  # one chunk: take() on several chunks concatenates them on every call
    where = np.empty(meta.num_rows, np.int64)
    where[meta.column("_ord").to_numpy()] = np.arange(meta.num_rows)
    meta = meta.drop_columns(["_ord"])
    # The Arrow columns come out of DuckDB's budget while they live: the process stays within it.
    (limit,) = con.sql("SELECT current_setting('memory_limit')").fetchall()[0]
    con.execute("SET memory_limit = $m", {"m": f"{max(_bytes(limit) - meta.nbytes, 256 * 2**20)}B"})
    try:
        texts = con.sql(
            "SELECT o._ord, p.text FROM ordk AS o JOIN paragraphs AS p ON p.id = o.id ORDER BY o._ord"
        ).to_arrow_reader(config.batch_rows)
        for batch in texts:
            rows = meta.take(pa.array(where[batch.column(0).to_numpy()]))
            yield from rows.append_column("_text", pa.chunked_array([batch.column(1)])).to_batches()
    finally:
        con.execute("SET memory_limit = $m", {"m": limit})


def _bytes(setting: str) -> int:
    """Bytes of a DuckDB size setting as current_setting() writes it ('1.8 GiB', '500.0 MB')."""
    m = re.fullmatch(r"\s*([\d.]+)\s*([KMGTP]?)(i?)B?(?:ytes)?\s*", setting, flags=re.I)
    if m is None:
        raise ConfigError(f"cannot read DuckDB memory limit {setting!r}")
    return int(float(m[1]) * (1024 if m[3] else 1000) ** "_KMGTP".index(m[2].upper() or "_"))


def expand_indices(article_ids: np.ndarray, repeats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row indices and copy numbers that repeat each run of equal article ids `repeat` times.

    Rows [0, 1, 2] of article A (repeat 2) and row 3 of B (repeat 1) give indices
    [0, 1, 2, 0, 1, 2, 3] and copies [0, 0, 0, 1, 1, 1, 0]: whole articles, in document order.
    """
    n = len(article_ids)
    if n == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    starts = np.flatnonzero(np.r_[True, article_ids[1:] != article_ids[:-1]])
    lengths = np.diff(np.r_[starts, n])
    reps = repeats[starts].astype(np.int64)
    out_len = lengths * reps
    total = int(out_len.sum())
    run = np.repeat(np.arange(len(starts)), out_len)
    out_start = np.cumsum(out_len) - out_len
    offset = np.arange(total, dtype=np.int64) - out_start[run]
    return starts[run] + offset % lengths[run], offset // lengths[run]


def article_batches(reader: Iterable[pa.RecordBatch]) -> Iterator[pa.Table]:
    """Arrow tables of whole articles (an article never straddles two tables), in stream order."""
    carry: pa.Table | None = None
    for batch in reader:
        table = pa.Table.from_batches([batch])
        if carry is not None and carry.num_rows:
            table = pa.concat_tables([carry, table])
        if table.num_rows == 0:
            continue
        ids = table.column("article_id").to_numpy(zero_copy_only=False)
        last_start = int(np.flatnonzero(ids != ids[-1]).max(initial=-1)) + 1
        if last_start == 0:
            carry = table  # one article so far; wait for its end
            continue
        yield table.slice(0, last_start)
        carry = table.slice(last_start)
    if carry is not None and carry.num_rows:
        yield carry
