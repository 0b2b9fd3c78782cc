"""What `dedup` and `decontaminate` found, in a few numbers, for `status` and `report`.

Read from the tables themselves (W/duplicates, W/contamination, W/paragraphs), so a table written by
hand or by a flow reads the same. Each function returns None when its table does not exist.
"""

from __future__ import annotations

from typing import Any

from pipeline.core import tables
from pipeline.core.workdir import Workdir


def duplicates(wd: Workdir, largest: int = 3) -> dict[str, Any] | None:
    """Copies a recipe would drop (exact, near, articles), the boilerplate share, the largest groups with an example."""
    files = wd.files("duplicates")
    if not files:
        return None
    exact, near, articles, boilerplate = tables.first_row(
        """SELECT count(*) FILTER (WHERE exact_rank > 0), count(*) FILTER (WHERE near_rank > 0),
                  count(DISTINCT article_id) FILTER (WHERE article_rank > 0), count(*) FILTER (WHERE boilerplate)
           FROM read_parquet($files)""", files) or (0, 0, 0, 0)  # fmt: skip
    paragraphs = tables.count_rows(wd.files("paragraphs")) or 0
    groups = tables.rows(
        """SELECT coalesce(near_group, exact_group) AS g, max(group_size) AS n, max(group_articles), bool_or(boilerplate)
           FROM read_parquet($files) WHERE g IS NOT NULL GROUP BY g ORDER BY n DESC, g LIMIT $k""", files, k=largest)  # fmt: skip
    texts = dict(tables.rows("SELECT id, left(text, 120) FROM read_parquet($files) WHERE list_contains($ids, id)",
                             wd.files("paragraphs"), ids=[g[0] for g in groups])) if groups else {}  # fmt: skip
    return {
        "paragraphs": paragraphs, "exact_copies": int(exact), "near_copies": int(near), "article_copies": int(articles),
        "boilerplate": int(boilerplate), "boilerplate_share": boilerplate / paragraphs if paragraphs else None,
        "largest_groups": [{"group": g, "paragraphs": int(n), "articles": int(a), "boilerplate": bool(b),
                            "example": texts.get(g, "")} for g, n, a, b in groups],
    }  # fmt: skip


def contamination(wd: Workdir) -> dict[str, Any] | None:
    """Paragraphs overlapping each benchmark, and in all."""
    files = wd.files("contamination")
    if not files:
        return None
    per = tables.rows("SELECT benchmark, count(DISTINCT id) FROM read_parquet($files) GROUP BY 1 ORDER BY 1", files)
    total = tables.first_row("SELECT count(DISTINCT id) FROM read_parquet($files)", files) or (0,)
    return {"paragraphs": int(total[0]), "by_benchmark": {b: int(n) for b, n in per}}


def lines(wd: Workdir, largest: int = 3) -> list[str]:
    """The findings as a few lines of text (empty when neither table exists)."""
    return duplicate_lines(wd, largest) + contamination_lines(wd)


def duplicate_lines(wd: Workdir, largest: int = 3) -> list[str]:
    """`duplicates` in words: the copies, the boilerplate share, the largest groups with an example."""
    out = []
    d = duplicates(wd, largest)
    if d is not None:
        share = "n/a" if d["boilerplate_share"] is None else f"{100 * d['boilerplate_share']:.2f}%"
        out.append(f"duplicates: {d['exact_copies']:,} exact copies, {d['near_copies']:,} near copies, "
                   f"{d['article_copies']:,} article copies; boilerplate {d['boilerplate']:,} paragraphs ({share})")  # fmt: skip
        for g in d["largest_groups"]:
            out.append(f"  largest group: {g['paragraphs']:,} paragraphs in {g['articles']:,} articles"
                       f"{' (boilerplate)' if g['boilerplate'] else ''}, e.g. {g['example']!r}")  # fmt: skip
    return out


def contamination_lines(wd: Workdir) -> list[str]:
    """`contamination` in words: the paragraphs per benchmark."""
    out = []
    c = contamination(wd)
    if c is not None:
        per = ", ".join(f"{b} {n:,}" for b, n in c["by_benchmark"].items()) or "none"
        out.append(f"contamination: {c['paragraphs']:,} paragraphs overlap a benchmark item ({per})")
    return out
