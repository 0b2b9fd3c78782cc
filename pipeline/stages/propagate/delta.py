"""Which paragraphs `propagate` must label: those without a label for their current input from this model.

After `parse --update` most paragraphs are unchanged. A label is kept when the previous propagate run
used the same model (its files' fingerprint, the max length and the precision) and the label's
`input_hash` is the hash of the paragraph's current model input (section title + text,
classifiers.data.model_input); every other paragraph (new, edited, re-titled, never labelled) is
labelled again. Labels of paragraphs that are gone are dropped with the table's other old files.

The plan is SQL over the tables (DuckDB, local or remote): the kept labels (one row per id) are written
as one file kept-<run>.parquet into the new labels folder the stage is building (`Workdir.rewriting`:
beside W/labels, swapped in whole when the run has finished, so a reader never sees a label twice or a
kept label missing), and the paragraphs to label as W/cache/propagate/todo.parquet, which the Beam
pipeline reads instead of W/paragraphs; its labels go to the same new folder. The kept file is streamed,
never read into memory. It also names, in its Parquet metadata (`pmc_curate_supersedes`), the old files it
replaces: labels tables that older versions left with a kept file beside the files it superseded are
repaired first (`heal`), and a table doubled some other way is kept once (one row per id).

The model fingerprint of the last run lives in the stage's own state file, W/_stages/state/propagate.json
(`Workdir.state`), not in the flow's marker W/_stages/propagate.json, which the flow rewrites around the
stage: inside `pmc-curate run` the delta path is taken too.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from pipeline.core import storage
from pipeline.core.errors import ConfigError
from pipeline.core.workdir import Workdir

log = logging.getLogger(__name__)

# classifiers.data.model_input and pipeline.propagate._input_hash, in SQL (titles are whitespace-normalised
# by parse, so trim() and str.strip() agree): sha256 of "title\n\ntext" (or of the text), first 16 hex digits.
HASH_SQL = (
    "left(sha256(CASE WHEN trim(coalesce(p.section_title, '')) <> '' "
    "THEN trim(p.section_title) || chr(10) || chr(10) || p.text ELSE p.text END), 16)"
)
INPUT_COLUMNS = "p.id, p.article_id, p.text, p.section_title"


@dataclass(frozen=True)
class Plan:
    """What this run labels: every paragraph (full), or only `todo` of them, keeping `kept` labels."""

    full: bool
    reason: str  # why full, or "delta"
    kept: int = 0
    todo: int = 0
    input_glob: str = ""  # the paragraphs the pipeline reads


def model_fingerprint(model_dir: str, max_length: int | None, precision: str, tfidf_heads: tuple[str, ...] = (),
                      fallback_margin: float = 0.0) -> str:  # fmt: skip
    """The model's identity for reuse: its files' versions (size + mtime / ETag) and the settings that change
    its outputs."""
    loc = storage.as_location(model_dir)
    fp = storage.fingerprint(loc.glob("**"), loc)
    settings: dict[str, object] = {"files": fp, "max_length": max_length, "precision": precision}
    if tfidf_heads:  # absent when unused: fingerprints of earlier runs stay valid
        settings["tfidf_heads"] = sorted(tfidf_heads)
    if fallback_margin:  # likewise
        settings["fallback_margin"] = fallback_margin
    raw = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


SUPERSEDES_KEY = "pmc_curate_supersedes"  # Parquet key-value metadata of a kept file: the files it replaces


def previous_state(workdir: Workdir) -> dict[str, Any]:
    """The stage's record of its last run: W/_stages/state/propagate.json, else what older versions left.

    Older versions wrote it to W/_stages/propagate.json, which a flow then wrapped in its marker as
    `summary`: both are still read, so an existing work directory keeps its delta path.
    """
    for loc in (workdir.state("propagate"), workdir.stages / "propagate.json"):
        try:
            data = json.loads(loc.read_text())
        except (FileNotFoundError, ValueError):
            continue
        if isinstance(data, dict):
            if "model_fingerprint" in data:
                return data
            if isinstance(data.get("summary"), dict) and "model_fingerprint" in data["summary"]:
                return data["summary"]
    return {}


def write_state(workdir: Workdir, summary: dict[str, Any]) -> None:
    workdir.state("propagate").write_text(json.dumps(summary, indent=2, default=str) + "\n")


def heal(workdir: Workdir) -> list[str]:
    """Remove label files a kept file supersedes (left by a run killed before it removed them); their names."""
    names = {f.name: f for f in workdir.files("labels")}
    removed = []
    for f in list(names.values()):
        if not f.name.startswith("kept-"):
            continue
        try:
            meta = storage.read_parquet_metadata(f).metadata or {}
            listed = json.loads(meta.get(SUPERSEDES_KEY.encode(), b"[]"))
        except Exception as e:  # an unreadable kept file: the input check of this run names it
            log.warning("propagate: cannot read %s: %s", f, e)
            continue
        for name in listed:
            if name in names and name != f.name:
                names.pop(name).unlink()
                removed.append(name)
    if removed:
        log.warning("propagate: removed %d label files a killed run had already superseded: %s",
                    len(removed), ", ".join(sorted(removed)))  # fmt: skip
    return removed


def check_input(workdir: Workdir) -> None:
    """Read every paragraph's id and text once (a corrupt file fails here, before any label is removed)."""
    con = storage.duckdb_connect()
    try:
        for f in workdir.files("paragraphs"):
            try:
                (n, bad) = con.sql("SELECT count(*), count(*) FILTER (WHERE id IS NULL OR text IS NULL) "
                                   "FROM read_parquet($f)", params={"f": str(f)}).fetchall()[0]  # fmt: skip
            except duckdb.Error as e:
                raise ConfigError(f"paragraphs table: {f} cannot be read ({str(e).splitlines()[0]}); "
                                  "the labels were left as they are. Re-run parse to rewrite it") from e  # fmt: skip
            if bad:
                raise ConfigError(f"paragraphs table: {f} has {bad} rows without id or text; the labels were "
                                  "left as they are. Re-run parse to rewrite it")  # fmt: skip
    finally:
        con.close()


def plan(workdir: Workdir, fingerprint: str, kept_to: storage.Location, full: bool = False) -> Plan:
    """Decide full or delta; for a delta, write the kept labels into the folder `kept_to` (the new labels
    table) and the paragraphs to label (see module doc). Nothing in W/labels is removed here."""
    heal(workdir)
    if not workdir.has_table("labels"):
        return Plan(True, "no labels yet", input_glob=workdir.glob("paragraphs"))
    previous = previous_state(workdir).get("model_fingerprint")
    if full or previous != fingerprint:
        # Every label is replaced when the run ends: the input is read and checked first.
        check_input(workdir)
        why = "--full" if full else "the model or its settings changed" if previous else "the labels predate delta propagation"
        return Plan(True, why, input_glob=workdir.glob("paragraphs"))
    con = storage.duckdb_connect()
    todo_loc = workdir.cache / "propagate" / "todo.parquet"
    kept_loc = kept_to / f"kept-{uuid.uuid4().hex[:12]}.parquet"
    old = workdir.files("labels")
    try:
        with tempfile.TemporaryDirectory(prefix="pmc-curate-propagate-") as tmp:
            kept, todo = _write_plan(con, Path(tmp), workdir, old, kept_loc, todo_loc)
    except duckdb.Error as e:
        check_input(workdir)  # names a corrupt paragraphs file
        raise ConfigError(f"propagate: cannot read the labels or paragraphs tables ({str(e).splitlines()[0]}); "
                          "nothing was removed") from e  # fmt: skip
    finally:
        con.close()
    log.info("propagate: %d labels kept (same model, same input), %d paragraphs to label", kept, todo)
    return Plan(False, "delta", kept=int(kept), todo=int(todo), input_glob=str(todo_loc))


def _write_plan(con: duckdb.DuckDBPyConnection, tmp: Path, workdir: Workdir, old: list[storage.Location],
                kept_loc: storage.Location, todo_loc: storage.Location) -> tuple[int, int]:
    """The kept labels (to `kept_loc`) and the paragraphs to label (to `todo_loc`); (kept, todo)."""
    params = {"labels": [str(f) for f in old], "paragraphs": workdir.glob("paragraphs")}
    kept_file, todo_file = tmp / "kept.parquet", tmp / "todo.parquet"
    con.execute(f"SET temp_directory = '{tmp / 'spill'}'")
    # One label per id (a labels table doubled by an older version's killed run is repaired here).
    con.execute(
        f"""COPY (SELECT l.* EXCLUDE (filename) FROM read_parquet($labels, union_by_name = true, filename = true) AS l
                  JOIN read_parquet($paragraphs, union_by_name = true) AS p ON p.id = l.id AND l.input_hash = {HASH_SQL}
                  QUALIFY row_number() OVER (PARTITION BY l.id ORDER BY l.filename DESC) = 1
                  ORDER BY l.id)
            TO '{kept_file}' (FORMAT parquet, COMPRESSION zstd, KV_METADATA {{{SUPERSEDES_KEY}: $old}})""",
        {**params, "old": json.dumps(sorted(f.name for f in old))},
    )
    con.execute(
        f"""COPY (SELECT {INPUT_COLUMNS} FROM read_parquet($paragraphs, union_by_name = true) AS p
                  ANTI JOIN read_parquet($kept) AS k ON k.id = p.id ORDER BY p.id)
            TO '{todo_file}' (FORMAT parquet, COMPRESSION zstd)""",
        {"paragraphs": workdir.glob("paragraphs"), "kept": str(kept_file)},
    )
    kept, todo = (con.sql("SELECT count(*) FROM read_parquet($f)", params={"f": str(f)}).fetchall()[0][0]
                  for f in (kept_file, todo_file))  # fmt: skip
    kept_loc.write_from(kept_file)  # streamed
    todo_loc.parent.mkdir()
    todo_loc.write_from(todo_file)
    return int(kept), int(todo)
