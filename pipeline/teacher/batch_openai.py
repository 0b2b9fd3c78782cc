"""The OpenAI Batch API through the official `openai` client: upload, create, poll, download.

    files.create(purpose="batch") -> file_id        saved in the part's state file at once
    batches.create(endpoint="/v1/chat/completions", completion_window="24h",
                   metadata={"pmc_curate_part": name}) -> batch_id   saved at once
    batches.retrieve(batch_id) until completed | failed | expired | cancelled (backoff x1.5 up to poll_max_s)
    files.content(output_file_id), files.content(error_file_id) -> batch_results.Ingester

Every id reaches the work directory (batch_state.py) before the next call, so a killed run, here or
on another machine, polls the same batches instead of paying for them again. The key comes from the
environment only (config.resolve_api_key), as for the online client.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import openai

from pipeline.core import secrets
from pipeline.core.errors import ConfigError
from pipeline.teacher.batch_requests import ENDPOINT, BatchConfig, BatchRequest, SampleIndex, jsonl_bytes
from pipeline.teacher.batch_state import BatchPart, BatchStore
from pipeline.teacher.config import TeacherConfig, resolve_api_key

log = logging.getLogger(__name__)

T = TypeVar("T")
METADATA_KEY = "pmc_curate_part"
ADOPT_LOOKBACK_S = 3600.0  # batches listed newest first: stop looking this long before the part was uploaded


class OpenAIBatches:
    """Submits parts, follows them to a terminal status and downloads their results; state in `store`."""

    def __init__(self, teacher: TeacherConfig, store: BatchStore, config: BatchConfig,
                 client: openai.OpenAI | None = None, sleep: Callable[[float], None] = time.sleep) -> None:  # fmt: skip
        self.teacher, self.store, self.config, self.sleep = teacher, store, config, sleep
        for name in ("openai", "httpx", "httpcore", "httpx2"):  # request options are logged at DEBUG: nothing near a key
            logging.getLogger(name).setLevel(logging.WARNING)
        # The client's own retries (with its backoff and Retry-After) for these few control-plane calls.
        self._own = client is None
        self.client = client or openai.OpenAI(api_key=resolve_api_key(teacher.api_key_env), base_url=teacher.base_url,
                                              max_retries=5, timeout=max(teacher.timeout_s, 600.0))  # fmt: skip
        self.polls = 0

    def close(self) -> None:
        """Close the HTTP client (when this object made it)."""
        if self._own:
            self.client.close()

    def _api(self, what: str, call: Callable[[], T]) -> T:
        """One API call; what the caller should do is in the error: fix the setup, or run again to resume."""
        try:
            return call()
        except (openai.AuthenticationError, openai.PermissionDeniedError) as e:
            raise ConfigError(f"{what}: {self.teacher.base_url} refused the credentials (HTTP {e.status_code}); "
                              "check OPENAI_API_KEY") from None  # fmt: skip
        except openai.APIStatusError as e:
            msg = secrets.redact(str(getattr(e, "message", e)))[:300]
            raise ConfigError(f"{what}: HTTP {e.status_code}: {msg}; the batch state in {self.store.root} is kept, "
                              "run again to resume") from None  # fmt: skip
        except openai.APIConnectionError as e:
            raise ConfigError(f"{what}: cannot reach {self.teacher.base_url} ({type(e.__cause__ or e).__name__}); "
                              f"the batch state in {self.store.root} is kept, run again to resume") from None  # fmt: skip

    # ---- submit -------------------------------------------------------------------------------
    def submit(self, index: SampleIndex, requests: list[BatchRequest], est_cost: float) -> BatchPart:
        """Upload one request file and create its batch; the state file is written after each step."""
        name = BatchPart.new_name(index.context)
        data = jsonl_bytes(requests)
        f = self._api("upload of a batch file",
                      lambda: self.client.files.create(file=(f"{name}.jsonl", data, "application/jsonl"), purpose="batch"))
        part = BatchPart(name=name, context=index.context, prompt_version=index.prompt.version,
                         prompt_hash=index.prompt.hash, model=index.model, created=time.time(),
                         n_requests=len(requests), n_bytes=len(data), est_cost=est_cost,
                         custom_ids=[r.custom_id for r in requests], file_id=f.id)  # fmt: skip
        self.store.save(part)
        self._create(part)
        log.info("batch %s submitted: %d requests, %.1f MB (file %s)", part.batch_id, part.n_requests,
                 part.n_bytes / 1e6, part.file_id)  # fmt: skip
        return part

    def _create(self, part: BatchPart) -> None:
        assert part.file_id is not None
        file_id = part.file_id
        batch = self._api("batch creation", lambda: self.client.batches.create(
            input_file_id=file_id, endpoint=ENDPOINT, completion_window=self.config.completion_window,  # type: ignore[arg-type]
            metadata={METADATA_KEY: part.name}))  # fmt: skip
        self._update(part, batch)

    def adopt(self, part: BatchPart) -> None:
        """A part uploaded but with no batch id saved: the batch created for it if there is one, else a new one."""
        found = None
        for b in self._api("listing batches", lambda: self.client.batches.list(limit=100)):
            if (b.metadata or {}).get(METADATA_KEY) == part.name or b.input_file_id == part.file_id:
                found = b
                break
            if b.created_at < part.created - ADOPT_LOOKBACK_S:
                break
        if found is not None:
            log.info("part %s: found its batch %s (created before the last run stopped)", part.name, found.id)
            self._update(part, found)
        else:
            self._create(part)

    # ---- follow -------------------------------------------------------------------------------
    def _update(self, part: BatchPart, batch: Any) -> bool:
        """Copy what the provider says about the batch into the part; save it when anything changed."""
        counts = batch.request_counts.model_dump() if getattr(batch, "request_counts", None) is not None else {}
        errors = [f"{e.code}: {e.message}" + (f" (line {e.line})" if e.line is not None else "")
                  for e in ((batch.errors.data or []) if getattr(batch, "errors", None) else [])]  # fmt: skip
        new = dict(batch_id=batch.id, status=batch.status, output_file_id=batch.output_file_id,
                   error_file_id=batch.error_file_id, errors=errors, request_counts=counts)  # fmt: skip
        changed = any(getattr(part, k) != v for k, v in new.items())
        if changed:
            for k, v in new.items():
                setattr(part, k, v)
            self.store.save(part)
        return changed

    def refresh(self, part: BatchPart) -> bool:
        """Poll one batch; True when its state changed."""
        assert part.batch_id is not None
        batch_id = part.batch_id
        self.polls += 1
        return self._update(part, self._api("polling a batch", lambda: self.client.batches.retrieve(batch_id)))

    def wait(self, parts: list[BatchPart], deadline: float | None = None) -> bool:
        """Poll until every part is terminal (True) or the deadline passed (False)."""
        delay = self.config.poll_s
        while True:
            for p in parts:
                if not p.terminal and self.refresh(p):
                    c = p.request_counts
                    log.info("batch %s: %s (%s/%s done, %s failed)", p.batch_id, p.status, c.get("completed", "?"),
                             c.get("total", "?"), c.get("failed", "?"))  # fmt: skip
            if all(p.terminal for p in parts):
                return True
            if deadline is not None and time.monotonic() + delay > deadline:
                return False
            self.sleep(delay)
            delay = min(delay * 1.5, self.config.poll_max_s)

    def download(self, part: BatchPart) -> list[tuple[str, bytes]]:
        """The part's output and error files: [(name, bytes)]."""
        out = []
        for kind, fid in (("output", part.output_file_id), ("error", part.error_file_id)):
            if fid:
                data = self._api(f"download of the {kind} file {fid}", lambda f=fid: self.client.files.content(f).read())  # type: ignore[misc]
                out.append((f"{part.batch_id}:{kind}", data))
        return out
