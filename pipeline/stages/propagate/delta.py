"""Which paragraphs `propagate` must label: those without a label for their current input from this model.

After `parse --update` most paragraphs are unchanged. A label is kept when the previous propagate run
used the same model (its files' fingerprint, the max length and the precision) and the label's
`input_hash` is the hash of the paragraph's current model input (section title + text,
classifiers.data.model_input); every other paragraph (new, edited, re-titled, never labelled) is
labelled again. Labels of paragraphs that are gone are dropped with the table's other old files.

The plan is SQL over the tables (DuckDB, local or remote): the kept labels are written as one file
W/labels/kept-<run>.parquet before any old label file is removed, and the paragraphs to label as
W/cache/propagate/todo.parquet, which the Beam pipeline reads instead of W/paragraphs.
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

from pipeline.core import storage
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


def model_fingerprint(model_dir: str, max_length: int | None, precision: str, tfidf_heads: tuple[str, ...] = ()) -> str:
    """The model's identity for reuse: its files' versions (size + mtime / ETag) and the settings that change
    its outputs."""
    loc = storage.as_location(model_dir)
    fp = storage.fingerprint(loc.glob("**"), loc)
    settings: dict[str, object] = {"files": fp, "max_length": max_length, "precision": precision}
    if tfidf_heads:  # absent when unused: fingerprints of earlier runs stay valid
        settings["tfidf_heads"] = sorted(tfidf_heads)
    raw = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def _previous(workdir: Workdir) -> dict[str, Any]:
    try:
        return json.loads((workdir.stages / "propagate.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}


def plan(workdir: Workdir, fingerprint: str, full: bool = False) -> Plan:
    """Decide full or delta; for a delta, write the kept labels and the paragraphs to label (see module doc)."""
    if full:
        return Plan(True, "--full", input_glob=workdir.glob("paragraphs"))
    if not workdir.has_table("labels"):
        return Plan(True, "no labels yet", input_glob=workdir.glob("paragraphs"))
    previous = _previous(workdir).get("model_fingerprint")
    if previous != fingerprint:
        why = "the model or its settings changed" if previous else "the labels predate delta propagation"
        return Plan(True, why, input_glob=workdir.glob("paragraphs"))
    con = storage.duckdb_connect()
    todo_loc = workdir.cache / "propagate" / "todo.parquet"
    kept_loc = workdir.labels / f"kept-{uuid.uuid4().hex[:12]}.parquet"
    try:
        con.execute(
            f"""CREATE TEMP TABLE keep AS
            SELECT l.* FROM read_parquet($labels, union_by_name = true) AS l
            JOIN read_parquet($paragraphs, union_by_name = true) AS p ON p.id = l.id AND l.input_hash = {HASH_SQL}""",
            {"labels": workdir.glob("labels"), "paragraphs": workdir.glob("paragraphs")},
        )
        with tempfile.TemporaryDirectory(prefix="pmc-curate-propagate-") as tmp:
            kept_file, todo_file = Path(tmp) / "kept.parquet", Path(tmp) / "todo.parquet"
            con.execute(f"COPY (SELECT * FROM keep ORDER BY id) TO '{kept_file}' (FORMAT parquet, COMPRESSION zstd)")
            con.execute(
                f"""COPY (SELECT {INPUT_COLUMNS} FROM read_parquet($paragraphs, union_by_name = true) AS p
                          ANTI JOIN keep AS k ON k.id = p.id ORDER BY p.id)
                    TO '{todo_file}' (FORMAT parquet, COMPRESSION zstd)""",
                {"paragraphs": workdir.glob("paragraphs")},
            )
            kept, todo = (con.sql(f"SELECT count(*) FROM '{f}'").fetchall()[0][0] for f in (kept_file, todo_file))
            old = workdir.files("labels")
            kept_loc.write_bytes(kept_file.read_bytes())  # the kept labels are safe before any old file goes
            todo_loc.parent.mkdir()
            todo_loc.write_bytes(todo_file.read_bytes())
    finally:
        con.close()
    for f in old:
        f.unlink()
    log.info("propagate: %d labels kept (same model, same input), %d paragraphs to label", kept, todo)
    return Plan(False, "delta", kept=int(kept), todo=int(todo), input_glob=str(todo_loc))
