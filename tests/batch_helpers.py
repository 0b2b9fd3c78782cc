"""Helpers for the batch tests: a teacher config on a work directory, and running the batch path end to end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.core.workdir import Workdir
from pipeline.stages.annotate.transforms import sample_items
from pipeline.teacher.batch import BatchRun, run_openai_batches, write_outputs
from pipeline.teacher.batch_requests import BatchConfig
from pipeline.teacher.config import TeacherConfig
from pipeline.teacher.prompt import load_prompt

FAST = BatchConfig(poll_s=0.01, poll_max_s=0.05)


def teacher(root: str | Path, url: str, machine: Path | None = None, model: str = "teacher-x", **kw: Any) -> TeacherConfig:
    """The annotate stage's teacher settings for W = root; `machine` = another machine's empty local disk."""
    wd = Workdir.of(root)
    local = machine if machine is not None else wd.local_cache
    return TeacherConfig(base_url=url, model=model, cache_path=str(local / "teacher.sqlite"),
                         checkpoint_dir=str(wd.cache / "teacher"), progress=False, **kw)  # fmt: skip


def run_batch(root: str | Path, url: str, config: BatchConfig = FAST, machine: Path | None = None, **kw: Any) -> BatchRun:
    """The whole `annotate --batch openai` flow on W = root, outputs written as the online path writes them."""
    wd = Workdir.of(root)
    t = teacher(root, url, machine, **kw)
    prompt = load_prompt()
    run = run_openai_batches(sample_items(wd), prompt, t, wd.cache / "batches", config)
    write_outputs(run.outcomes, wd.annotations, wd.rejects, t.model, prompt)
    return run


def input_lines(server: Any) -> list[dict[str, Any]]:
    """Every request line of every batch file uploaded to the fake server, decoded."""
    out = []
    for fid, meta in server.batch.files.items():
        if meta["purpose"] == "batch":
            out += [json.loads(x) for x in server.batch.data[fid].splitlines() if x.strip()]
    return out


def vllm_results(request_files: list[Path], faults: dict[str, str] | None = None) -> bytes:
    """What `python -m vllm.entrypoints.openai.run_batch -i FILE -o OUT` writes for these request files,
    line for line in its output schema (BatchRequestOutput: id "vllm-...", custom_id, response
    {status_code, request_id "vllm-batch-...", body: its ChatCompletionResponse}, error), answered by the
    fake server's labelling logic. `faults`: paragraph key -> a reply fault of the fake server (schema,
    notjson, length, empty), or `error_str` / `error_obj` (a failed request as run_batch writes it: status
    400, no body, the error as a string or as an ErrorResponse)."""
    import time
    import uuid

    from tests.fakes.openai_server import FakeOpenAIServer

    labeller = FakeOpenAIServer()  # not started: only its labelling logic
    out = []
    for f in request_files:
        for raw in Path(f).read_text(encoding="utf-8").splitlines():
            req = json.loads(raw)
            body = req["body"]
            key = labeller.key_of(body)
            kind = (faults or {}).get(key, "ok")
            line: dict[str, Any] = {"id": f"vllm-{uuid.uuid4().hex}", "custom_id": req["custom_id"]}
            if kind.startswith("error"):
                line["response"] = {"status_code": 400, "request_id": f"vllm-batch-{uuid.uuid4().hex}", "body": None}
                line["error"] = ("The model does not support Chat Completions API" if kind == "error_str" else
                                 {"error": {"message": "max_tokens is too large", "type": "BadRequestError",
                                            "param": None, "code": 400}})  # fmt: skip
            else:
                c = labeller.completion(kind, key, body)
                choice = c["choices"][0]
                completion = {
                    "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
                    "model": body["model"],
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": choice["message"]["content"],
                                                         "refusal": None, "annotations": None, "audio": None,
                                                         "function_call": None, "tool_calls": [], "reasoning_content": None},
                                 "logprobs": None, "finish_reason": choice["finish_reason"], "stop_reason": None}],
                    "service_tier": None, "system_fingerprint": None,
                    "usage": {**c["usage"], "prompt_tokens_details": None},
                    "prompt_logprobs": None, "kv_transfer_params": None,
                }  # fmt: skip
                line["response"] = {"status_code": 200, "request_id": f"vllm-batch-{uuid.uuid4().hex}", "body": completion}
                line["error"] = None
            out.append(json.dumps(line))
    return "".join(x + "\n" for x in out).encode()
