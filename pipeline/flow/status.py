"""`pmc-curate status --workdir W`: each stage of a work directory, finished or not, its counts and rejects.

Reads the markers the flow writes (`W/_stages/<step>.json`) and, for rejects, the stage's own reject
files (`W/rejects/<stage>-*.parquet`). Row counts are those the tables hold now (Parquet footers), and a
table whose files differ from what its step recorded when it finished (a file deleted, added or
rewritten) is flagged; an unreadable Parquet file is named with its table, never a traceback. Tables
written by a command typed by hand (no marker) are still shown, with their row counts. Stages come in the registry's order (pipeline/stages/__init__.py).
"""

from __future__ import annotations

import contextlib
import json
import socket
from dataclasses import dataclass
from typing import Any

import duckdb

from pipeline import stages
from pipeline.core import findings, storage, tables
from pipeline.core.errors import ConfigError
from pipeline.core.options import option
from pipeline.core.workdir import Workdir
from pipeline.flow.lock import alive
from pipeline.flow.markers import glob_files


def _table_rows(wd: Workdir, command: str, problems: list[str] | None = None) -> dict[str, int]:
    """Rows of the Parquet tables a stage writes, as they are now."""
    stage = stages.BY_NAME.get(command)
    return _rows_now(wd, [p for p in (stage.writes if stage else ()) if "{" not in p], problems)


def _rows_now(wd: Workdir, patterns: list[str], problems: list[str] | None = None) -> dict[str, int]:
    """Rows the files matching each pattern hold now (footers only); an unreadable file becomes a problem
    naming the file and its table, never an exception."""
    rows: dict[str, int] = {}
    for pattern in patterns:
        try:
            n = tables.count_rows(glob_files(wd.root, pattern))
        except (ConfigError, OSError) as e:
            if problems is not None:
                problems.append(f"table {pattern.split('/')[0]}: {e}")
            continue
        if n is not None:
            rows[pattern] = n
    return rows


def _changed(wd: Workdir, outputs: dict[str, Any]) -> list[str]:
    """Outputs whose files differ from what the step recorded when it finished (deleted, added, rewritten)."""
    out = []
    for pattern, fp in outputs.items():
        if not fp.get("digest"):
            continue
        files = glob_files(wd.root, pattern)
        if storage.fingerprint(files, wd.root)["digest"] != fp["digest"]:
            was = f"{fp.get('files')} files, {fp['rows']:,} rows" if fp.get("rows") is not None else f"{fp.get('files')} files"
            out.append(f"{pattern}: {was} when the step finished, {len(files)} files now")
    return out


def _rejects(wd: Workdir, command: str, problems: list[str]) -> dict[str, int]:
    try:
        return tables.rejects_by_reason(wd.rejects, command)
    except (duckdb.Error, OSError) as e:
        problems.append(f"table rejects ({command}-*.parquet): {str(e).splitlines()[0]}")
        return {}


def corpus_state(wd: Workdir, parse_marker: dict[str, Any] | None) -> dict[str, Any]:
    """How current the corpus is: the inventory snapshots its articles were read at (articles per snapshot,
    newest first) and what the last `parse --update` changed."""
    out: dict[str, Any] = {}
    files = [str(f) for f in wd.files("articles")]
    if files:
        con = storage.duckdb_connect()
        try:  # an unreadable articles file: status shows the table's problem (collect), not a traceback
            with contextlib.suppress(duckdb.Error):
                _snapshots(con, files, out)
        finally:
            con.close()
    m = parse_marker or {}
    upd = m.get("update") or (m.get("summary") or {}).get("update")
    if upd:
        out["last_update"] = {k: upd[k] for k in ("snapshot", "previous_snapshot", "new", "changed", "removed",
                                                   "affected_pmcids", "tombstones") if k in upd}  # fmt: skip
    return out


def _snapshots(con: duckdb.DuckDBPyConnection, files: list[str], out: dict[str, Any]) -> None:
    rel = con.sql("SELECT * FROM read_parquet($f, union_by_name = true) LIMIT 0", params={"f": files})
    if "snapshot" in rel.columns:
        rows = con.sql(
            "SELECT snapshot, count(*) FROM read_parquet($f, union_by_name = true) WHERE snapshot IS NOT NULL "
            "GROUP BY 1 ORDER BY 1 DESC",
            params={"f": files},
        ).fetchall()
        if rows:
            out["snapshots"] = {str(k): int(n) for k, n in rows}


def _journal_problem(wd: Workdir, command: str, journal: str) -> str | None:
    try:
        j = json.loads(wd.state(journal).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        return f"{command}: its journal {wd.state(journal)} cannot be read ({e}); the next `{command}` run decides"
    phase = j.get("phase")
    if phase == "published":
        return None
    what = ("publishing (each part file holds its old or its new rows, never both)" if phase == "publishing"
            else f"{phase} (the tables are as before it)")
    return f"{command} ({journal}) of {j.get('stamp')} was interrupted while {what}; the next `{command}` finishes it"


def collect(wd: Workdir) -> list[dict[str, Any]]:
    """One entry per stage: marker fields (state, times, outputs) plus rejects per reason."""
    markers: list[dict[str, Any]] = []
    if wd.stages.is_dir():
        for p in wd.stages.glob("*.json"):
            try:
                m = json.loads(p.read_text(encoding="utf-8"))
                m.setdefault("step", m.get("stage") or p.stem)
                m.setdefault("command", m.get("stage") or p.stem)
                markers.append(m)
            except (OSError, ValueError):
                markers.append({"step": p.stem, "command": p.stem, "status": "unreadable marker"})
    seen_commands = {m["command"] for m in markers}
    entries: list[dict[str, Any]] = []
    for m in markers:
        # A marker without a status was written by the stage itself, run by hand: it finished.
        state = m.get("status", "finished (by hand)")
        if state == "running" and m.get("host") not in (None, socket.gethostname()):
            state = f"running on {m.get('host')}"  # another machine's process: its lock's heartbeat tells more
        elif state == "running" and not alive(m.get("pid")):
            state = "interrupted"  # the process that wrote "running" is gone: killed mid-stage
        problems: list[str] = []
        outputs = m.get("outputs") or {}
        # The rows the tables hold now, not the counts recorded when the step finished; a table whose
        # files differ from what the step wrote is flagged.
        rows = _rows_now(wd, list(outputs), problems) if outputs else _table_rows(wd, m["command"], problems)
        entries.append({
            "step": m["step"],
            "command": m["command"],
            "state": state,
            "started_at": m.get("started_at"),
            "ended_at": m.get("ended_at") or m.get("finished_at"),
            "duration_s": m.get("duration_s"),
            "rows": rows,
            "changed": _changed(wd, outputs),
            "problems": problems,
            "error": m.get("error"),
            "rejects": _rejects(wd, m["command"], problems),
        })
    # Stages run by hand (no marker) or never run.
    for command in stages.ORDER:
        if command in seen_commands:
            continue
        problems = []
        rows = _table_rows(wd, command, problems)
        entries.append({
            "step": command, "command": command,
            "state": "present (no marker)" if rows or problems else "not run",
            "started_at": None, "ended_at": None, "duration_s": None,
            "rows": rows, "changed": [], "problems": problems, "error": None,
            "rejects": _rejects(wd, command, problems),
        })

    for e in entries:  # what dedup and decontaminate found, from their tables
        if e["command"] in ("dedup", "decontaminate") and e["rows"]:
            e["findings"] = findings.duplicate_lines(wd, 1) if e["command"] == "dedup" else findings.contamination_lines(wd)
    parse_entry = next((e for e in entries if e["command"] == "parse"), None)
    if parse_entry is not None:
        marker = next((m for m in markers if m["command"] == "parse"), None)
        corpus = corpus_state(wd, marker)
        if corpus:
            parse_entry["corpus"] = corpus
    for e in entries:  # a publish a killed run left half done (the stage's journal)
        stage = stages.BY_NAME.get(str(e["command"]))
        if stage is not None and stage.journal and not str(e["state"]).startswith("running"):
            problem = _journal_problem(wd, stage.name, stage.journal)
            if problem:
                e["problems"].append(problem)

    def order(e: dict[str, Any]) -> tuple[int, str, str]:
        c = str(e["command"])
        order = stages.ORDER
        return (order.index(c) if c in order else len(order), e.get("started_at") or "", str(e["step"]))

    return sorted(entries, key=order)


def render(entries: list[dict[str, Any]]) -> str:
    """A plain-text table, one block per stage."""
    lines = []
    for e in entries:
        when = e["ended_at"] or e["started_at"] or ""
        dur = f"{e['duration_s']:.1f} s" if isinstance(e["duration_s"], int | float) else ""
        lines.append(f"{e['step']:<24} {e['state']:<20} {when:<26} {dur}".rstrip())
        for table, n in e["rows"].items():
            lines.append(f"    {n:>10,} rows  {table}")
        if e["rejects"]:
            total = sum(e["rejects"].values())
            per = ", ".join(f"{r} {n:,}" for r, n in e["rejects"].items())
            lines.append(f"    {total:>10,} rejects: {per}")
        corpus = e.get("corpus") or {}
        if corpus.get("snapshots"):
            snaps = ", ".join(f"{k} ({n:,} articles)" for k, n in corpus["snapshots"].items())
            lines.append(f"    snapshot: {snaps}")
        if corpus.get("last_update"):
            u = corpus["last_update"]
            lines.append(
                f"    last update{' to ' + str(u['snapshot']) if u.get('snapshot') else ''}: {u.get('new', 0):,} new, "
                f"{u.get('changed', 0):,} changed, {u.get('removed', 0):,} removed versions; "
                f"{u.get('affected_pmcids', 0):,} articles re-read, {u.get('tombstones', 0):,} tombstones"
            )
        lines += [f"    {line}" for line in e.get("findings") or ()]
        for c in e.get("changed") or []:
            lines.append(f"    ! changed since {e['step']} wrote it: {c}")
        for p in e.get("problems") or []:
            lines.append(f"    ! unreadable: {p}")
        if e["error"]:
            lines.append(f"    error: {e['error']}")
    return "\n".join(lines)


@dataclass(frozen=True)
class Config:
    """`pmc-curate status`: which work directory, and how to print it."""

    workdir: str = option(help="work directory of a run")
    json: bool = option(False, help="print JSON instead of a table")


def run(args: Config, beam_argv: list[str]) -> int:
    """Entry point of `pmc-curate status`."""
    wd = Workdir.of(args.workdir)
    storage.check_access(wd.root, write=False)
    if not wd.root.is_dir():
        raise ConfigError(f"no work directory at {wd.root}")
    entries = collect(wd)
    print(json.dumps(entries, indent=2) if args.json else render(entries))
    return 0
