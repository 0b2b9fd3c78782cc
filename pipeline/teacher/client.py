"""The teacher client: bounded-concurrency async calls through the official `openai` client.

One `TeacherClient` per worker process owns an asyncio event loop on a background thread, an
`AsyncOpenAI` client (its own retries off: ours honour Retry-After and count), the request cache
and the budget. `annotate_many(items)` is synchronous so Beam's ModelHandler can call it per batch.

Per call: cache hit -> replay for free; else, under the semaphore, call with jittered exponential
backoff on 429/5xx/timeouts/broken connections; validate the reply; an invalid reply (cut off,
empty, not JSON, outside the schema) is committed as a paid attempt and retried up to the prompt's
`max_reply_attempts`, then becomes a cached reject with its reason and raw reply.
"""

from __future__ import annotations

import asyncio
import logging
import random
import sys
import threading
import time
from typing import Any

import openai
from openai.types.chat import ChatCompletion

from pipeline.core.errors import RecordError, RejectReason
from pipeline.teacher.cache import CachedAttempt, RequestCache, cache_key
from pipeline.teacher.checkpoint import Checkpointer
from pipeline.teacher.config import (
    EndpointFailure,
    FatalEndpointError,
    Outcome,
    RunStats,
    TeacherConfig,
    resolve_api_key,
    retry_after_s,
)
from pipeline.teacher.prompt import Prompt, chat_request, input_hash, response_format
from pipeline.teacher.reply import parse_reply
from pipeline.teacher.rows import cache_row, outcome_from_cache

log = logging.getLogger(__name__)

CONNECTIONS_PER_CLIENT = 16


class TeacherClient:
    """Async OpenAI-protocol client with cache, retries, budget and progress; sync facade per batch."""

    def __init__(self, config: TeacherConfig, prompt: Prompt) -> None:
        self.config = config
        self.prompt = prompt
        self.cache = RequestCache(config.cache_path)
        self.checkpoints: Checkpointer | None = None
        if config.checkpoint_dir:
            # Wherever this client runs (driver or Beam worker): start from every call checkpointed so far.
            self.checkpoints = Checkpointer.shared(config.cache_path, config.checkpoint_dir, config.checkpoint_every,
                                                   config.checkpoint_seconds)  # fmt: skip
            self.checkpoints.import_shards()
        self.stats = RunStats()
        self.fatal: str | None = None
        self.budget_exhausted = False
        self._new_done = 0
        self._new_rejected = 0
        self._reserved = 0.0
        self._est_call_cost = config.cost(config.est_prompt_tokens, config.est_completion_tokens)
        # The client library logs request options at DEBUG; keep it quiet so nothing near a key is logged.
        for name in ("openai", "httpx", "httpcore", "httpx2"):
            logging.getLogger(name).setLevel(logging.WARNING)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="teacher-loop", daemon=True)
        self._thread.start()
        self._sem: asyncio.Semaphore | None = None
        self._response_format = response_format()
        self._clients: list[openai.AsyncOpenAI] = []
        self._next_client = 0
        asyncio.run_coroutine_threadsafe(self._setup(), self._loop).result()
        self._bar = None
        if config.progress:
            from tqdm import tqdm

            self._bar = tqdm(total=config.total, unit="par", desc=f"annotate {config.model}", file=sys.stderr, smoothing=0.1)

    async def _setup(self) -> None:
        self._sem = asyncio.Semaphore(self.config.concurrency)
        # Several clients, each with its own connection pool: the pool scans every connection on each
        # request (has_expired -> a readability poll per socket), so per-request CPU grows with pool
        # size; pools of <= CONNECTIONS_PER_CLIENT keep it flat at high concurrency (profiled).
        n = max(1, -(-self.config.concurrency // CONNECTIONS_PER_CLIENT))
        self._clients = [
            openai.AsyncOpenAI(
                api_key=resolve_api_key(self.config.api_key_env),
                base_url=self.config.base_url,
                max_retries=0,
                timeout=self.config.timeout_s,
            )
            for _ in range(n)
        ]

    # ---- public -------------------------------------------------------------------------------
    def annotate_many(self, items: list[dict[str, Any]]) -> list[Outcome]:
        """Annotate a batch concurrently (bounded by `concurrency`); results in input order."""

        async def gather() -> list[Outcome]:
            return list(await asyncio.gather(*(self._one(it) for it in items)))

        return asyncio.run_coroutine_threadsafe(gather(), self._loop).result()

    def checkpoint(self) -> None:
        """Write the finished calls not yet checkpointed to the work directory now (end of a bundle)."""
        if self.checkpoints is not None:
            try:
                self.checkpoints.flush()
            except Exception as e:  # the background thread retries; the driver's final flush reports
                log.warning("checkpoint to %s failed: %s", self.checkpoints.store, type(e).__name__)

    def close(self) -> None:
        """Close the HTTP client, the loop thread, the cache and the progress bar (after a last checkpoint)."""
        self.checkpoint()
        for client in self._clients:
            asyncio.run_coroutine_threadsafe(client.close(), self._loop).result()
        self._clients = []
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self.cache.close()
        if self._bar is not None:
            self._bar.close()

    # ---- one paragraph ------------------------------------------------------------------------
    async def _one(self, item: dict[str, Any]) -> Outcome:
        title, section, text = item.get("title"), item.get("section_title"), item["text"]
        ih = input_hash(title, section, text)
        key = cache_key(self.prompt.version, self.prompt.hash, self.config.model, ih)
        hit = self.cache.get(key)
        if hit is not None:
            return self._finish(self._from_cache(item, ih, hit), cached=True)
        if self.fatal or self.budget_exhausted:
            return self._finish(Outcome(item, "skipped", ih, reason="fatal" if self.fatal else "budget"))
        assert self._sem is not None
        async with self._sem:
            await self._checkpoint_room()
            if self.fatal or not self._reserve():
                return self._finish(Outcome(item, "skipped", ih, reason="fatal" if self.fatal else "budget"))
            try:
                outcome = await self._call_until_valid(item, ih, key)
            finally:
                self._reserved -= self._est_call_cost
        return self._finish(outcome)

    async def _checkpoint_room(self) -> None:
        """Start no call while a whole checkpoint interval of finished calls is only on local disk."""
        cp = self.checkpoints
        if cp is None:
            return
        while not cp.has_room() and not cp.failed and not self.fatal:
            await asyncio.sleep(0.01)
        if cp.failed and not self.fatal:
            self.fatal = cp.failed
            log.error("stopping calls: %s", cp.failed)

    def _put(self, key: str, outcome: Outcome) -> None:
        self.cache.put(key, self._cache_row(outcome))
        if self.checkpoints is not None:
            self.checkpoints.finished(key)

    def _reserve(self) -> bool:
        if self.config.max_cost is None:
            self._reserved += self._est_call_cost
            return True
        if self.stats.cost + self._reserved + self._est_call_cost > self.config.max_cost:
            if not self.budget_exhausted:
                log.warning("budget of $%.4f reached: no new calls; run again with a higher --max-cost to resume", self.config.max_cost)
            self.budget_exhausted = True
            return False
        self._reserved += self._est_call_cost
        return True

    async def _call_until_valid(self, item: dict[str, Any], ih: str, key: str) -> Outcome:
        pid = item["id"]
        prior = self.cache.attempts(key)
        tokens_in = sum(a.prompt_tokens or 0 for a in prior)
        tokens_out = sum(a.completion_tokens or 0 for a in prior)
        latency = sum(a.latency_s or 0.0 for a in prior)
        n = len(prior)
        last = prior[-1] if prior else None
        messages = self.prompt.messages(item.get("title"), item.get("section_title"), item["text"])
        while n < self.prompt.max_reply_attempts:
            try:
                resp, dt = await self._call(chat_request(self.prompt, self.config.model, messages, n, self._response_format))
            except EndpointFailure as e:
                # Not cached: nothing was paid, so a later run tries again.
                return Outcome(item, "rejected", ih, reason=RejectReason.ENDPOINT_ERROR.value, detail=str(e),
                               prompt_tokens=tokens_in, completion_tokens=tokens_out, latency_s=latency, attempts=n)
            except FatalEndpointError as e:
                if not self.fatal:
                    self.fatal = str(e)
                    log.error("stopping calls: %s", e)
                return Outcome(item, "skipped", ih, reason="fatal", detail=str(e))
            usage = getattr(resp, "usage", None)
            p_tok = int(getattr(usage, "prompt_tokens", 0) or 0)
            c_tok = int(getattr(usage, "completion_tokens", 0) or 0)
            tokens_in += p_tok
            tokens_out += c_tok
            latency += dt
            self._account(p_tok, c_tok)
            choice = resp.choices[0] if resp.choices else None
            content = choice.message.content if choice else None
            finish = choice.finish_reason if choice else None
            refusal = getattr(choice.message, "refusal", None) if choice else None
            n += 1
            try:
                labels = parse_reply(content, finish, refusal)
            except RecordError as e:
                self.stats.invalid[e.reason.value] += 1
                last = CachedAttempt(n - 1, finish, content, p_tok, c_tok, dt, e.reason.value)
                self.cache.add_attempt(key, pid, last)
                continue
            outcome = Outcome(item, "annotated", ih, labels=labels, prompt_tokens=tokens_in,
                              completion_tokens=tokens_out, latency_s=latency, attempts=n)
            self._put(key, outcome)
            return outcome
        reason = (last.error if last and last.error else RejectReason.REPLY_SCHEMA.value)
        outcome = Outcome(item, "rejected", ih, reason=reason,
                          detail=f"reply still invalid after {n} attempts ({reason})",
                          raw=(last.content or "")[:2000] if last else None, prompt_tokens=tokens_in,
                          completion_tokens=tokens_out, latency_s=latency, attempts=n)
        self._put(key, outcome)
        return outcome

    async def _call(self, body: dict[str, Any]) -> tuple[Any, float]:
        """One reply from the endpoint, retrying transport failures with jittered exponential backoff."""
        client = self._clients[self._next_client % len(self._clients)]
        self._next_client += 1
        last_error = ""
        for attempt in range(1, self.config.max_transport_attempts + 1):
            t0 = time.monotonic()
            retry_after: float | None = None
            try:
                self.stats.requests += 1
                # The client's documented request method with the same body `chat.completions.create`
                # sends: its per-call TypedDict transform of the (few-shot) messages was ~40% of the
                # client's CPU per request (profiled); auth, errors and response parsing are unchanged.
                resp = await client.post("/chat/completions", cast_to=ChatCompletion, body=body)
                return resp, time.monotonic() - t0
            except openai.APIStatusError as e:
                status = e.status_code
                if status in (401, 403):
                    raise FatalEndpointError(f"endpoint refused the credentials (HTTP {status}); check OPENAI_API_KEY") from None
                if status == 404:
                    raise FatalEndpointError(f"endpoint or model {self.config.model!r} not found (HTTP 404)") from None
                if status == 429 or status >= 500 or status in (408, 409):
                    kind = "429" if status == 429 else ("5xx" if status >= 500 else str(status))
                    retry_after = retry_after_s(e.response.headers if e.response is not None else None)
                    last_error = f"HTTP {status}"
                else:
                    raise EndpointFailure(f"HTTP {status} (not retryable): {str(e.message)[:300]}") from None
            except openai.APITimeoutError:
                kind, last_error = "timeout", f"timed out after {self.config.timeout_s}s"
            except openai.APIConnectionError as e:
                kind, last_error = "connection", f"connection error: {type(e.__cause__ or e).__name__}"
            self.stats.retries[kind] += 1
            self._refresh()
            if attempt == self.config.max_transport_attempts:
                break
            backoff = min(self.config.backoff_max_s, self.config.backoff_base_s * 2 ** (attempt - 1))
            delay = retry_after if retry_after is not None else backoff * random.uniform(0.5, 1.5)
            await asyncio.sleep(min(delay, 600.0))
        raise EndpointFailure(f"gave up after {self.config.max_transport_attempts} attempts: {last_error}")

    # ---- bookkeeping --------------------------------------------------------------------------
    def _account(self, p_tok: int, c_tok: int) -> None:
        self.stats.prompt_tokens += p_tok
        self.stats.completion_tokens += c_tok
        self.stats.cost += self.config.cost(p_tok, c_tok)

    def _cache_row(self, o: Outcome) -> dict[str, Any]:
        return cache_row(o, self.prompt, self.config.model)

    @staticmethod
    def _from_cache(item: dict[str, Any], ih: str, row: dict[str, Any]) -> Outcome:
        return outcome_from_cache(item, ih, row)

    def _finish(self, outcome: Outcome, cached: bool = False) -> Outcome:
        outcome.cached = cached
        if not cached and outcome.status != "skipped":
            self._new_done += 1
            self._new_rejected += outcome.status == "rejected"
            if (
                self._new_done >= self.config.reject_rate_min_calls
                and self._new_rejected / self._new_done > self.config.max_reject_rate
                and not self.fatal
            ):
                self.fatal = (
                    f"{self._new_rejected} of {self._new_done} calls rejected (more than "
                    f"{self.config.max_reject_rate:.0%}): stopping; check the endpoint, model and prompt"
                )
                log.error(self.fatal)
        self.stats.done += 1
        self.stats.cached += int(cached)
        self.stats.status[outcome.status if outcome.status != "rejected" else f"rejected:{outcome.reason}"] += 1
        if self._bar is not None:
            self._bar.update(1)
            self._refresh()
            if self.config.total is not None and self.stats.done >= self.config.total:
                self._bar.close()
                self._bar = None
        return outcome

    def _refresh(self) -> None:
        if self._bar is None:
            return
        s = self.stats
        rejected = sum(v for k, v in s.status.items() if k.startswith("rejected"))
        self._bar.set_postfix_str(
            f"tok in {s.prompt_tokens} out {s.completion_tokens} ${s.cost:.4f} "
            f"retries {sum(s.retries.values())} invalid {sum(s.invalid.values())} rejects {rejected} cached {s.cached}",
            refresh=False,
        )
