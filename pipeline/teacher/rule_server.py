"""A demo teacher whose labels mean something: the keyword rules of pipeline/teacher/rules.py behind an
OpenAI-compatible endpoint on 127.0.0.1, so the whole client path (preflight, structured output,
validation, cache, checkpoints) runs as it does against a real LLM.

**It is not an LLM.** Its model name says so: `pmc-curate-rule-teacher-v1 (keyword rules, not an
LLM)`, and that name is what every annotation it makes records as `teacher_model`. It answers only
requests for that model (404 otherwise, as a real server does for a model it does not serve), so its
labels cannot be recorded under another model's name. Its labels carry a real, known signal (case
wording -> "Clinical case", clinical vs biomedical keyword counts -> domain, a 1-5 score from keyword,
statistics and citation hits); they are heuristics, far from what a 70B model gives.

Protocol: `GET /v1/models`, `POST /v1/chat/completions` (non-streaming). The reply is the label JSON
(always valid against the label schema; a `json_schema` response_format other than that schema is
refused with 400). `usage` is an estimate (characters / 4: there is no tokenizer), `finish_reason`
is "length" when max_tokens would cut the JSON, as a real server's would.

What it reads: the paragraph between `<paragraph>` and `</paragraph>` in the last user message, as
the prompt's user template (prompts/biomed-labels/v1/user.md) puts it. That text is untrusted: it was
neutralised by prompt.neutralise (so it cannot close the tag early), it only ever meets regular
expressions, and request bodies over MAX_BODY_BYTES are refused.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pipeline.core.labels import HEADS
from pipeline.core.provenance import RULE_SERVER_MODEL
from pipeline.teacher.prompt import reply_schema
from pipeline.teacher.rules import rule_labels

log = logging.getLogger(__name__)

MODEL_NAME = RULE_SERVER_MODEL  # artifacts name labels it made as heuristic (pipeline.core.provenance)
MAX_BODY_BYTES = 4_000_000  # a request is the rubric + few-shot turns + one paragraph (~10-20 KB)
_PARAGRAPH_RE = re.compile(r"<paragraph>\n?(.*?)\n?</paragraph>", re.S)


class RequestRefused(ValueError):
    """The request is not one this server answers: (HTTP status, message)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def paragraph_text(messages: Any) -> str:
    """The paragraph of the last user message (the text between the prompt's <paragraph> tags)."""
    if not isinstance(messages, list) or not messages:
        raise RequestRefused(400, "messages must be a non-empty list")
    user = next((m.get("content") for m in reversed(messages) if isinstance(m, dict) and m.get("role") == "user"), None)
    if not isinstance(user, str):
        raise RequestRefused(400, "no user message with string content")
    found = _PARAGRAPH_RE.findall(user)
    if not found:
        raise RequestRefused(400, "the last user message has no <paragraph>...</paragraph>: the rule teacher reads "
                                  "prompts rendered from prompts/biomed-labels only")  # fmt: skip
    return str(found[-1])


def complete(request: Any) -> dict[str, Any]:
    """One /v1/chat/completions request -> its response body (RequestRefused when it is not answerable)."""
    if not isinstance(request, dict):
        raise RequestRefused(400, "the body must be a JSON object")
    if request.get("model") != MODEL_NAME:
        raise RequestRefused(404, f"model {request.get('model')!r} is not served here; this server is {MODEL_NAME!r}")
    if request.get("stream"):
        raise RequestRefused(400, "streaming is not supported")
    rf = request.get("response_format") or {}
    if rf.get("type") == "json_schema" and (rf.get("json_schema") or {}).get("schema") != reply_schema():
        raise RequestRefused(400, "the rule teacher answers only the label schema of pipeline/core/labels.py")
    messages = request.get("messages")
    dtype, domain, score = rule_labels(paragraph_text(messages))
    content = json.dumps(dict(zip([h.name for h in HEADS], (dtype, domain, score), strict=True)))
    n_out = math.ceil(len(content) / 4)
    max_tokens = request.get("max_completion_tokens") or request.get("max_tokens")
    finish = "stop"
    if isinstance(max_tokens, int) and n_out > max_tokens:  # what a real server does when max_tokens cuts the JSON
        content, n_out, finish = content[: 4 * max_tokens], max_tokens, "length"
    n_in = math.ceil(sum(len(m.get("content") or "") for m in messages if isinstance(m, dict)) / 4)
    return {
        "id": f"chatcmpl-rules-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
        "model": MODEL_NAME,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish, "logprobs": None}],
        "usage": {"prompt_tokens": n_in, "completion_tokens": n_out, "total_tokens": n_in + n_out},
    }  # fmt: skip


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the openai client expects

    def log_message(self, format: str, *args: Any) -> None:  # request lines only, never headers
        log.debug("%s - %s", self.address_string(), format % args)

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str) -> None:
        kind = {404: "not_found_error", 413: "invalid_request_error"}.get(status, "invalid_request_error")
        self._send(status, {"error": {"message": message, "type": kind, "code": status}})

    def do_GET(self) -> None:
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            self._send(200, {"object": "list", "data": [{"id": MODEL_NAME, "object": "model", "owned_by": "pmc-curate"}]})
        else:
            self._error(404, f"no route GET {self.path}")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            self._error(413, f"request body over {MAX_BODY_BYTES} bytes")
            return
        body = self.rfile.read(length)
        if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
            self._error(404, f"no route POST {self.path}")
            return
        try:
            self._send(200, complete(json.loads(body)))
        except RequestRefused as e:
            self._error(e.status, str(e))
        except (ValueError, TypeError, AttributeError) as e:  # not JSON, or not the shapes expected
            self._error(400, f"invalid request: {type(e).__name__}")


def serve(host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """Bind the rule teacher (not yet serving); port 0 picks a free one."""
    server = ThreadingHTTPServer((host, port), _Handler)
    server.daemon_threads = True
    return server


@contextlib.contextmanager
def rule_teacher(host: str = "127.0.0.1", port: int = 0) -> Iterator[tuple[str, str]]:
    """Serve the rule teacher on a thread of this process; yields (base_url, model name); always stops it.

    No weights to load, so no child process (unlike local.local_teacher): ready when bound.
    """
    server = serve(host, port)
    thread = threading.Thread(target=server.serve_forever, name="rule-teacher", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}/v1", MODEL_NAME
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def main(argv: list[str] | None = None) -> int:
    """`python -m pipeline.teacher.rule_server [--port P]`: serve until interrupted."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m pipeline.teacher.rule_server", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8089)
    args = parser.parse_args(argv)
    server = serve(args.host, args.port)
    print(f"rule teacher ready at http://{args.host}:{server.server_address[1]}/v1 as {MODEL_NAME!r} "
          "(keyword rules, not an LLM)", flush=True)  # fmt: skip
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
