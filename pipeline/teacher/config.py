"""What the teacher client is configured with (TeacherConfig) and what it returns per paragraph (Outcome),
with the errors and the API-key rule it shares with the batch path."""

from __future__ import annotations

import email.utils
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pipeline.teacher.checkpoint import DEFAULT_EVERY, DEFAULT_SECONDS

LOCAL_PLACEHOLDER_KEY = "not-needed-for-local-endpoints"  # openai requires a non-empty key; never a secret


@dataclass
class TeacherConfig:
    """Settings of the annotate stage's client; CLI flags map one-to-one onto these fields."""

    base_url: str
    model: str
    cache_path: str
    prompt_version: str = "v1"
    concurrency: int = 16  # in-flight requests per worker; vLLM/SGLang batch them server-side
    timeout_s: float = 120.0  # per request, as NeMo Curator's async client
    max_transport_attempts: int = 6  # 429/5xx/timeouts/broken connections, then reject endpoint_error
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    price_in: float = 0.0  # USD per million prompt tokens
    price_out: float = 0.0  # USD per million completion tokens
    max_cost: float | None = None  # USD of new calls in this run; None = unlimited
    progress: bool = True
    total: int | None = None  # paragraphs this run will see, for the progress bar
    api_key_env: str = "OPENAI_API_KEY"
    est_prompt_tokens: int = 0  # expected tokens of one call, reserved against max_cost while in flight
    est_completion_tokens: int = 0
    max_reject_rate: float = 0.5  # stop calling when more than this share of new calls end rejected ...
    reject_rate_min_calls: int = 50  # ... once at least this many have finished: a run going wrong stops early
    checkpoint_dir: str = ""  # W/cache/teacher on the work directory's store; "" = the local SQLite only
    checkpoint_every: int = DEFAULT_EVERY  # at most this many finished calls only on local disk ...
    checkpoint_seconds: float = DEFAULT_SECONDS  # ... or only for this long (pipeline/teacher/checkpoint.py)

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """USD for a number of tokens at the user's prices."""
        return (prompt_tokens * self.price_in + completion_tokens * self.price_out) / 1e6


@dataclass
class Outcome:
    """What became of one paragraph: annotated, rejected (with reason), or skipped (budget/fatal)."""

    item: dict[str, Any]
    status: str  # "annotated" | "rejected" | "skipped"
    input_hash: str
    labels: dict[str, Any] | None = None
    reason: str | None = None
    detail: str | None = None
    raw: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    attempts: int = 0
    cached: bool = False


@dataclass
class RunStats:
    """Counters shown on the progress bar and returned to the driver."""

    done: int = 0
    cached: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    requests: int = 0
    retries: Counter = field(default_factory=Counter)  # transport failures by kind (429, 5xx, timeout, ...)
    invalid: Counter = field(default_factory=Counter)  # invalid replies by reason
    status: Counter = field(default_factory=Counter)


class EndpointFailure(Exception):
    """The endpoint could not give a reply for this paragraph (after retries, or a non-retryable 4xx)."""


class FatalEndpointError(Exception):
    """Every call would fail the same way (bad key, unknown model): stop calling."""


def retry_after_s(headers: Any) -> float | None:
    """Seconds from a Retry-After (seconds or HTTP date) or retry-after-ms header."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def resolve_api_key(env: str = "OPENAI_API_KEY") -> str:
    """The API key from the environment only (never a flag: flags end up in shell history and logs).

    An empty `env` means "send no key" (the project's own local teacher must not receive the user's key).
    """
    return (os.environ.get(env) if env else None) or LOCAL_PLACEHOLDER_KEY
