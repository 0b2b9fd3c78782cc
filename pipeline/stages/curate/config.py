"""What one curate run is configured with (CurateConfig, the CLI's flags) and the columns it writes."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.core import storage
from pipeline.core.label_tables import LABEL_SOURCES

__all__ = ["BIOMED_ENRICHED_COLUMNS", "EXPORT_TOKENIZER", "EXTRA_COLUMNS", "LABEL_SOURCES", "OUTPUT_COLUMNS",
           "SEPARATOR", "CurateConfig"]  # fmt: skip

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
    # jsonl: export/ holds one JSON document per article copy; biomed-enriched: biomed-enriched/ holds the
    # selected paragraphs in the published dataset's exact schema instead (pipeline/interop/export.py).
    export_format: str = "jsonl"
    # 2 GB keeps the process under the 4 GB target (DuckDB ~2.5 GB RSS + writers); DuckDB spills beyond it.
    memory_limit: str = "2GB"
    threads: int | None = None  # DuckDB threads; default: all cores
    temp_directory: Path | None = None  # a local folder; default: the work directory's local cache /duckdb-tmp
    batch_rows: int = 65_536  # rows per Arrow batch streamed from DuckDB to the writers
    # Up to this many selected paragraphs, their text-free columns are held in Arrow (~0.4 GB per
    # million, taken off DuckDB's memory limit meanwhile) so that DuckDB sorts only (integer
    # position, text); beyond, one spilling sort of every column.
    in_memory_rows: int = 2_500_000
