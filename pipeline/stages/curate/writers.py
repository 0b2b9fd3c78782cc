"""Writers: the one ordered pass that writes a subset's files.

- data/part-NNNNN.parquet: the rows, copies expanded (ShardedParquet);
- export/part-NNNNN.jsonl.{zst,gz}: one document per article copy (Exporter -> ShardedJsonl).

Each file closes once it passes --shard-mb. Memory stays bounded: DuckDB streams whole articles in
batches, copies are taken in slices of at most batch_rows rows, and documents are built in a worker
thread beside the Parquet writer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.core import storage
from pipeline.core.labels import HEADS_BY_NAME
from pipeline.stages.curate.config import CLASS_ORDER_KEY, RENAMED, SELECTION_COLUMNS, SEPARATOR, CurateConfig
from pipeline.stages.curate.order import article_batches, expand_indices, ordered_batches, ordered_query
from pipeline.stages.curate.tokens import count_tokens, load_tokenizer


def with_text(table: pa.Table) -> pa.Table:
    """The selection's columns in output order, internal names (plus `repeat`): `text` is the prefix, if
    any, then the paragraph. `data_columns` renames them for data/."""
    if table.column("prefix").null_count == table.num_rows:
        text = table.column("_text")  # no prefix: no copy of the text
    else:
        prefix = pc.if_else(pc.is_null(table.column("prefix")), "", table.column("prefix"))
        text = pc.binary_join_element_wise(prefix, table.column("_text"), "")
    cols = [c for c in SELECTION_COLUMNS if c != "copy"]
    return pa.table([text if c == "text" else table.column(c) for c in cols] + [table.column("repeat")],
                    names=[*cols, "repeat"])  # fmt: skip


def data_metadata(extra: dict[str, str] | None = None) -> dict[bytes, bytes]:
    """Schema metadata of data/*.parquet: the class order of the probability vectors (+ `extra`)."""
    order = {"domain_probs": list(HEADS_BY_NAME["domain"].classes),
             "type_probs": list(HEADS_BY_NAME["document_type"].classes)}
    return {k.encode(): v.encode() for k, v in {CLASS_ORDER_KEY: json.dumps(order), **(extra or {})}.items()}


def data_columns(table: pa.Table) -> pa.Table:
    """The selection's internal names -> data/'s (config.RENAMED), with data/'s schema metadata."""
    return table.rename_columns([RENAMED.get(c, c) for c in table.column_names]).replace_schema_metadata(data_metadata())


class ShardedParquet:
    """Parquet files data/part-NNNNN.parquet, a new one when the current one passes max_bytes."""

    def __init__(self, folder: Path, max_bytes: int) -> None:
        self.folder, self.max_bytes = folder, max_bytes
        self.files: list[Path] = []
        self._writer: pq.ParquetWriter | None = None
        self._sink: pa.NativeFile | None = None

    def write(self, table: pa.Table) -> None:
        if self._writer is None:
            path = self.folder / f"part-{len(self.files):05d}.parquet"
            self.files.append(path)
            self._sink = pa.OSFile(str(path), "wb")
            self._writer = pq.ParquetWriter(self._sink, table.schema, compression="zstd")
        self._writer.write_table(table, row_group_size=max(table.num_rows, 1))
        if self._sink is not None and self._sink.tell() >= self.max_bytes:
            self.close()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._sink is not None:
            self._sink.close()
            self._sink = None


class ShardedJsonl:
    """Compressed JSONL shards export/part-NNNNN.jsonl.{zst,gz}, each about max_bytes compressed at most."""

    def __init__(self, folder: Path, compression: str, max_bytes: int) -> None:
        self.folder, self.compression, self.max_bytes = folder, compression, max_bytes
        self.ext = {"zstd": "jsonl.zst", "gzip": "jsonl.gz"}[compression]
        self.files: list[Path] = []
        self._stream: Any = None
        self._pending = 0

    def _open(self) -> None:
        path = self.folder / f"part-{len(self.files):05d}.{self.ext}"
        self.files.append(path)
        if self.compression == "zstd":
            import zstandard

            raw = open(path, "wb")  # noqa: SIM115 - closed through the stream writer
            self._stream = zstandard.ZstdCompressor(level=1).stream_writer(raw, closefd=True)
        else:
            import gzip

            self._stream = gzip.open(path, "wb", compresslevel=3)  # noqa: SIM115 - closed in close()
        self._pending = 0

    def write(self, *parts: bytes) -> None:
        """Write one line given in parts (so a document repeated 100 times is never concatenated)."""
        if self._stream is None:
            self._open()
        for part in parts:
            self._stream.write(part)
            self._pending += len(part)
        # The compressed size is known only once flushed: check every ~4 MB of input, and
        # close the shard before it can pass the bound by more than that flush.
        if self._pending >= min(4 * 2**20, self.max_bytes):
            self._stream.flush()
            self._pending = 0
            if self.files[-1].stat().st_size >= self.max_bytes:
                self.close()

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None


# Documents of one batch of whole articles: section title (when it changes) + paragraphs, joined.
_DOCS_SQL = """
    WITH pieces AS (
        SELECT article_id, _pos, repeat, title, year, journal, license, license_url, commercial, article_url,
               CASE WHEN coalesce(section_title, '') <> ''
                         AND section_title IS DISTINCT FROM lag(section_title) OVER (PARTITION BY article_id ORDER BY _pos)
                    THEN split_part(section_title, ' > ', -1) END AS heading,
               text
        FROM batch
    )
    SELECT article_id, any_value(repeat) AS repeat,
           CAST(to_json(string_agg(CASE WHEN heading IS NULL THEN text ELSE heading || $sep || text END,
                                   $sep ORDER BY _pos)) AS VARCHAR) AS text_json,
           CAST(to_json({'article_id': article_id, 'title': any_value(title), 'year': any_value(year),
                         'journal': any_value(journal), 'license': any_value(license),
                         'license_url': any_value(license_url), 'commercial': any_value(commercial),
                         'article_url': any_value(article_url), 'n_paragraphs': count(*),
                         'subset': $subset}) AS VARCHAR) AS meta_json,
           list(heading) FILTER (WHERE heading IS NOT NULL) AS headings
    FROM pieces
    GROUP BY article_id
    ORDER BY min(_pos)"""


@dataclass
class Written:
    data: list[Path]
    export: list[Path]
    text_tokens: int | None  # counted in the pass when parse's n_tokens are another tokenizer's
    headings: dict[str, int]  # section heading -> occurrences in the export (copies counted)
    biomed_enriched: list[Path] = field(default_factory=list)  # --export-format biomed-enriched


class Exporter:
    """Article documents of each batch of whole articles, appended to the JSONL shards.

    Runs in one worker thread next to the Parquet writer (DuckDB, zstd and gzip release the GIL),
    so the two outputs are built in parallel; one worker keeps the documents in order.
    """

    def __init__(self, jsonl: ShardedJsonl, name: str) -> None:
        self.jsonl, self.name = jsonl, name
        self.headings: dict[str, int] = {}
        self.con = storage.duckdb_connect(threads=1)  # the main connection is busy streaming the selection

    def add(self, table: pa.Table) -> None:
        batch = table.select(["article_id", "section_title", "repeat", "title", "year", "journal", "license",
                              "license_url", "commercial", "article_url", "text"]).append_column(
            "_pos", pa.array(np.arange(table.num_rows)))  # fmt: skip
        self.con.register("batch", batch)
        docs = self.con.sql(_DOCS_SQL, params={"sep": SEPARATOR, "subset": self.name}).fetchall()
        self.con.unregister("batch")
        for aid, rep, text_json, meta_json, heads in docs:
            for h in heads or ():
                self.headings[h] = self.headings.get(h, 0) + rep
            id_json = json.dumps(aid)[:-1]  # opening quote and escaped id, without the closing quote
            text = text_json.encode()
            meta = meta_json[:-1]
            for c in range(rep):
                self.jsonl.write(
                    f'{{"id":{id_json}#{c}","text":'.encode(), text, f',"metadata":{meta},"copy":{c}}}}}\n'.encode()
                )

    def close(self) -> None:
        self.jsonl.close()
        self.con.close()


def write_outputs(
    con: duckdb.DuckDBPyConnection, staging: Path, config: CurateConfig, name: str, count_text: bool
) -> Written:
    """One ordered pass over the selection: the expanded Parquet, the JSONL export, token counts.

    Memory stays bounded: DuckDB streams whole articles in batches; copies are taken in slices
    of at most batch_rows rows, so a 100x article never materialises 100 copies at once.
    """
    from concurrent.futures import Future, ThreadPoolExecutor

    (staging / "data").mkdir(parents=True)
    parquet = ShardedParquet(staging / "data", int(config.shard_mb * 2**20))
    exporter = None
    if config.export:
        (staging / "export").mkdir(parents=True)
        exporter = Exporter(ShardedJsonl(staging / "export", config.compression, int(config.shard_mb * 2**20)), name)
    tok = load_tokenizer(config.count_tokenizer) if count_text else None
    text_tokens = 0
    copy_at = list(SELECTION_COLUMNS).index("copy")
    pending: Future[None] | None = None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="export") as pool:
        try:
            reader = ordered_batches(con, config)
            for raw in article_batches(reader):
                table = with_text(raw)
                if exporter is not None:
                    if pending is not None:
                        pending.result()  # at most one batch in flight: memory stays bounded
                    pending = pool.submit(exporter.add, table)
                repeats = table.column("repeat").to_numpy()
                if tok is not None:
                    counts = np.asarray(count_tokens(tok, table.column("text").to_pylist()), dtype=np.int64)
                    text_tokens += int((counts * repeats).sum())
                rows = table.drop_columns(["repeat"])
                if (repeats == 1).all():  # nothing to repeat: write the batch as it is, no copy of the text
                    parquet.write(data_columns(rows.add_column(copy_at, "copy", pa.array(np.zeros(len(repeats), np.int64)))))
                    continue
                idx, copy = expand_indices(table.column("article_id").to_numpy(zero_copy_only=False), repeats)
                for start in range(0, len(idx), config.batch_rows):
                    part = rows.take(pa.array(idx[start : start + config.batch_rows]))
                    copies = pa.array(copy[start : start + config.batch_rows], pa.int64())
                    parquet.write(data_columns(part.add_column(copy_at, "copy", copies)))
            if pending is not None:
                pending.result()
        finally:
            parquet.close()
            if exporter is not None:
                exporter.close()
    if not parquet.files:  # empty subset: still a valid, empty Parquet file with the right columns
        empty = with_text(con.sql(f"SELECT * FROM ({ordered_query()}) LIMIT 0").to_arrow_table())
        empty = empty.drop_columns(["repeat"]).append_column("copy", pa.array([], pa.int64()))
        path = staging / "data" / "part-00000.parquet"
        pq.write_table(data_columns(empty.select(list(SELECTION_COLUMNS))), path, compression="zstd")
        parquet.files.append(path)
    return Written(
        parquet.files,
        exporter.jsonl.files if exporter else [],
        text_tokens if tok is not None else None,
        exporter.headings if exporter else {},
    )
