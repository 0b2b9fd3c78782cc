"""One Outcome, four shapes: the cache row, the Outcome replayed from it, the annotation row, the reject row.

Shared by the online client (client.py), the batch path (batch*.py) and the annotate stage's routing,
so an annotation or a reject reads the same whichever way its reply came.
"""

from __future__ import annotations

from typing import Any

from pipeline.teacher.config import Outcome
from pipeline.teacher.prompt import Prompt

LABEL_COLUMNS = ("document_type", "domain", "educational_score")


def cache_row(o: Outcome, prompt: Prompt, model: str) -> dict[str, Any]:
    """The `outcomes` row of a finished call (RequestCache.put)."""
    labels = o.labels or {}
    return {
        "prompt_version": prompt.version, "prompt_hash": prompt.hash, "model": model,
        "input_hash": o.input_hash, "paragraph_id": o.item["id"], "status": o.status, "reason": o.reason,
        "detail": o.detail, "raw": o.raw, "document_type": labels.get("document_type"),
        "domain": labels.get("domain"), "educational_score": labels.get("educational_score"),
        "prompt_tokens": o.prompt_tokens, "completion_tokens": o.completion_tokens,
        "latency_s": o.latency_s, "attempts": o.attempts,
    }  # fmt: skip


def outcome_from_cache(item: dict[str, Any], ih: str, row: dict[str, Any]) -> Outcome:
    """A cached call replayed for `item` (free: `cached` is set)."""
    labels = None
    if row["status"] == "annotated":
        labels = {k: row[k] for k in LABEL_COLUMNS}
    return Outcome(item, row["status"], ih, labels=labels, reason=row["reason"], detail=row["detail"],
                   raw=row["raw"], prompt_tokens=row["prompt_tokens"] or 0,
                   completion_tokens=row["completion_tokens"] or 0, latency_s=row["latency_s"] or 0.0,
                   attempts=row["attempts"] or 0, cached=True)  # fmt: skip


def annotation_row(o: Outcome, model: str, prompt_version: str, prompt_hash: str) -> dict[str, Any]:
    """The W/annotations row (record Annotation) of an annotated Outcome."""
    assert o.labels is not None
    item = o.item
    return {
        "id": item["id"], "article_id": item["article_id"], **o.labels, "teacher_model": model,
        "prompt_version": prompt_version, "prompt_hash": prompt_hash, "input_hash": o.input_hash,
        "prompt_tokens": o.prompt_tokens, "completion_tokens": o.completion_tokens,
        "latency_s": float(o.latency_s), "attempts": o.attempts,
    }  # fmt: skip


def reject_row(o: Outcome, stage: str) -> dict[str, Any]:
    """The W/rejects row (record Reject) of a rejected Outcome."""
    pid = o.item["id"]
    return {"source": pid, "stage": stage, "reason": o.reason, "detail": o.detail or "", "record_id": pid, "raw": o.raw}
