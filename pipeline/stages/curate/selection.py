"""Select: the views a recipe sees, running the recipe into `selection`, and the joined `meta` table.

A recipe is one SELECT over the views `articles`, `paragraphs`, `labels` and `corpus` (paragraphs
joined with their labels and article metadata). It returns one row per selected paragraph with an
`id` column, and optionally `repeat` (copies of the paragraph's whole article, default 1, the same
for every row of an article) and `prefix` (text put before the paragraph).
"""

from __future__ import annotations

from typing import Any

import duckdb

from pipeline.core import labels as label_schema
from pipeline.core.errors import ConfigError
from pipeline.core.label_tables import LabelTableCheck
from pipeline.stages.curate.recipes import Recipe
from pipeline.stages.curate.sandbox import select_into


def setup_views(con: duckdb.DuckDBPyConnection, label_view: str, labels: LabelTableCheck, commercial_only: bool) -> None:
    """Views the recipe sees: articles, paragraphs, labels (the checked labels view `label_view`), corpus."""
    for name in ("articles", "paragraphs", label_view):
        con.execute(f"ALTER VIEW {name} RENAME TO src_{name}")
    con.execute(
        "CREATE VIEW articles AS SELECT * FROM src_articles"
        + (" WHERE commercial IS TRUE" if commercial_only else "")
    )
    con.execute(
        "CREATE VIEW paragraphs AS SELECT p.* FROM src_paragraphs AS p"
        + (" SEMI JOIN articles AS a ON p.article_id = a.pmcid" if commercial_only else "")
    )
    # id, article_id, the label columns, the probability vectors, model_id; derived where the table lacks them.
    con.execute(f"CREATE VIEW labels AS {labels.view_sql(f'src_{label_view}', 'src_paragraphs')}")
    con.execute(
        f"""CREATE VIEW corpus AS
        SELECT p.id, p.article_id, p.path, p.section_title, p.language, p.n_tokens,
               {", ".join("l." + c for c in label_schema.LABEL_COLUMNS)},
               a.license, a.commercial, a.year, a.language AS article_language
        FROM paragraphs AS p
        JOIN labels AS l ON l.id = p.id
        JOIN articles AS a ON a.pmcid = p.article_id"""
    )


def run_recipe(
    con: duckdb.DuckDBPyConnection, box: duckdb.DuckDBPyConnection, recipe: Recipe, bindings: dict[str, Any]
) -> None:
    """Materialise the recipe's selection as temp table `selection` of `con`, translating DuckDB's errors.

    The recipe runs in `box`, the sandboxed connection of pipeline.stages.curate.sandbox, never on `con`.
    """
    select_into(con, box, recipe, bindings)
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
PATH_KEY = (
    "list_transform(string_split(p.path, '/'), "
    "lambda x: coalesce(TRY_CAST(regexp_extract(x, '\\[(\\d+)\\]', 1) AS BIGINT), 0))"
)
_JOINS = """FROM selection AS s
        JOIN paragraphs AS p ON p.id = s.id
        LEFT JOIN labels AS l ON l.id = s.id
        JOIN articles AS a ON a.pmcid = p.article_id
        WHERE s.repeat > 0"""


def build_meta(con: duckdb.DuckDBPyConnection) -> None:
    """Temp table `meta`: one row per selected paragraph with every output column but the text.

    Joins happen here, once; the ordered pass then joins only the text, so DuckDB's sort carries
    the text and a few columns and stays within the memory limit (spilling, not failing).
    """
    con.execute(
        f"""CREATE TEMP TABLE meta AS
        SELECT p.id, p.article_id, p.path, p.language, p.section_title, l.domain, l.document_type,
               CAST(l.educational_score AS DOUBLE) AS educational_score, l.domain_scores, l.document_type_scores,
               p.language_score, a.authors, a.article_url, a.license_url, s.prefix, p.n_tokens, a.license,
               a.commercial, a.year, a.title, a.journal, s.repeat, {PATH_KEY} AS _key
        {_JOINS}"""
    )
