"""What has been submitted to a batch API, kept in the work directory the moment it exists.

One small JSON file per submitted request file ("part"):

    W/cache/batches/<context>-<ms>-<token>.json

written whole (one PUT on s3:// and gs://, an atomic rename locally) at every step: after the upload
(`file_id`), after the batch was created (`batch_id`), when polling sees a new status, and after its
results were ingested and checkpointed (`ingested`). A killed annotate, here or on a fresh machine,
reads these files and polls the same batches instead of submitting again. The one window with no
file yet, between `batches.create` and the write of its id, is closed by the batch's metadata: a part
with a `file_id` and no `batch_id` is first looked up among the account's batches (`pmc_curate_part`
= its name) before a batch is created for it.

Fields: name, context (batch_requests.context_tag), prompt_version, prompt_hash, model, created
(unix s), n_requests, n_bytes, est_cost (USD at the batch price), custom_ids (what the part asks,
so missing results are known), file_id, batch_id, status (the provider's: validating, in_progress,
finalizing, completed, failed, expired, cancelling, cancelled; "uploaded" before the batch exists),
output_file_id, error_file_id, errors (the provider's batch-level errors), request_counts, ingested.
No key, no header, no paragraph text.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import secrets as pysecrets
import time
from dataclasses import dataclass, field
from typing import Any

from pipeline.core.storage import Location

log = logging.getLogger(__name__)

TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})


@dataclass
class BatchPart:
    """One request file submitted as one batch, and how far it got."""

    name: str
    context: str
    prompt_version: str
    prompt_hash: str
    model: str
    created: float
    n_requests: int
    n_bytes: int
    est_cost: float
    custom_ids: list[str]
    file_id: str | None = None
    batch_id: str | None = None
    status: str = "uploaded"
    output_file_id: str | None = None
    error_file_id: str | None = None
    errors: list[str] = field(default_factory=list)
    request_counts: dict[str, int] = field(default_factory=dict)
    ingested: bool = False

    @staticmethod
    def new_name(context: str) -> str:
        """Unique and sortable by time: `<context>-<ms>-<random>`."""
        return f"{context}-{int(time.time() * 1000):013d}-{pysecrets.token_hex(3)}"

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


class BatchStore:
    """The part files of a work directory (`W/cache/batches/`)."""

    def __init__(self, root: Location) -> None:
        self.root = root

    def _loc(self, name: str) -> Location:
        return self.root / f"{name}.json"

    def save(self, part: BatchPart) -> None:
        """Write the part's file whole (readers see the old one or the new one)."""
        self._loc(part.name).write_text(json.dumps(dataclasses.asdict(part), sort_keys=True))

    def load(self, name: str) -> BatchPart:
        return _part(json.loads(self._loc(name).read_text()))

    def parts(self, context: str | None = None) -> list[BatchPart]:
        """Every part (of one context), oldest first. An unreadable file is skipped with a warning."""
        if not self.root.exists():
            return []
        out = []
        for loc in sorted(self.root.glob("*.json")):
            if context is not None and not loc.name.startswith(f"{context}-"):
                continue
            try:
                out.append(_part(json.loads(loc.read_text())))
            except (ValueError, TypeError, KeyError) as e:
                log.warning("skipping unreadable batch state %s: %s", loc, e)
        return out


def _part(obj: dict[str, Any]) -> BatchPart:
    known = {f.name for f in dataclasses.fields(BatchPart)}
    return BatchPart(**{k: v for k, v in obj.items() if k in known})
