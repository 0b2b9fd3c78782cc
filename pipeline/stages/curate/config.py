"""What one curate run is configured with (CurateConfig, the CLI's flags) and the columns it writes."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pipeline.core import storage
from pipeline.core.label_tables import LABEL_SOURCES, SOURCE_TABLES
from pipeline.core.options import option
from pipeline.interop import biomed_enriched as BE
from pipeline.stages.curate.recipes import builtin_recipes

__all__ = ["BIOMED_ENRICHED_COLUMNS", "CLASS_ORDER_KEY", "EXPORT_TOKENIZER", "EXTRA_COLUMNS", "LABEL_SOURCES",
           "OUTPUT_COLUMNS", "RENAMED", "SELECTION_COLUMNS", "SEPARATOR", "SHARED_COLUMNS", "CurateConfig",
           "EXPORT_FORMATS"]  # fmt: skip

EXPORT_TOKENIZER = "sentence-transformers/all-MiniLM-L6-v2"
# data/*.parquet columns. A column keeps a Biomed-Enriched name only where it has their meaning (and,
# for vectors, their order); the others get our own name (docs/curate.md has the mapping):
# their `id` is `{PMID}_p{N}` and their `article_id` the PMID, ours are the paragraph id and the
# PMCID; their vectors follow their class order, ours pipeline/core/labels.py's, written into the
# Parquet schema metadata (CLASS_ORDER_KEY). `--export-format biomed-enriched` writes their schema exactly.
BIOMED_ENRICHED_COLUMNS = BE.COLUMNS  # the BE export's columns (biomed_enriched.py), not data/'s
RENAMED = {"id": "paragraph_id", "article_id": "pmcid", "domain_scores": "domain_probs",
           "document_type_scores": "type_probs"}  # the selection's column -> data/'s, where BE means another thing
SHARED_COLUMNS = tuple(c for c in BE.COLUMNS if c not in RENAMED)  # named and meant as in Biomed-Enriched
EXTRA_COLUMNS = ("copy", "prefix", "n_tokens", "license", "commercial", "year", "title", "journal")
# The selection's columns in data/'s order (internal names), and data/'s names for them.
SELECTION_COLUMNS = BE.COLUMNS + EXTRA_COLUMNS
OUTPUT_COLUMNS = tuple(RENAMED.get(c, c) for c in SELECTION_COLUMNS)
CLASS_ORDER_KEY = "pmc_curate.class_order"  # data/ schema metadata: {"domain_probs": [...], "type_probs": [...]}
# Paragraph and document separator in the text export (titles and paragraphs each their own block).
SEPARATOR = "\n\n"
EXPORT_FORMATS = ("jsonl", "biomed-enriched")


@dataclass
class CurateConfig:
    """One curate run. CLI flags map one-to-one onto these fields."""

    workdir: str | os.PathLike[str] | storage.Location = option(
        fixed=True, help="work directory: a local path, s3://bucket/prefix or gs://bucket/prefix")
    recipe: str = option(input_path=True,
                         help=f"built-in recipe ({', '.join(builtin_recipes())}) or the path of a .sql file")
    params: list[str] = option(default_factory=list, flag="--param", append=True, metavar="KEY=VALUE",
                               help="set a recipe parameter (repeatable); see the recipe's `-- param:` lines")
    commercial_only: bool = option(False, help="keep only articles whose license allows commercial use")
    # annotations: the teacher's labels stand in during development
    labels: str = option("labels", choices=LABEL_SOURCES,
                         help="labels to curate by: the student's (labels), the teacher's (annotations, during "
                              "development), import-labels' (imported), or imported where present and the "
                              "student's elsewhere (merged)")
    name: str | None = option(None, help="output folder under W/subsets (default: the recipe's name, + -commercial)")
    shard_mb: float = option(256.0, help="size bound of one compressed export shard and one Parquet file (MB)")
    compression: str = option("zstd", choices=("zstd", "gzip"), help="compression of the JSONL export")
    export: bool = option(True, negative="--no-export", help="skip the export (JSONL or biomed-enriched)")
    # jsonl: export/ holds one JSON document per article copy; biomed-enriched: biomed-enriched/ holds the
    # selected paragraphs in the published dataset's exact schema instead (biomed_enriched.py).
    export_format: str = option("jsonl", choices=EXPORT_FORMATS,
                                help="jsonl: one document per article copy in export/; biomed-enriched: the selected "
                                     "paragraphs in the published Biomed-Enriched schema in biomed-enriched/, with a "
                                     "pmid -> xml_path index")
    tokenizer: str | None = option(None, help="count the subset in this tokenizer's tokens (minilm, a tokenizer.json "
                                              "file or folder, a cached transformers id): the budget in manifest.json")
    target_tokens: int | None = option(None, help="scale the recipe's repeats to exactly this many tokens and report "
                                                  "each component's effective epochs (export writes them as weights)")
    # 2 GB keeps the process under the 4 GB target (DuckDB ~2.5 GB RSS + writers); DuckDB spills beyond it.
    count_tokenizer: str | None = option(None, metavar="PATH_OR_ID",
                                         help="tokenizer the manifest's and card's token counts use: a tokenizer.json, a "
                                              "folder holding one, or a Hugging Face id (default: the offline MiniLM "
                                              "WordPiece that parse's n_tokens use)")
    memory_limit: str = option("2GB", speed_only=True, help="DuckDB memory limit (spills beyond)")
    threads: int | None = option(None, speed_only=True, help="DuckDB threads (default: all cores)")
    temp_directory: Path | None = option(None, speed_only=True,
                                         help="local DuckDB spill folder (default: the work directory's local cache)")
    batch_rows: int = 65_536  # rows per Arrow batch streamed from DuckDB to the writers
    # Up to this many selected paragraphs, their text-free columns are held in Arrow (~0.4 GB per
    # million, taken off DuckDB's memory limit meanwhile) so that DuckDB sorts only (integer
    # position, text); beyond, one spilling sort of every column.
    in_memory_rows: int = 2_500_000

    @property
    def subset_name(self) -> str:
        """The folder under W/subsets this run writes."""
        return self.name or Path(self.recipe).stem + ("-commercial" if self.commercial_only else "")

    @property
    def labels_table(self) -> tuple[str, ...]:
        """The tables the chosen labels are read from."""
        return SOURCE_TABLES[self.labels]
