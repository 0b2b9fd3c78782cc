"""The Batch API half of the fake OpenAI server (tests/fakes/openai_server.py): files and batches.

    POST /v1/files                   multipart/form-data, purpose=batch -> FileObject
    GET  /v1/files/{id}              FileObject
    GET  /v1/files/{id}/content      the file's bytes
    POST /v1/batches                 {input_file_id, endpoint, completion_window, metadata} -> Batch
    GET  /v1/batches                 list, newest first (limit, after)
    GET  /v1/batches/{id}            Batch; each retrieve moves it on: validating -> in_progress -> done
    POST /v1/batches/{id}/cancel     Batch (cancelling; cancelled at the next retrieve)

A batch runs at its `polls`-th retrieve: every line is checked against `BatchInputLine` (an invalid
line, a repeated custom_id or a second model fails the whole batch, as the real API does) and answered
by the server's own chat logic and per-paragraph fault plan (`ok`, `length`, `empty`, `notjson`,
`schema` -> a reply line; `429`, `500`, `503`, `timeout`, `drop` -> an error-file line with that
status; `400` -> a 400 line; `missing` -> no line at all; `dup` -> the reply line twice).
Batch-level faults, one per created batch from `batch_plan` (several joined with `+`):

    ok | fail (failed, no output) | expire (half done, the rest batch_expired in the error file)
    | cancel (half done, cancelled) | dupline (first output line twice) | truncate (last output
    line cut, no newline) | dropline (the last request gets no line)

Counters for tests: `creates` (POST /v1/batches), `uploads`, `lines` (batch lines answered per paragraph key).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections import Counter, deque
from typing import Any

from pydantic import ValidationError

from tests.fakes.chat_models import BatchInputLine

TERMINAL = {"completed", "failed", "expired", "cancelled"}
MAX_LINES = 50_000


def parse_multipart(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """multipart/form-data -> {field name: (file name or None, bytes)}."""
    m = re.search(r'boundary="?([^";]+)"?', content_type)
    if not m:
        raise ValueError("multipart body without a boundary")
    out: dict[str, tuple[str | None, bytes]] = {}
    for chunk in body.split(b"--" + m.group(1).encode())[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, data = chunk.lstrip(b"\r\n").partition(b"\r\n\r\n")
        disposition = next((h for h in head.decode("latin-1").split("\r\n") if h.lower().startswith("content-disposition")), "")
        name = re.search(r'\bname="([^"]*)"', disposition)
        filename = re.search(r'filename="([^"]*)"', disposition)
        if name:
            out[name.group(1)] = (filename.group(1) if filename else None, data[:-2] if data.endswith(b"\r\n") else data)
    return out


class FakeBatchAPI:
    """Files and batches held in memory; lines answered through `server` (a FakeOpenAIServer)."""

    def __init__(self, server: Any, batch_plan: list[str] | None = None, polls: int = 2) -> None:
        self.server = server
        self.batch_plan: deque[str] = deque(batch_plan or [])
        self.polls = polls
        self.files: dict[str, dict[str, Any]] = {}
        self.data: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self._faults: dict[str, list[str]] = {}
        self._retrieves: Counter[str] = Counter()
        self.creates = 0
        self.uploads = 0
        self.retrieves = 0
        self.lines: Counter[str] = Counter()
        self._seq = 0

    # ---- HTTP ---------------------------------------------------------------------------------
    def route(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        """(status, JSON payload or raw bytes)."""
        path, _, query = path.partition("?")
        parts = [p for p in path.split("/") if p][1:]  # drop "v1"
        try:
            if parts == ["files"] and method == "POST":
                return self._upload(headers, body)
            if len(parts) == 2 and parts[0] == "files" and method == "GET":
                return (200, self.files[parts[1]]) if parts[1] in self.files else self._missing("file", parts[1])
            if len(parts) == 3 and parts[0] == "files" and parts[2] == "content" and method == "GET":
                return (200, self.data[parts[1]]) if parts[1] in self.data else self._missing("file", parts[1])
            if parts == ["batches"] and method == "POST":
                return self._create(json.loads(body))
            if parts == ["batches"] and method == "GET":
                return self._list(dict(q.split("=", 1) for q in query.split("&") if "=" in q))
            if len(parts) == 2 and parts[0] == "batches" and method == "GET":
                return self._retrieve(parts[1])
            if len(parts) == 3 and parts[0] == "batches" and parts[2] == "cancel" and method == "POST":
                return self._cancel(parts[1])
        except (ValueError, KeyError) as e:
            return 400, {"error": {"message": f"bad request: {e}", "type": "invalid_request_error"}}
        return 404, {"error": {"message": f"no route {method} {path}", "type": "not_found"}}

    @staticmethod
    def _missing(kind: str, ident: str) -> tuple[int, Any]:
        return 404, {"error": {"message": f"No such {kind}: {ident}", "type": "invalid_request_error"}}

    def _new_id(self, prefix: str) -> str:
        self._seq += 1
        return f"{prefix}-{self._seq:04d}{uuid.uuid4().hex[:8]}"

    def _store(self, data: bytes, filename: str, purpose: str) -> str:
        fid = self._new_id("file")
        self.files[fid] = {"id": fid, "object": "file", "bytes": len(data), "created_at": int(time.time()),
                           "filename": filename, "purpose": purpose, "status": "processed"}  # fmt: skip
        self.data[fid] = data
        return fid

    def _upload(self, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        form = parse_multipart(headers.get("content-type", ""), body)
        purpose = form.get("purpose", (None, b""))[1].decode()
        if purpose != "batch" or "file" not in form:
            return 400, {"error": {"message": f"need a file with purpose=batch (got {purpose!r})", "type": "invalid_request_error"}}
        filename, data = form["file"]
        self.uploads += 1
        return 200, self.files[self._store(data, filename or "upload.jsonl", "batch")]

    def _create(self, req: dict[str, Any]) -> tuple[int, Any]:
        fid = req.get("input_file_id")
        if fid not in self.files or self.files[fid]["purpose"] != "batch":
            return 400, {"error": {"message": f"input_file_id {fid!r} is not a batch file", "type": "invalid_request_error"}}
        if req.get("endpoint") != "/v1/chat/completions" or req.get("completion_window") != "24h":
            return 400, {"error": {"message": "endpoint must be /v1/chat/completions, window 24h", "type": "invalid_request_error"}}
        self.creates += 1
        bid = self._new_id("batch")
        now = int(time.time())
        self.batches[bid] = {
            "id": bid, "object": "batch", "endpoint": req["endpoint"], "errors": None, "input_file_id": fid,
            "completion_window": "24h", "status": "validating", "output_file_id": None, "error_file_id": None,
            "created_at": now, "in_progress_at": None, "expires_at": now + 86400, "finalizing_at": None,
            "completed_at": None, "failed_at": None, "expired_at": None, "cancelling_at": None, "cancelled_at": None,
            "request_counts": {"total": 0, "completed": 0, "failed": 0}, "metadata": req.get("metadata"),
        }  # fmt: skip
        self._faults[bid] = (self.batch_plan.popleft() if self.batch_plan else "ok").split("+")
        return 200, self.batches[bid]

    def _list(self, query: dict[str, str]) -> tuple[int, Any]:
        ids = list(reversed(self.batches))
        if "after" in query and query["after"] in ids:
            ids = ids[ids.index(query["after"]) + 1 :]
        limit = int(query.get("limit", 20))
        page = [self.batches[i] for i in ids[:limit]]
        return 200, {"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
                     "last_id": page[-1]["id"] if page else None, "has_more": len(ids) > limit}  # fmt: skip

    def _retrieve(self, bid: str) -> tuple[int, Any]:
        if bid not in self.batches:
            return self._missing("batch", bid)
        b = self.batches[bid]
        self.retrieves += 1
        self._retrieves[bid] += 1
        if b["status"] == "cancelling":
            self._finish(b, cancelled=True)
        elif b["status"] not in TERMINAL:
            if self._retrieves[bid] >= self.polls:
                self._finish(b)
            else:
                b["status"], b["in_progress_at"] = "in_progress", int(time.time())
        return 200, b

    def _cancel(self, bid: str) -> tuple[int, Any]:
        if bid not in self.batches:
            return self._missing("batch", bid)
        b = self.batches[bid]
        if b["status"] not in TERMINAL:
            b["status"], b["cancelling_at"] = "cancelling", int(time.time())
        return 200, b

    # ---- running a batch ----------------------------------------------------------------------
    def _validate(self, data: bytes) -> tuple[list[BatchInputLine], list[dict[str, Any]]]:
        lines, errors, seen, models = [], [], set(), set()
        raw = [x for x in data.split(b"\n") if x.strip()]
        if len(raw) > MAX_LINES:
            errors.append({"code": "too_many_requests", "message": f"{len(raw)} requests, over {MAX_LINES}", "line": None})
        for n, chunk in enumerate(raw, start=1):
            try:
                line = BatchInputLine.model_validate_json(chunk)
            except ValidationError as e:
                errors.append({"code": "invalid_request", "message": str(e).splitlines()[0], "line": n, "param": None})
                continue
            if line.custom_id in seen:
                errors.append({"code": "duplicate_custom_id", "message": f"custom_id {line.custom_id} repeated", "line": n})
            seen.add(line.custom_id)
            models.add(line.body.model)
            lines.append(line)
        if len(models) > 1:
            errors.append({"code": "mixed_models", "message": f"one model per batch, got {sorted(models)}", "line": None})
        return lines, errors

    def _finish(self, b: dict[str, Any], cancelled: bool = False) -> None:
        now = int(time.time())
        faults = self._faults[b["id"]]
        lines, errors = self._validate(self.data[b["input_file_id"]])
        if "fail" in faults:
            errors.append({"code": "token_limit_exceeded", "message": "injected batch failure", "line": None})
        b["request_counts"]["total"] = len(lines)
        if errors:
            b.update(status="failed", failed_at=now, errors={"object": "list", "data": errors})
            return
        stop = len(lines) // 2 if (cancelled or {"expire", "cancel"} & set(faults)) else len(lines)
        out: list[str] = []
        err: list[str] = []
        for i, line in enumerate(lines):
            if i >= stop:
                if not cancelled and "cancel" not in faults:
                    err.append(self._line(line.custom_id, None, {"code": "batch_expired", "message": "This request could "
                                          "not be executed before the completion window expired."}))  # fmt: skip
                continue
            if "dropline" in faults and i == len(lines) - 1:
                continue
            self._answer(line, out, err)
        if "dupline" in faults and out:
            out.insert(1, out[0])
        text = "".join(x + "\n" for x in out)
        if "truncate" in faults and out:
            text = text[: -len(out[-1]) // 2 - 1]
        b["request_counts"].update(completed=len(out), failed=len(err))
        if text:
            b["output_file_id"] = self._store(text.encode(), f"{b['id']}_output.jsonl", "batch_output")
        if err:
            b["error_file_id"] = self._store("".join(x + "\n" for x in err).encode(), f"{b['id']}_error.jsonl", "batch_output")
        if cancelled or "cancel" in faults:
            b.update(status="cancelled", cancelled_at=now)
        elif "expire" in faults:
            b.update(status="expired", expired_at=now)
        else:
            b.update(status="completed", in_progress_at=b["in_progress_at"] or now, finalizing_at=now, completed_at=now)

    @staticmethod
    def _line(custom_id: str, response: dict[str, Any] | None, error: dict[str, Any] | None) -> str:
        return json.dumps({"id": f"batch_req_{uuid.uuid4().hex[:12]}", "custom_id": custom_id, "response": response, "error": error})

    def _answer(self, line: BatchInputLine, out: list[str], err: list[str]) -> None:
        req = line.body.model_dump(by_alias=True, exclude_none=True)
        key = self.server.key_of(req)
        fault = self.server.next_fault(key)
        kind = fault.split(":")[0]
        if kind == "missing":
            return
        self.lines[key] += 1
        rid = f"req_{uuid.uuid4().hex[:12]}"
        if kind in ("429", "500", "503", "timeout", "drop", "400", "401"):
            status = {"timeout": 500, "drop": 500}.get(kind, int(kind) if kind.isdigit() else 500)
            body = {"error": {"message": f"injected {kind}", "type": "server_error" if status >= 500 else "invalid_request_error"}}
            err.append(self._line(line.custom_id, {"status_code": status, "request_id": rid, "body": body}, None))
            return
        completion = self.server.completion(kind if kind != "dup" else "ok", key, req)
        out.append(self._line(line.custom_id, {"status_code": 200, "request_id": rid, "body": completion}, None))
        if kind == "dup":
            out.append(out[-1])
