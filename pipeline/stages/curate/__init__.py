"""Curate: build a pretraining subset from a parameterised SQL recipe (score, then select).

    pmc-curate curate --workdir W --recipe be-clinical [--param factor=20] [--commercial-only]

One module per job, in the order a run goes through them:

    config.py     CurateConfig (the CLI's flags, one-to-one) and the output columns
    recipes.py    recipe files: loading, declared parameters, label bindings
    selection.py  the views a recipe sees, running it into `selection`, the joined `meta` table
    order.py      document order, whole articles streamed in batches, copies laid out
    writers.py    the one ordered pass: sharded Parquet rows and the JSONL document export
    tokens.py     token counts (MiniLM WordPiece)
    manifest.py   statistics over the output rows and manifest.json
    card.py       the dataset card (README.md)
    stage.py      curate(config), and run: the stage as `pmc-curate curate` runs it
    biomed_enriched.py  `--export-format biomed-enriched`: the subset in the published dataset's schema

The labels table is checked before any of it runs (pipeline.core.label_tables). See docs/curate.md.
"""

from __future__ import annotations

from pipeline.stages.curate.config import (
    BIOMED_ENRICHED_COLUMNS,
    CLASS_ORDER_KEY,
    EXPORT_TOKENIZER,
    EXTRA_COLUMNS,
    LABEL_SOURCES,
    OUTPUT_COLUMNS,
    RENAMED,
    SEPARATOR,
    SHARED_COLUMNS,
    CurateConfig,
)
from pipeline.stages.curate.order import expand_indices
from pipeline.stages.curate.recipes import (
    RECIPES_DIR,
    Param,
    Recipe,
    builtin_recipes,
    label_bindings,
    load_recipe,
    parse_recipe,
    referenced_params,
    resolve_params,
)
from pipeline.stages.curate.stage import curate, run
from pipeline.stages.curate.tokens import load_tokenizer

__all__ = [
    "BIOMED_ENRICHED_COLUMNS", "CLASS_ORDER_KEY", "RENAMED", "SHARED_COLUMNS", "EXPORT_TOKENIZER", "EXTRA_COLUMNS", "LABEL_SOURCES", "OUTPUT_COLUMNS",
    "RECIPES_DIR", "SEPARATOR", "CurateConfig", "Param", "Recipe", "builtin_recipes", "curate",
    "expand_indices", "label_bindings", "load_recipe", "load_tokenizer", "parse_recipe", "referenced_params",
    "resolve_params", "run",
]  # fmt: skip
