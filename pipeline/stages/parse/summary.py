"""The parse stage's summary: counts per outcome and reject reason, read back from the written tables.

Computed from the tables, not from Beam counters, so it is the same on every runner (and, after an
`--update`, describes the current corpus).
"""

from __future__ import annotations

from typing import Any

from pipeline.core import storage
from pipeline.core.workdir import Workdir
from pipeline.stages.parse.read_cloud import summarize_versions

STAGE = "parse"


def summarize(workdir: Workdir) -> dict[str, Any]:
    """Counts per outcome and per reject reason, read back from the written tables (runner-independent)."""
    con = storage.duckdb_connect()
    try:
        def one(sql: str, glob: str) -> Any:
            return con.sql(sql, params={"g": glob}).fetchall()[0][0]

        s: dict[str, Any] = {}
        s["articles"] = one("SELECT count(*) FROM read_parquet($g)", workdir.glob("articles"))
        s["articles_without_paragraphs"] = one(
            "SELECT count(*) FROM read_parquet($g) WHERE n_paragraphs = 0", workdir.glob("articles"))
        s["paragraphs"] = one("SELECT count(*) FROM read_parquet($g)", workdir.glob("paragraphs"))
        s["short_paragraphs_dropped"] = int(one(
            "SELECT coalesce(sum(n_short_paragraphs), 0) FROM read_parquet($g)", workdir.glob("articles")))
        s["tokens"] = int(one("SELECT coalesce(sum(n_tokens), 0) FROM read_parquet($g)", workdir.glob("paragraphs")))
        rows = con.sql(
            "SELECT reason, count(*) FROM read_parquet($g) GROUP BY reason ORDER BY 2 DESC, 1",
            params={"g": str(workdir.rejects / f"{STAGE}-*.parquet")},
        ).fetchall()
        s["rejects"] = {r: n for r, n in rows}
        s["rejects_total"] = sum(s["rejects"].values())
        s.update(summarize_versions(con, workdir))
        return s
    finally:
        con.close()


def format_summary(s: dict[str, Any]) -> str:
    lines = [
        f"parse: {s['articles']} articles ({s['articles_without_paragraphs']} without paragraphs), "
        f"{s['paragraphs']} paragraphs, {s['tokens']} tokens, "
        f"{s['short_paragraphs_dropped']} short paragraphs dropped, {s['rejects_total']} rejects",
    ]
    lines += [f"  reject {reason}: {n}" for reason, n in s["rejects"].items()]
    if "versions" in s:
        lines.append(f"  snapshot {s['snapshot']}: {sum(s['versions'].values())} versions: "
                     + ", ".join(f"{n} {o}" for o, n in s["versions"].items())
                     + f"; license JSON/XML disagreements: {s['license_disagreements']}")
    if "update" in s:
        u = s["update"]
        lines.append(f"  update: {u['new']} new, {u['changed']} changed, {u['removed']} removed versions; "
                     f"{u['affected_pmcids']} articles re-read, {u['tombstones']} tombstones")
    return "\n".join(lines)
