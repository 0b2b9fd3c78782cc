"""Duplicates and contamination in curate: the `duplicates` and `contamination` views, and the two
parameters every recipe takes, applied to the recipe's selection.

- `--param dedup=none|exact|near` (default none): of each group of copies in the selection, keep the
  one first in the keep order (its smallest rank among the *selected* members, so a recipe that drops
  the kept copy still keeps one). Steps, each ranked among what the previous left: articles published
  twice (all paragraphs of the later copies go), then exact groups, then (`near`) near-duplicate
  groups, except groups holding a boilerplate paragraph (a template is flagged, not collapsed; a
  recipe drops it with the `duplicates` view). Needs `pmc-curate dedup`.
- `--param decontaminate=true|false` (default false): drop every selected paragraph that overlaps a
  benchmark item (W/contamination, any rule). Needs `pmc-curate decontaminate`.

The defaults leave a subset exactly as its recipe selects it. The manifest records what each step
removed (paragraphs, and their n_tokens times copies), per benchmark, with the stages' settings.
When the tables are absent the views are empty, so every recipe runs on any work directory.
"""

from __future__ import annotations

import json
from typing import Any

import duckdb

from pipeline.core.errors import ConfigError
from pipeline.core.records import Contamination, Duplicate, arrow_schema
from pipeline.core.workdir import Workdir
from pipeline.stages.curate.recipes import Param, Recipe

FILTER_PARAMS: dict[str, Param] = {
    "dedup": Param("dedup", "none", "none, exact or near: keep one copy of each duplicate group (pmc-curate dedup)"),
    "decontaminate": Param("decontaminate", False,
                           "true: drop paragraphs overlapping a benchmark item (pmc-curate decontaminate)"),
}
DEDUP_MODES = ("none", "exact", "near")
TABLES = {"duplicates": Duplicate, "contamination": Contamination}
TABLE_OF = {"dedup": "duplicates", "decontaminate": "contamination"}
_DUCK = {"string": "VARCHAR", "int64": "BIGINT", "double": "DOUBLE", "bool": "BOOLEAN"}


def split_params(recipe: Recipe, overrides: list[str] | None) -> tuple[list[str], dict[str, Any]]:
    """(--param items for the recipe, the values of `dedup` and `decontaminate`)."""
    clash = sorted(set(FILTER_PARAMS) & set(recipe.params))
    if clash:
        raise ConfigError(f"recipe {recipe.name} declares {', '.join(clash)}, a parameter curate applies to every "
                          "recipe; rename it")  # fmt: skip
    values = {name: p.default for name, p in FILTER_PARAMS.items()}
    rest = []
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if sep and key.strip() in FILTER_PARAMS:
            values[key.strip()] = FILTER_PARAMS[key.strip()].convert(raw.strip())
        else:
            rest.append(item)
    if values["dedup"] not in DEDUP_MODES:
        raise ConfigError(f"--param dedup={values['dedup']!r}: expected one of {', '.join(DEDUP_MODES)}")
    return rest, values


def setup_views(con: duckdb.DuckDBPyConnection, wd: Workdir) -> None:
    """Views `duplicates` and `contamination`: the tables, or empty views of their columns."""
    for name, record in TABLES.items():
        if wd.has_table(name):
            con.execute(f"ALTER VIEW {name} RENAME TO src_{name}")
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM src_{name}")
        else:
            cols = ", ".join(f"CAST(NULL AS {_DUCK[str(f.type)]}) AS {f.name}" for f in arrow_schema(record))
            con.execute(f"CREATE VIEW {name} AS SELECT {cols} WHERE false")


def _stage_summary(wd: Workdir, stage: str) -> dict[str, Any]:
    try:
        summary = json.loads((wd.stages / f"{stage}.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return {k: summary[k] for k in ("parameters", "keep_order", "benchmarks", "index") if k in summary}


# The selected members of each group after the first (by rank, among the members still selected).
_RANKED = """SELECT id FROM (
    SELECT d.id, d.{rank} AS r, min(d.{rank}) OVER w AS m, bool_or(d.boilerplate) OVER w AS bp
    FROM duplicates AS d SEMI JOIN selection AS s ON s.id = d.id
    WHERE d.{group} IS NOT NULL WINDOW w AS (PARTITION BY d.{group}))
  WHERE r > m {extra}"""


def _removed(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, int]:
    """Paragraphs of `table` (ids) and their tokens in the subset (n_tokens x copies), read from
    `selection_before`: the selection as it was before this step deleted them."""
    n, tokens = con.sql(f"""SELECT count(*), coalesce(sum(p.n_tokens * s.repeat), 0)
                            FROM (SELECT DISTINCT id FROM {table}) AS d
                            JOIN selection_before AS s USING (id) JOIN paragraphs AS p USING (id)""").fetchall()[0]
    return {"paragraphs": int(n), "n_tokens": int(tokens)}


def apply(con: duckdb.DuckDBPyConnection, wd: Workdir, values: dict[str, Any]) -> dict[str, Any]:
    """Remove duplicates and contaminated paragraphs from temp table `selection`; what was removed, for the manifest."""
    mode, decon = values["dedup"], values["decontaminate"]
    con.execute("CREATE OR REPLACE TEMP TABLE selection_before AS SELECT id, repeat FROM selection")
    out: dict[str, Any] = {"dedup": {"mode": mode}, "decontamination": {"enabled": decon}}
    # the stages' settings go into every manifest where they ran, applied or not
    for key, stage in (("dedup", "dedup"), ("decontamination", "decontaminate")):
        if wd.has_table(TABLE_OF[stage]) and (summary := _stage_summary(wd, stage)):
            out[key]["stage"] = summary
    if mode != "none":
        if not wd.has_table("duplicates"):
            raise ConfigError(f"--param dedup={mode} needs the duplicates table: run `pmc-curate dedup` first")
        steps = {"articles": _RANKED.format(rank="article_rank", group="article_group", extra=""),
                 "exact": _RANKED.format(rank="exact_rank", group="exact_group", extra="")}  # fmt: skip
        if mode == "near":
            steps["near"] = _RANKED.format(rank="near_rank", group="near_group", extra="AND NOT bp")
        con.execute("CREATE TEMP TABLE drop_dedup (id VARCHAR, step VARCHAR)")
        for step, sql in steps.items():  # one after the other: a group is ranked among what is still selected
            con.execute(f"INSERT INTO drop_dedup SELECT id, '{step}' FROM ({sql})")
            con.execute("DELETE FROM selection WHERE id IN (SELECT id FROM drop_dedup)")
        by_step = dict(con.sql("SELECT step, count(*) FROM drop_dedup GROUP BY step").fetchall())
        out["dedup"].update(removed=_removed(con, "drop_dedup"), by_step={s: int(by_step.get(s, 0)) for s in steps})
    if decon:
        if not wd.has_table("contamination"):
            raise ConfigError("--param decontaminate=true needs the contamination table: run `pmc-curate decontaminate` first")
        con.execute("CREATE OR REPLACE TEMP TABLE selection_before AS SELECT id, repeat FROM selection")
        con.execute("""CREATE TEMP TABLE drop_contaminated AS
                       SELECT DISTINCT c.id, c.benchmark FROM contamination AS c SEMI JOIN selection AS s ON s.id = c.id""")
        per = {}
        for (bench,) in con.sql("SELECT DISTINCT benchmark FROM drop_contaminated ORDER BY 1").fetchall():
            con.execute("CREATE OR REPLACE TEMP TABLE drop_one AS SELECT id FROM drop_contaminated WHERE benchmark = $b",
                        {"b": bench})  # fmt: skip
            per[bench] = _removed(con, "drop_one")
        con.execute("CREATE TEMP TABLE drop_any AS SELECT DISTINCT id FROM drop_contaminated")
        out["decontamination"].update(removed=_removed(con, "drop_any"), by_benchmark=per)
        con.execute("DELETE FROM selection WHERE id IN (SELECT id FROM drop_any)")
    return out


def card_section(filters: dict[str, Any]) -> str:
    """The dataset card's paragraph on duplicates and contamination."""
    d, c = filters["dedup"], filters["decontamination"]
    lines = ["## Duplicates and benchmark contamination\n"]
    if d["mode"] == "none":
        lines.append("- duplicates: not removed (`dedup=none`); copies of a paragraph may appear more than once.")
    else:
        r = d["removed"]
        lines.append(f"- duplicates (`dedup={d['mode']}`): {r['paragraphs']:,} paragraphs ({r['n_tokens']:,} tokens) "
                     f"removed, one copy of each group kept; {d.get('stage', {}).get('keep_order', '')}.")  # fmt: skip
    if not c["enabled"]:
        lines.append("- benchmark contamination: not removed (`decontaminate=false`).")
    else:
        r = c["removed"]
        per = ", ".join(f"{b}: {v['paragraphs']:,} paragraphs, {v['n_tokens']:,} tokens" for b, v in c["by_benchmark"].items())
        lines.append(f"- benchmark contamination: {r['paragraphs']:,} paragraphs ({r['n_tokens']:,} tokens) removed"
                     + (f" ({per})." if per else "; none of the selected paragraphs overlapped a benchmark item."))
    return "\n".join(lines) + "\n\n"
