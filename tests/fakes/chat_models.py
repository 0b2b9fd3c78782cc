"""The request models the fake OpenAI server checks every request against (online and batch lines).

Strict on purpose: an unknown key, a wrong role, a bad response_format or a streaming request is
refused (HTTP 400 online, a failed batch for a batch file), as the real API and vLLM refuse them, so
a test passes only when the body is one a real endpoint accepts. The openai package's own
`CompletionCreateParams` are TypedDicts that pydantic accepts almost anything for (unknown keys,
unknown roles), so they cannot serve here.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Message(_Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: str
    name: str | None = None


class JsonSchema(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    schema_: dict[str, Any] = Field(alias="schema")
    strict: bool | None = None
    description: str | None = None


class ResponseFormat(_Strict):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchema | None = None


class ChatRequest(_Strict):
    """A non-streaming POST /v1/chat/completions body."""

    model: str = Field(min_length=1)
    messages: list[Message] = Field(min_length=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    response_format: ResponseFormat | None = None
    seed: int | None = None
    n: int | None = Field(None, ge=1, le=1)
    stop: str | list[str] | None = None
    stream: Literal[False] | None = None
    user: str | None = None


class BatchInputLine(_Strict):
    """One line of a Batch API input file (OpenAI's format; vLLM run_batch reads the same)."""

    custom_id: str = Field(min_length=1, max_length=512)
    method: Literal["POST"]
    url: Literal["/v1/chat/completions"]
    body: ChatRequest
