"""Batch results files -> the request cache, validated exactly as the online client validates a reply.

Reads the output and error files of the OpenAI Batch API and the output file of vLLM's `run_batch`
(one format: `{"id", "custom_id", "response": {"status_code", "request_id", "body"}, "error"}` per
line; vLLM puts a failed request's message in `error` as a string or an ErrorResponse, OpenAI as
`{"code", "message"}` or as an error body with the HTTP status). Per line:

- a reply (status 200 with a chat completion body): `reply.parse_reply`, as online. Valid -> the call's
  outcome is committed to the cache (and checkpointed); invalid -> a paid attempt (`attempts` table),
  asked again at the retry temperature in the next request file, and a reject with the reply's reason
  once the prompt's `max_reply_attempts` are spent: the online client's rule, attempt for attempt;
- an error line: `batch_expired` (the window ended), 429/5xx/408/409 -> resubmit; other errors ->
  reject `batch_request_error` for this run (not cached, so a later run asks again, as online);
- a line that is not JSON (a truncated file), has no custom_id, is for another sample, prompt or model,
  or repeats a custom_id -> dropped, counted by reason (`malformed_result_line`, `unknown_custom_id`,
  `duplicate_result`) and reported; it never becomes a row. A file none of whose lines belongs to this
  run stops ingestion with a ConfigError before anything is written.
Lines for calls already finished (a file ingested twice, a call finished online meanwhile) are skipped:
ingesting is idempotent, and nothing is counted twice.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pipeline.core.errors import ConfigError, RecordError, RejectReason
from pipeline.teacher.batch_requests import CustomId, SampleIndex
from pipeline.teacher.cache import CachedAttempt, RequestCache
from pipeline.teacher.checkpoint import Checkpointer
from pipeline.teacher.config import Outcome
from pipeline.teacher.reply import RAW_LIMIT, parse_reply
from pipeline.teacher.rows import cache_row

MAX_EXAMPLES = 20  # dropped lines quoted in the report, enough to see what went wrong
_RETRYABLE_STATUS = {408, 409, 429}
_RETRYABLE_CODES = {"server_error", "rate_limit_exceeded", "timeout", "internal_error"}


@dataclass
class ResultLine:
    """What one results line says about one request."""

    where: str  # file:line
    cid: CustomId
    reply: bool  # a chat completion came back
    content: str | None = None
    finish_reason: str | None = None
    refusal: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    status_code: int | None = None
    error_code: str | None = None
    error_message: str | None = None


@dataclass
class Ingest:
    """What ingesting some results did (merged over files and rounds)."""

    annotated: int = 0
    rejected: Counter = field(default_factory=Counter)  # calls finished as rejects here (cached), by reason
    invalid: Counter = field(default_factory=Counter)  # invalid replies paid for and to be asked again, by reason
    retry: dict[str, str] = field(default_factory=dict)  # input hash -> reason: resubmit
    failed: dict[str, tuple[str, str]] = field(default_factory=dict)  # input hash -> (reason, detail): reject now
    dropped: Counter = field(default_factory=Counter)  # lines that belong to no request of this run, by reason
    examples: list[str] = field(default_factory=list)
    already: int = 0  # lines for calls already finished
    prompt_tokens: int = 0  # from the returned usage of every reply ingested here (valid or not)
    completion_tokens: int = 0
    answered: set[str] = field(default_factory=set)  # custom_ids that had a line

    def drop(self, reason: RejectReason, where: str, detail: str) -> None:
        self.dropped[reason.value] += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(f"{where}: {reason.value}: {detail}")

    def merge(self, other: Ingest) -> None:
        self.annotated += other.annotated
        self.rejected.update(other.rejected)
        self.invalid.update(other.invalid)
        self.retry.update(other.retry)
        self.failed.update(other.failed)
        self.dropped.update(other.dropped)
        self.examples = (self.examples + other.examples)[:MAX_EXAMPLES]
        self.already += other.already
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.answered |= other.answered


def _error(err: Any) -> tuple[str | None, str | None]:
    """(code, message) of an `error` value: None, a string (vLLM), {"code", "message"} (OpenAI), or an
    ErrorResponse ({"error": {...}} or {"object": "error", "message", "type", "code"})."""
    if err is None:
        return None, None
    if isinstance(err, str):
        return None, err[:500]
    if isinstance(err, dict):
        if isinstance(err.get("error"), dict):
            return _error(err["error"])
        code = err.get("code") if err.get("code") is not None else err.get("type")
        message = err.get("message")
        return (str(code) if code is not None else None), str(message if message is not None else json.dumps(err))[:500]
    return None, str(err)[:500]


def parse_line(obj: dict[str, Any], cid: CustomId, where: str) -> ResultLine:
    """A decoded results line (OpenAI or vLLM run_batch output/error format) of request `cid`."""
    response = obj.get("response") if isinstance(obj.get("response"), dict) else {}
    status = response.get("status_code")
    status = int(status) if isinstance(status, int | float) else None
    body = response.get("body")
    code, message = _error(obj.get("error"))
    if isinstance(body, dict) and isinstance(body.get("choices"), list) and (status in (None, 200)) and code is None:
        choice = body["choices"][0] if body["choices"] and isinstance(body["choices"][0], dict) else {}
        msg = choice.get("message") if isinstance(choice.get("message"), dict) else {}
        usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
        content = msg.get("content")
        return ResultLine(where, cid, True, content=content if isinstance(content, str) else None,
                          finish_reason=choice.get("finish_reason"), refusal=msg.get("refusal") or None,
                          prompt_tokens=int(usage.get("prompt_tokens") or 0),
                          completion_tokens=int(usage.get("completion_tokens") or 0), status_code=status)  # fmt: skip
    if code is None and message is None and isinstance(body, dict) and "error" in body:
        code, message = _error(body["error"])
    return ResultLine(where, cid, False, status_code=status, error_code=code, error_message=message)


def classify_error(line: ResultLine) -> tuple[bool, RejectReason, str]:
    """(retry?, reason, detail) of an error line."""
    detail = f"HTTP {line.status_code}" if line.status_code is not None else "error"
    detail += f" {line.error_code}" if line.error_code else ""
    detail += f": {line.error_message}" if line.error_message else ""
    if line.error_code == "batch_expired":
        return True, RejectReason.BATCH_EXPIRED, detail
    if line.error_code == "batch_cancelled":
        return False, RejectReason.BATCH_CANCELLED, detail
    status = line.status_code or 0
    if status in _RETRYABLE_STATUS or status >= 500 or (not status and line.error_code in _RETRYABLE_CODES):
        return True, RejectReason.BATCH_REQUEST_ERROR, detail
    return False, RejectReason.BATCH_REQUEST_ERROR, detail


class Ingester:
    """Applies results lines of one sample, prompt and model to the request cache."""

    def __init__(self, index: SampleIndex, cache: RequestCache, checkpoints: Checkpointer | None = None) -> None:
        self.index, self.cache, self.checkpoints = index, cache, checkpoints

    def read(self, files: list[tuple[str, bytes]], strict: bool = True) -> tuple[list[ResultLine], Ingest]:
        """Parse results files (name, bytes) without writing anything; lines that belong to no request
        of this run are dropped into the report. `strict`: a file with no line of this run is a ConfigError."""
        report = Ingest()
        lines: list[ResultLine] = []
        seen: set[str] = set()
        for name, data in files:
            text = data.decode("utf-8", errors="replace")
            raw = text.split("\n")
            ours = total = 0
            reasons: Counter = Counter()
            for n, chunk in enumerate(raw, start=1):
                if not chunk.strip():
                    continue
                total += 1
                where = f"{name}:{n}"
                try:
                    obj = json.loads(chunk)
                except json.JSONDecodeError as e:
                    cut = n == len(raw) and not text.endswith("\n")
                    detail = "truncated last line (no newline, not JSON)" if cut else f"not JSON ({e.msg})"
                    report.drop(RejectReason.MALFORMED_RESULT_LINE, where, detail)
                    reasons["not JSON"] += 1
                    continue
                if not isinstance(obj, dict) or not isinstance(obj.get("custom_id"), str):
                    report.drop(RejectReason.MALFORMED_RESULT_LINE, where, "no custom_id")
                    reasons["without a custom_id"] += 1
                    continue
                cid = CustomId.parse(obj["custom_id"])
                foreign = self.index.why_foreign(cid)
                if foreign or cid is None:
                    report.drop(RejectReason.UNKNOWN_CUSTOM_ID, where, f"{obj['custom_id'][:80]}: {foreign}")
                    reasons[foreign] += 1
                    continue
                parsed = parse_line(obj, cid, where)
                ours += 1
                if str(parsed.cid) in seen:
                    report.drop(RejectReason.DUPLICATE_RESULT, where, f"a second line for {parsed.cid}")
                    continue
                seen.add(str(parsed.cid))
                lines.append(parsed)
            if strict and total and not ours:
                why = "; ".join(f"{v} lines {k}" for k, v in reasons.most_common(3))
                raise ConfigError(f"{name}: none of its {total} lines is a request of this sample, prompt "
                                  f"{self.index.prompt.version} ({self.index.prompt.hash}) and model "
                                  f"{self.index.model!r} ({why}); nothing was ingested")  # fmt: skip
        return lines, report

    def apply(self, lines: list[ResultLine], report: Ingest) -> None:
        """Commit the lines' outcomes to the cache, attempts in order per call."""
        for line in sorted(lines, key=lambda x: (x.cid.input_hash, x.cid.attempt)):
            self._one(line, report)
        if self.checkpoints is not None:
            self.checkpoints.flush()  # in the work directory before anyone marks these results ingested

    def ingest(self, files: list[tuple[str, bytes]], strict: bool = True) -> Ingest:
        lines, report = self.read(files, strict)
        self.apply(lines, report)
        return report

    def _one(self, line: ResultLine, report: Ingest) -> None:
        ih, n = line.cid.input_hash, line.cid.attempt
        key = self.index.key(ih)
        report.answered.add(str(line.cid))
        if self.cache.get(key) is not None:
            report.already += 1
            return
        if not line.reply:
            retry, reason, detail = classify_error(line)
            if retry:
                report.retry[ih] = reason.value
            else:
                report.failed[ih] = (reason.value, detail)
            return
        prior = self.cache.attempts(key)
        if n < len(prior):  # this attempt's reply is already recorded
            report.already += 1
            return
        report.retry.pop(ih, None)
        report.failed.pop(ih, None)
        report.prompt_tokens += line.prompt_tokens
        report.completion_tokens += line.completion_tokens
        item = self.index.items[ih][0]
        earlier = [a for a in prior if a.n < n]
        tokens_in = sum(a.prompt_tokens or 0 for a in earlier) + line.prompt_tokens
        tokens_out = sum(a.completion_tokens or 0 for a in earlier) + line.completion_tokens
        try:
            labels = parse_reply(line.content, line.finish_reason, line.refusal)
        except RecordError as e:
            self.cache.add_attempt(key, item["id"], CachedAttempt(n, line.finish_reason, line.content, line.prompt_tokens,
                                                                  line.completion_tokens, 0.0, e.reason.value))  # fmt: skip
            if n + 1 < self.index.prompt.max_reply_attempts:
                report.invalid[e.reason.value] += 1
                return
            reason = e.reason.value
            self._put(key, Outcome(item, "rejected", ih, reason=reason, detail=f"reply still invalid after {n + 1} attempts ({reason})",
                                   raw=(line.content or "")[:RAW_LIMIT], prompt_tokens=tokens_in,
                                   completion_tokens=tokens_out, attempts=n + 1))  # fmt: skip
            report.rejected[reason] += 1
            return
        self._put(key, Outcome(item, "annotated", ih, labels=labels, prompt_tokens=tokens_in, completion_tokens=tokens_out,
                               attempts=n + 1))  # fmt: skip
        report.annotated += 1

    def _put(self, key: str, outcome: Outcome) -> None:
        self.cache.put(key, cache_row(outcome, self.index.prompt, self.index.model))
        if self.checkpoints is not None:
            self.checkpoints.finished(key)

    def settle_exhausted(self) -> int:
        """Calls whose attempts are all spent but have no outcome (a kill between the last invalid reply
        and its reject): rejected now with the last reply's reason, as the online client does. Returns how many."""
        settled = 0
        done = self.cache.has_many([self.index.key(ih) for ih in self.index.items])
        for ih, items in self.index.items.items():
            key = self.index.key(ih)
            if key in done:
                continue
            prior = self.cache.attempts(key)
            if len(prior) < self.index.prompt.max_reply_attempts:
                continue
            last = prior[-1]
            reason = last.error or RejectReason.REPLY_SCHEMA.value
            self._put(key, Outcome(items[0], "rejected", ih, reason=reason,
                                   detail=f"reply still invalid after {len(prior)} attempts ({reason})",
                                   raw=(last.content or "")[:RAW_LIMIT],
                                   prompt_tokens=sum(a.prompt_tokens or 0 for a in prior),
                                   completion_tokens=sum(a.completion_tokens or 0 for a in prior),
                                   attempts=len(prior)))  # fmt: skip
            settled += 1
        return settled
