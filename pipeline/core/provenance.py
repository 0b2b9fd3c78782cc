"""Provenance: who and what made an artifact's labels, with which software, from which data.

One record, built here and nowhere else, goes into every artifact that carries labels or figures
about them: a subset's manifest.json and dataset card, the corpus report (index.md, stats.json),
the classifier report (classifier.md, classifier_metrics.json) and the label tables' Parquet schema
metadata (key PROVENANCE_KEY). It names

- the tool: pmc-curate's version and, when run from a git checkout, the commit (+ "-dirty");
- the teacher(s): model, endpoint kind, prompt version and hash, from W/annotations (rows and metadata);
- the student(s): the `model_id` of W/labels rows; imported labels by their `model_id` too;
- the PMC snapshot and the recipe hash, where the caller knows them.

When a stand-in (the offline 135M demo model) or a heuristic (the keyword rule teacher) made the
labels, `stand_in` says so in one sentence, and every artifact puts that sentence in its first lines.
Paths in artifacts are relative to the work directory (`relative`): nothing local gets published.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pipeline import __version__

PROVENANCE_KEY = "pmc_curate.provenance"  # Parquet schema metadata key of the label tables
OFFLINE_TEACHER = "SmolLM2-135M-Instruct"  # pipeline.teacher.local serves it when no --base-url is given
RULE_TEACHER = "rule-teacher-v1"  # pipeline.teacher.rules (tests and benchmarks)
RULE_SERVER_MODEL = "pmc-curate-rule-teacher-v1 (keyword rules, not an LLM)"  # pipeline.teacher.rule_server
# model -> what it is, for the warning every artifact opens with
STAND_INS = {
    OFFLINE_TEACHER: "a stand-in teacher (the offline 135M-parameter demo model, far below the paper's "
                     "Llama-3.1-70B)",
    RULE_TEACHER: "a heuristic teacher (keyword rules, not an LLM)",
    RULE_SERVER_MODEL: "a heuristic teacher (keyword rules, not an LLM)",
}
ENDPOINT_KINDS = ("offline local teacher", "rule teacher", "local OpenAI-compatible endpoint",
                  "remote OpenAI-compatible endpoint", "OpenAI Batch API", "JSONL batch (vLLM run_batch)")
_REPO = Path(__file__).resolve().parents[2]


@functools.cache
def git_commit(root: Path = _REPO) -> str | None:
    """HEAD of the checkout pmc-curate runs from (+ "-dirty" with uncommitted changes); None when it
    is an installed package, git is missing or the folder is not a checkout."""
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("-dirty" if dirty else "") if head else None


def tool() -> dict[str, Any]:
    """{"name", "version", "git_commit"}."""
    return {"name": "pmc-curate", "version": __version__, "git_commit": git_commit()}


def endpoint_kind(base_url: str, model: str, batch: str | None = None) -> str:
    """One of ENDPOINT_KINDS for a teacher at `base_url` (no host or key is recorded)."""
    if batch == "openai":
        return "OpenAI Batch API"
    if batch == "jsonl":
        return "JSONL batch (vLLM run_batch)"
    if model == OFFLINE_TEACHER:
        return "offline local teacher"
    if model in (RULE_TEACHER, RULE_SERVER_MODEL):
        return "rule teacher"
    host = urlparse(base_url).hostname or ""
    local = host in ("127.0.0.1", "localhost", "::1")
    return "local OpenAI-compatible endpoint" if local else "remote OpenAI-compatible endpoint"


def teacher_record(model: str, base_url: str, prompt_version: str, prompt_hash: str, batch: str | None = None) -> dict[str, Any]:
    """What annotate writes into W/annotations' Parquet metadata."""
    return {"model": model, "endpoint_kind": endpoint_kind(base_url, model, batch),
            "prompt_version": prompt_version, "prompt_hash": prompt_hash}


def parquet_metadata(record: dict[str, Any]) -> dict[str, str]:
    """Schema metadata of a label table: {PROVENANCE_KEY: JSON}."""
    return {PROVENANCE_KEY: json.dumps(record, sort_keys=True)}


def read_parquet_provenance(files: Sequence[Any], limit: int = 64) -> list[dict[str, Any]]:
    """The distinct provenance records in the schema metadata of (up to `limit` of) `files`."""
    from pipeline.core import storage

    seen: dict[str, dict[str, Any]] = {}
    for f in list(files)[:limit]:
        meta = storage.read_parquet_metadata(f).schema.to_arrow_schema().metadata or {}
        raw = meta.get(PROVENANCE_KEY.encode())
        if raw:
            seen.setdefault(raw.decode(), json.loads(raw))
    return list(seen.values())


def _distinct(wd: Any, table: str, columns: str) -> list[tuple]:
    from pipeline.core import storage

    files = wd.files(table)
    if not files:
        return []
    con = storage.duckdb_connect(threads=2)
    try:
        src = [str(f) for f in files]
        cols = {r[0] for r in con.sql("DESCRIBE SELECT * FROM read_parquet($f)", params={"f": src}).fetchall()}
        wanted = [c.strip() for c in columns.split(",")]
        sel = ", ".join(c if c in cols else f"NULL AS {c}" for c in wanted)
        return con.sql(f"SELECT {sel}, count(*) FROM read_parquet($f) GROUP BY ALL ORDER BY count(*) DESC",
                       params={"f": src}).fetchall()
    finally:
        con.close()


def teachers(wd: Any) -> list[dict[str, Any]]:
    """The teachers behind W/annotations: model, prompt version and hash (rows), endpoint kind (metadata)."""
    kinds = {r.get("model"): r.get("endpoint_kind") for r in read_parquet_provenance(wd.files("annotations"))}
    out = []
    for m, v, h, n in _distinct(wd, "annotations", "teacher_model, prompt_version, prompt_hash"):
        kind = kinds.get(m) or (endpoint_kind("", m) if m in STAND_INS else None)  # None: written before this was recorded
        out.append({"model": m, "endpoint_kind": kind, "prompt_version": v, "prompt_hash": h, "paragraphs": int(n)})
    return out


def models(wd: Any, table: str) -> list[dict[str, Any]]:
    """The `model_id`s of a label table (labels: the student; labels_imported: the import) with row counts."""
    return [{"model_id": m, "paragraphs": int(n)} for m, n in _distinct(wd, table, "model_id")]


def stand_in(teacher_list: Sequence[dict[str, Any]]) -> str | None:
    """The warning sentence when a stand-in or heuristic teacher made (some of) the labels."""
    hits = [t for t in teacher_list if t.get("model") in STAND_INS]
    if not hits:
        return None
    names = "; ".join(f"{t['model']}: {STAND_INS[t['model']]}, {t.get('paragraphs', '?')} paragraphs" for t in hits)
    return (f"STAND-IN LABELS: these labels come from {names}. They show that the pipeline runs, not what "
            "the paragraphs are; do not train or publish on them.")


def collect(wd: Any, labels_source: str = "labels", **extra: Any) -> dict[str, Any]:
    """The provenance record of an artifact built from W's `labels_source` labels (see the module
    docstring); `extra` (recipe_sha256, pmc_snapshot, student_model_id, ...) is added as given."""
    tables = {"labels": ("labels",), "annotations": (), "imported": ("labels_imported",),
              "merged": ("labels_imported", "labels")}.get(labels_source, ())
    teacher_list = teachers(wd)
    record: dict[str, Any] = {
        "tool": tool(),
        "labels_source": labels_source,
        "teachers": teacher_list,
        "students": models(wd, "labels") if "labels" in tables else [],
        "imported": models(wd, "labels_imported") if "labels_imported" in tables else [],
    }
    record.update(extra)
    record["stand_in"] = stand_in(teacher_list)
    return record


def summary_line(record: dict[str, Any]) -> str:
    """One line: tool, teacher(s), student(s), snapshot, recipe."""
    t = record["tool"]
    commit = t.get("git_commit")
    short = commit and commit[:12] + ("-dirty" if commit.endswith("-dirty") else "")
    parts = [f"pmc-curate {t['version']}" + (f" (commit {short})" if short else "")]
    teach = ", ".join(f"{x['model']} via {x.get('endpoint_kind') or 'unknown endpoint'}, prompt {x['prompt_version']} "
                      f"(sha {str(x['prompt_hash'] or '-')[:12]})" for x in record["teachers"])
    parts.append(f"teacher: {teach or 'none recorded in W/annotations'}")
    if record.get("students") or record.get("student_model_id"):
        ids = [s["model_id"] for s in record.get("students", [])] or [record["student_model_id"]]
        parts.append("student: " + ", ".join(f"`{i}`" for i in ids))
    if record.get("imported"):
        parts.append("imported: " + ", ".join(f"`{i['model_id']}`" for i in record["imported"]))
    if "pmc_snapshot" in record:
        parts.append(f"PMC snapshot: {record['pmc_snapshot'] or 'unknown'}")
    if record.get("recipe_sha256"):
        parts.append(f"recipe sha256 {record['recipe_sha256'][:16]}")
    return "; ".join(parts)


def header_lines(record: dict[str, Any]) -> list[str]:
    """The first lines of a Markdown artifact: the stand-in warning (when there is one), then provenance."""
    lines = [f"> **{record['stand_in']}**", ""] if record.get("stand_in") else []
    return [*lines, f"Provenance: {summary_line(record)}.", ""]


def relative(path: Any, wd: Any) -> str:
    """`path` relative to the work directory W ("W/..."); a path outside W keeps only its file name."""
    p, root = str(path), str(wd.root)
    if p == root:
        return "W"
    if p.startswith(root.rstrip("/") + "/"):
        return "W/" + p[len(root.rstrip("/")) + 1 :]
    return os.path.basename(p.rstrip("/"))
