"""What `run` and `demo` print when they end: the steps, the subsets with their rows and tokens, what a
user should look at (empty subsets, truncation, reject rates), and where the report is."""

from __future__ import annotations

import json
from typing import Any

from pipeline.core import tables
from pipeline.core.workdir import Workdir
from pipeline.flow import status

# Above this share of a stage's records ending as rejects, the summary says so.
REJECT_WARNING = 0.05
# Above this share of paragraphs cut at the student's max length, the summary says so.
TRUNCATION_WARNING = 0.10


def subsets(wd: Workdir) -> list[dict[str, Any]]:
    out = []
    for m in wd.subsets.glob("*/manifest.json"):
        try:
            man = json.loads(m.read_text())
            out.append({"name": man["name"], "rows": man["stats"]["rows"], "articles": man["stats"]["articles"],
                        "tokens": man["tokens"]["text"]})  # fmt: skip
        except (OSError, ValueError, KeyError):
            out.append({"name": m.parent.name, "rows": None, "articles": None, "tokens": None})
    return out


def warnings(wd: Workdir, entries: list[dict[str, Any]], built: list[dict[str, Any]]) -> list[str]:
    out = []
    empty = [s["name"] for s in built if s["rows"] == 0]
    if empty:
        out.append(f"{len(empty)} subset{'s are' if len(empty) > 1 else ' is'} empty: {', '.join(empty)} "
                   "(their recipes kept no paragraph: look at the label distribution in the report)")
    for e in entries:
        n_rej = sum(e["rejects"].values())
        n_rows = max(e["rows"].values(), default=0) if e["rows"] else 0
        if n_rej and n_rej / (n_rows + n_rej) > REJECT_WARNING:
            top = ", ".join(f"{r} {n:,}" for r, n in list(e["rejects"].items())[:3])
            out.append(f"{e['step']}: {n_rej:,} rejects beside {n_rows:,} rows ({top}); "
                       f"see W/rejects/{e['command']}-*.parquet")
    labels = wd.files("labels")
    row = tables.first_row("SELECT count(*), coalesce(sum(truncated::INT), 0) FROM read_parquet($files)", labels)
    if row and row[0] and row[1] / row[0] > TRUNCATION_WARNING:
        out.append(f"propagate: {row[1]:,} of {row[0]:,} paragraphs ({100 * row[1] / row[0]:.0f}%) were cut at the "
                   "student's max length (the labels read only their beginning: train with a longer --max-length)")
    return out


def closing_summary(wd: Workdir, elapsed_s: float, rc: int) -> str:
    """The lines `run` and `demo` end with."""
    entries = status.collect(wd)
    states: dict[str, int] = {}
    for e in entries:
        if e["state"] != "not run":
            states[e["state"]] = states.get(e["state"], 0) + 1
    lines = [f"{'done' if rc == 0 else f'stopped (exit {rc})'} in {elapsed_s:.0f} s: "
             + ", ".join(f"{n} {s}" for s, n in states.items())]
    built = subsets(wd)
    if built:
        lines.append("subsets:")
        width = max(len(s["name"]) for s in built)
        for s in built:
            if s["rows"] is None:
                lines.append(f"  {s['name']:<{width}}  (unreadable manifest)")
            else:
                lines.append(f"  {s['name']:<{width}}  {s['rows']:>9,} rows  {s['articles']:>7,} articles  "
                             f"{s['tokens']:>11,} tokens")
    found = warnings(wd, entries, built)
    if found:
        lines.append("look at:")
        lines += [f"  - {w}" for w in found]
    index = wd.reports / "index.md"
    if index.exists():
        lines.append(f"report: {index}")
    lines.append(f"every stage, its counts and rejects: pmc-curate status --workdir {wd.root}")
    return "\n".join(lines)
