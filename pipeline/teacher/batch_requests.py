"""Batch API requests for the sample: one JSONL line per teacher call, the body the online client sends.

A line is the OpenAI Batch API's (and vLLM `run_batch`'s) request format:

    {"custom_id": "v1-3fa9c2d1e0-<input hash>-a0", "method": "POST", "url": "/v1/chat/completions", "body": {...}}

`body` is `prompt.chat_request(...)`, byte for byte what `TeacherClient` POSTs to /chat/completions.

**custom_id** = `<prompt version>-<context>-<input hash>-a<attempt>`:
- the *context* (10 hex digits) hashes prompt version, prompt hash and model, so a results file made
  for another prompt or model is told apart from one made for this run;
- the *input hash* (24 hex digits, `prompt.input_hash` of title, section title and text) is the
  paragraph's part of the cache key: a results line maps back to exactly one cache key, and through
  the sample to its paragraph id(s); a line whose input hash is not in the sample is for another sample;
- the *attempt* continues after paid invalid replies (0 = first ask, 1.. = retries at the prompt's
  retry_temperature), so re-ingesting a file never counts an attempt twice.
One request per cache key, not per paragraph id: two sampled paragraphs with the same inputs are one
call, as the cache makes them. At most 49 ASCII characters, safe for any provider's custom_id rules.

Files are split to the OpenAI limits: 50,000 requests and 200 MB per input file.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from pipeline.core.errors import ConfigError
from pipeline.core.storage import Location
from pipeline.teacher.cache import RequestCache, cache_key
from pipeline.teacher.preflight import CHARS_PER_TOKEN, EST_COMPLETION_TOKENS
from pipeline.teacher.prompt import Prompt, chat_request, input_hash, response_format

ENDPOINT = "/v1/chat/completions"
MAX_REQUESTS_PER_FILE = 50_000  # OpenAI Batch API, per input file
MAX_BYTES_PER_FILE = 200_000_000  # "200 MB"; the decimal reading is the smaller, so always accepted

_CUSTOM_ID_RE = re.compile(r"^([A-Za-z0-9]{1,8})-([0-9a-f]{10})-([0-9a-f]{24})-a(\d{1,3})$")


@dataclass
class BatchConfig:
    """Settings of the batch path (`annotate --batch openai|jsonl`); defaults with their reasons."""

    discount: float = 0.5  # batch price / online price: the OpenAI Batch API bills half (FACTS.md 3d)
    max_requests_per_file: int = MAX_REQUESTS_PER_FILE
    max_bytes_per_file: int = MAX_BYTES_PER_FILE
    completion_window: str = "24h"  # the only window the Batch API offers
    poll_s: float = 30.0  # first wait between polls, x1.5 per poll up to poll_max_s: a batch takes minutes to hours
    poll_max_s: float = 600.0
    max_wait_s: float | None = None  # stop polling after this long (exit resumable; the batches keep running)
    max_rounds: int = 5  # submissions per run: the first, retries of invalid replies (2 at most) and resubmits
    max_resubmits: int = 2  # per call and run, after an expiry, a missing result or a retryable error line


def context_tag(prompt: Prompt, model: str) -> str:
    """10 hex digits naming (prompt version, prompt hash, model): the part of a custom_id shared by a whole run."""
    return hashlib.sha256(json.dumps([prompt.version, prompt.hash, model]).encode()).hexdigest()[:10]


def _version_tag(version: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "", version)[:8] or "v"


@dataclass(frozen=True)
class CustomId:
    """A parsed custom_id."""

    version: str
    context: str
    input_hash: str
    attempt: int

    def __str__(self) -> str:
        return f"{self.version}-{self.context}-{self.input_hash}-a{self.attempt}"

    @classmethod
    def parse(cls, text: Any) -> CustomId | None:
        """The custom_id's parts, or None when it is not one this project writes."""
        m = _CUSTOM_ID_RE.match(text) if isinstance(text, str) else None
        return cls(m.group(1), m.group(2), m.group(3), int(m.group(4))) if m else None


@dataclass
class SampleIndex:
    """The sample seen by the batch path: paragraphs grouped by input hash, each hash one cache key."""

    prompt: Prompt
    model: str
    context: str
    items: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # input hash -> paragraphs (sample order)

    @classmethod
    def build(cls, items: Iterable[dict[str, Any]], prompt: Prompt, model: str) -> SampleIndex:
        index = cls(prompt, model, context_tag(prompt, model))
        for item in items:
            ih = input_hash(item.get("title"), item.get("section_title"), item["text"])
            index.items.setdefault(ih, []).append(item)
        return index

    def key(self, ih: str) -> str:
        """The request-cache key of an input hash (cache.cache_key, as the online client computes it)."""
        return cache_key(self.prompt.version, self.prompt.hash, self.model, ih)

    def custom_id(self, ih: str, attempt: int) -> str:
        return str(CustomId(_version_tag(self.prompt.version), self.context, ih, attempt))

    def why_foreign(self, cid: CustomId | None) -> str | None:
        """None when the custom_id is a request of this sample, prompt and model; else why it is not."""
        if cid is None:
            return "not a custom_id pmc-curate writes"
        if cid.context != self.context or cid.version != _version_tag(self.prompt.version):
            return f"made for another prompt or model (context {cid.version}-{cid.context}, this run {self.context})"
        if cid.input_hash not in self.items:
            return "for a paragraph that is not in this sample (another sample, or its text changed)"
        if cid.attempt >= self.prompt.max_reply_attempts:
            return f"attempt {cid.attempt} is past the prompt's max_reply_attempts"
        return None

    def __len__(self) -> int:
        return sum(len(v) for v in self.items.values())


@dataclass(frozen=True)
class BatchRequest:
    """One line of a request file."""

    custom_id: str
    input_hash: str
    attempt: int
    line: bytes  # the JSONL line, newline included
    est_prompt_tokens: int
    est_completion_tokens: int


def request_line(custom_id: str, body: dict[str, Any]) -> bytes:
    """A Batch API input line."""
    return (json.dumps({"custom_id": custom_id, "method": "POST", "url": ENDPOINT, "body": body},
                       ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")  # fmt: skip


def pending_requests(index: SampleIndex, cache: RequestCache, exclude: Collection[str] = ()) -> list[BatchRequest]:
    """A request for every input hash of the sample without a finished call in the cache (nor in `exclude`).

    Each continues at the attempt after its paid invalid replies (the cache's `attempts` table), with
    the body the online client would send for that attempt. Input hashes whose attempts are all spent
    are left out: `batch_results.settle_exhausted` turns them into rejects, as the online client does.
    """
    fmt = response_format()
    skip = set(exclude)
    todo = [ih for ih in index.items if ih not in skip]
    done = cache.has_many([index.key(ih) for ih in todo])
    out = []
    est_out = min(EST_COMPLETION_TOKENS, index.prompt.max_tokens)
    for ih in todo:
        key = index.key(ih)
        if key in done:
            continue
        attempt = len(cache.attempts(key))
        if attempt >= index.prompt.max_reply_attempts:
            continue
        item = index.items[ih][0]
        messages = index.prompt.messages(item.get("title"), item.get("section_title"), item["text"])
        body = chat_request(index.prompt, index.model, messages, attempt, fmt)
        cid = index.custom_id(ih, attempt)
        est_in = int(sum(len(m["content"]) for m in messages) / CHARS_PER_TOKEN) + 4 * len(messages)  # as preflight.estimate
        out.append(BatchRequest(cid, ih, attempt, request_line(cid, body), est_in, est_out))
    return out


def split_requests(requests: list[BatchRequest], max_requests: int = MAX_REQUESTS_PER_FILE,
                   max_bytes: int = MAX_BYTES_PER_FILE) -> list[list[BatchRequest]]:  # fmt: skip
    """Consecutive groups of requests, each within the per-file limits (request count and bytes)."""
    if max_requests < 1 or max_bytes < 1:
        raise ConfigError("batch file limits must be at least 1 request and 1 byte")
    parts: list[list[BatchRequest]] = []
    current: list[BatchRequest] = []
    size = 0
    for r in requests:
        if len(r.line) > max_bytes:
            raise ConfigError(f"request {r.custom_id} is {len(r.line)} bytes, over the {max_bytes}-byte file limit")
        if current and (len(current) >= max_requests or size + len(r.line) > max_bytes):
            parts.append(current)
            current, size = [], 0
        current.append(r)
        size += len(r.line)
    if current:
        parts.append(current)
    return parts


def jsonl_bytes(part: list[BatchRequest]) -> bytes:
    return b"".join(r.line for r in part)


def write_request_files(parts: list[list[BatchRequest]], folder: Location, stem: str) -> list[Location]:
    """Write each part as `<stem>-NNNNN-of-MMMMM.jsonl` in `folder` (local or object store; one PUT each)."""
    folder.mkdir()
    out = []
    for i, part in enumerate(parts):
        loc = folder / f"{stem}-{i:05d}-of-{len(parts):05d}.jsonl"
        loc.write_bytes(jsonl_bytes(part))
        out.append(loc)
    return out
