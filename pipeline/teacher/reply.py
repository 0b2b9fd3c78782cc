"""Reply validation: one chat completion -> labels, or a RecordError naming why it is unusable."""

from __future__ import annotations

import json
from typing import Any

from pipeline.core.errors import RecordError, RejectReason
from pipeline.core.labels import HEADS

RAW_LIMIT = 2000  # characters of an invalid reply kept in the reject, enough to debug a prompt


def parse_reply(content: str | None, finish_reason: str | None, refusal: str | None = None) -> dict[str, Any]:
    """Validate a reply against the label schema and return {head: value}.

    Raises RecordError with REPLY_TRUNCATED (finish_reason "length"), REFUSED, REPLY_EMPTY,
    REPLY_NOT_JSON or REPLY_SCHEMA; `raw` carries the reply for the reject table.
    """
    raw = (content or "")[:RAW_LIMIT]
    if finish_reason == "length":
        raise RecordError(RejectReason.REPLY_TRUNCATED, "reply cut off at max_tokens (finish_reason=length)", raw)
    if refusal:
        raise RecordError(RejectReason.REFUSED, f"model refused: {refusal[:200]}", raw or refusal[:RAW_LIMIT])
    if content is None or not content.strip():
        raise RecordError(RejectReason.REPLY_EMPTY, "empty reply", raw)
    text = content.strip()
    # Some servers wrap JSON in a markdown fence even in JSON mode; the fence is not content.
    if text.startswith("```"):
        text = text.strip("`")
        text = text[4:] if text.lower().startswith("json") else text
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise RecordError(RejectReason.REPLY_NOT_JSON, f"not JSON: {e.msg} at {e.pos}", raw) from None
    return validate_labels(obj, raw)


def validate_labels(obj: Any, raw: str = "") -> dict[str, Any]:
    """Check a decoded reply against the label schema (exact keys, enum values, integer score in range)."""
    if not isinstance(obj, dict):
        raise RecordError(RejectReason.REPLY_SCHEMA, f"expected a JSON object, got {type(obj).__name__}", raw)
    expected = {h.name for h in HEADS}
    if set(obj) != expected:
        missing = sorted(expected - set(obj))
        extra = sorted(set(obj) - expected)
        raise RecordError(RejectReason.REPLY_SCHEMA, f"keys differ from schema: missing {missing}, extra {extra}", raw)
    out: dict[str, Any] = {}
    for head in HEADS:
        value = obj[head.name]
        if head.kind == "classification":
            if not isinstance(value, str) or value not in head.classes:
                raise RecordError(
                    RejectReason.REPLY_SCHEMA, f"{head.name}={value!r} is not one of {list(head.classes)}", raw
                )
        else:
            if isinstance(value, bool) or not isinstance(value, int):
                raise RecordError(RejectReason.REPLY_SCHEMA, f"{head.name}={value!r} is not an integer", raw)
            if not head.minimum <= value <= head.maximum:  # type: ignore[operator]
                raise RecordError(
                    RejectReason.REPLY_SCHEMA, f"{head.name}={value} outside {head.minimum}..{head.maximum}", raw
                )
        out[head.name] = value
    return out
