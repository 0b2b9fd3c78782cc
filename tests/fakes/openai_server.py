"""A local OpenAI-compatible server for tests and benchmarks, with injectable faults.

Real HTTP/1.1 over a real socket on 127.0.0.1 (keep-alive, Content-Length), the real
`/v1/chat/completions` and `/v1/models` shapes (usage, finish_reason), so the official `openai`
client runs its real code path. Faults are planned per paragraph: the paragraph is recognised by
a `PKEY-<name>` marker in the last user message (else the whole message is its key), and each
request for it consumes the next planned fault:

    ok | 429[:retry_after_s] | 500 | 503 | timeout | drop | length | empty | notjson | schema | 401

Every request is counted per key (`requests`), every reply that would be billed (`paid`), and the
raw request bodies are kept so tests can show exactly what reached the endpoint. Every chat request
is checked against the strict request model in tests/fakes/chat_models.py (HTTP 400 when it fails).

The Batch API (`/v1/files`, `/v1/batches`) is served by tests/fakes/openai_batches.py through the same
labelling logic and per-paragraph fault plan (`server.batch`: its counters and batch-level faults).

Run standalone (for benchmarks): python -m tests.fakes.openai_server --latency 0.2 --slots 64
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import re
import threading
import time
from collections import Counter, defaultdict, deque
from typing import Any

from pydantic import ValidationError

from pipeline.core.labels import DOCUMENT_TYPES, DOMAINS
from tests.fakes.chat_models import ChatRequest
from tests.fakes.openai_batches import FakeBatchAPI

KEY_RE = re.compile(r"PKEY-([A-Za-z0-9_.-]+)")


def default_labels(key: str, model: str, vary_by_model: bool = False) -> dict[str, Any]:
    """Deterministic valid labels for a key (optionally different per model, for agreement tests)."""
    h = hashlib.sha256(f"{key}|{model if vary_by_model else ''}".encode()).digest()
    return {
        "document_type": DOCUMENT_TYPES[h[0] % len(DOCUMENT_TYPES)],
        "domain": DOMAINS[h[1] % len(DOMAINS)],
        "educational_score": 1 + h[2] % 5,
    }


class FakeOpenAIServer:
    """Start with `start()` (background thread) or `serve_forever()`; `url` ends in /v1."""

    def __init__(
        self,
        latency_s: float = 0.0,
        slots: int | None = None,
        plan: dict[str, list[str]] | None = None,
        timeout_hold_s: float = 5.0,
        vary_by_model: bool = False,
        record_bodies: bool = True,
        port: int = 0,
        batch_plan: list[str] | None = None,
        batch_polls: int = 2,
    ) -> None:
        self.latency_s = latency_s
        self.slots = slots
        self.plan: dict[str, deque[str]] = {k: deque(v) for k, v in (plan or {}).items()}
        self.timeout_hold_s = timeout_hold_s
        self.vary_by_model = vary_by_model
        self.record_bodies = record_bodies
        self.requests: Counter[str] = Counter()
        self.paid: Counter[str] = Counter()
        self.faults_served: Counter[str] = Counter()
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.overrides: dict[str, Any] = defaultdict(dict)  # key -> labels to return
        self._lock = threading.Lock()
        self._port = port
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._sem: asyncio.Semaphore | None = None
        self._tasks: set[Any] = set()
        self.times: dict[str, list[float]] = defaultdict(list)  # monotonic arrival times per key
        self.invalid_requests: list[str] = []  # why each refused chat request failed the request model
        self.batch = FakeBatchAPI(self, batch_plan, batch_polls)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # ---- lifecycle ---------------------------------------------------------------------------
    async def _start_async(self) -> None:
        self._sem = asyncio.Semaphore(self.slots) if self.slots else None
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self._port, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]

    def start(self) -> FakeOpenAIServer:
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self._start_async())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True, name="fake-openai")
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is None:
            return

        async def shutdown() -> None:
            assert self._server is not None
            self._server.close()
            for t in list(self._tasks):
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread:
            self._thread.join(5)

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- HTTP --------------------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
                keep = await self._route(method, path, headers, body, writer)
                if not keep:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            self._tasks.discard(task)
            with contextlib.suppress(Exception):  # the peer may already have dropped the socket
                writer.close()

    @staticmethod
    def _write(writer: asyncio.StreamWriter, status: int, payload: Any, extra: dict[str, str] | None = None) -> None:
        raw = isinstance(payload, bytes)  # a file's content
        data = payload if raw else json.dumps(payload).encode()
        reason = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable"}.get(status, "X")
        ctype = "application/octet-stream" if raw else "application/json"
        head = [f"HTTP/1.1 {status} {reason}", f"Content-Type: {ctype}", f"Content-Length: {len(data)}", "Connection: keep-alive"]
        head += [f"{k}: {v}" for k, v in (extra or {}).items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + data)

    async def _route(self, method: str, path: str, headers: dict[str, str], body: bytes, writer: asyncio.StreamWriter) -> bool:
        if method == "GET" and path.rstrip("/").endswith("/v1/models"):
            self._write(writer, 200, {"object": "list", "data": [{"id": "fake-model", "object": "model", "owned_by": "tests"}]})
            await writer.drain()
            return True
        if path.startswith(("/v1/files", "/v1/batches")):
            with self._lock:
                status, payload = self.batch.route(method, path, headers, body)
            self._write(writer, status, payload)
            await writer.drain()
            return True
        if method != "POST" or not path.rstrip("/").endswith("/chat/completions"):
            self._write(writer, 404, {"error": {"message": f"no route {method} {path}", "type": "not_found"}})
            await writer.drain()
            return True
        req = json.loads(body)
        try:
            ChatRequest.model_validate(req)
        except ValidationError as e:
            self.invalid_requests.append(str(e))
            self._write(writer, 400, {"error": {"message": f"invalid request: {e}", "type": "invalid_request_error"}})
            await writer.drain()
            return True
        key = self.key_of(req)
        with self._lock:
            self.requests[key] += 1
            self.times[key].append(time.monotonic())
            if self.record_bodies:
                self.bodies.append(req)
                self.headers.append(headers)
            fault = self._next_fault(key)
        if self._sem is not None:
            async with self._sem:
                return await self._serve(fault, key, req, writer)
        return await self._serve(fault, key, req, writer)

    async def _serve(self, fault: str, key: str, req: dict[str, Any], writer: asyncio.StreamWriter) -> bool:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.latency_s:
                await asyncio.sleep(self.latency_s)
            kind, _, arg = fault.partition(":")
            if kind == "429":
                self._write(writer, 429, {"error": {"message": "rate limited", "type": "rate_limit"}}, {"Retry-After": arg or "0"})
            elif kind in ("500", "503", "401"):
                self._write(writer, int(kind), {"error": {"message": f"injected {kind}", "type": "server_error"}})
            elif kind == "timeout":
                await asyncio.sleep(self.timeout_hold_s)
                return False
            elif kind == "drop":
                return False
            else:
                with self._lock:
                    self.paid[key] += 1
                self._write(writer, 200, self.completion(kind, key, req))
            await writer.drain()
            return True
        finally:
            self.in_flight -= 1

    # ---- the labelling logic, shared by the chat endpoint and batch lines ----------------------
    @staticmethod
    def key_of(req: dict[str, Any]) -> str:
        """The paragraph a request is about: its PKEY marker, else a hash of the last user message."""
        user = next((m["content"] for m in reversed(req["messages"]) if m["role"] == "user"), "")
        m = KEY_RE.search(user)
        return m.group(1) if m else hashlib.sha256(user.encode()).hexdigest()[:16]

    def _next_fault(self, key: str) -> str:
        queue = self.plan.get(key)
        fault = queue.popleft() if queue else "ok"
        self.faults_served[fault.split(":")[0]] += 1
        return fault

    def next_fault(self, key: str) -> str:
        """The next planned fault for a paragraph (batch lines; the caller holds the lock)."""
        return self._next_fault(key)

    def completion(self, kind: str, key: str, req: dict[str, Any]) -> dict[str, Any]:
        """A chat.completion body (usage: characters / 4) whose reply is shaped by `kind` (ok or a reply fault)."""
        content, finish = self._content(kind, key, req)
        prompt_tokens = sum(len(m["content"]) for m in req["messages"]) // 4
        return {
            "id": f"chatcmpl-{key}-{time.monotonic_ns()}", "object": "chat.completion", "created": int(time.time()),
            "model": req.get("model", "fake-model"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish, "logprobs": None}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": max(1, len(content) // 4), "total_tokens": prompt_tokens + max(1, len(content) // 4)},
        }  # fmt: skip

    def _content(self, kind: str, key: str, req: dict[str, Any]) -> tuple[str, str]:
        labels = self.overrides.get(key) or default_labels(key, req.get("model", ""), self.vary_by_model)
        good = json.dumps(labels)
        if kind == "length":
            return good[: len(good) // 2], "length"
        if kind == "empty":
            return "", "stop"
        if kind == "notjson":
            return "Sure! This paragraph is a Study about the heart.", "stop"
        if kind == "schema":
            return json.dumps({"document_type": "Essay", "domain": "clinical", "educational_score": 9}), "stop"
        return good, "stop"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--slots", type=int, default=64)
    args = ap.parse_args()
    server = FakeOpenAIServer(latency_s=args.latency, slots=args.slots, record_bodies=False, port=args.port)

    async def run() -> None:
        await server._start_async()
        print(f"PORT {server.port}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(run())


if __name__ == "__main__":
    main()
