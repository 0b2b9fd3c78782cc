"""Versioned prompts: load `prompts/<task>/<version>/`, render chat messages, hash what was sent.

Paragraph text, article title and section title are untrusted. They are placed between tags and
any tag lookalike inside them (our delimiters, chat-template control tokens) is neutralised, so a
paragraph cannot close its own tag and speak as the user. The reply JSON schema is derived from
pipeline/core/labels.py, never written by hand (prompts/.../reply_schema.json is a checked copy).
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.core import bundled
from pipeline.core.errors import ConfigError
from pipeline.core.labels import DOCUMENT_TYPES, DOMAINS, SCORE_MAX, SCORE_MIN

PROMPTS_ROOT = bundled.PROMPTS
DEFAULT_TASK = "biomed-labels"
DEFAULT_VERSION = "v1"
SCHEMA_NAME = "biomed_labels"

# Tags our templates use, plus the generic role/instruction words an injection would imitate.
_DELIMITER_NAMES = r"paragraph|article_title|section_title|text|data|document|system|user|assistant|instructions?|prompt"
_TAG_RE = re.compile(rf"<(\s*/?\s*(?:{_DELIMITER_NAMES})\b[^<>]*)>", re.IGNORECASE)
_CONTROL_TOKEN_RE = re.compile(r"<\|([^<>|]{0,40})\|>")  # ChatML / Llama-3 special tokens: <|im_start|> ...
_CTRL_CHARS_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def reply_schema() -> dict[str, Any]:
    """JSON schema of the teacher's reply, derived from the label schema (one key per head)."""
    return {
        "type": "object",
        "properties": {
            "document_type": {"type": "string", "enum": list(DOCUMENT_TYPES)},
            "domain": {"type": "string", "enum": list(DOMAINS)},
            "educational_score": {"type": "integer", "minimum": SCORE_MIN, "maximum": SCORE_MAX},
        },
        "required": ["document_type", "domain", "educational_score"],
        "additionalProperties": False,
    }


def response_format() -> dict[str, Any]:
    """The `response_format` argument of chat.completions.create (structured output, strict)."""
    return {"type": "json_schema", "json_schema": {"name": SCHEMA_NAME, "strict": True, "schema": reply_schema()}}


def neutralise(text: str | None) -> str:
    """Untrusted text made safe to put between our tags: lookalike tags and control tokens defused.

    `<` and `>` of a lookalike become the single guillemets `‹ ›`, so `</paragraph>` inside a
    paragraph reads `‹/paragraph›` and cannot end the data block. Other `<` (e.g. "p < 0.05")
    are kept: they carry meaning and cannot form one of our tags.
    """
    if not text:
        return ""
    text = _CTRL_CHARS_RE.sub(" ", text)
    text = _CONTROL_TOKEN_RE.sub(lambda m: f"‹|{m.group(1)}|›", text)
    return _TAG_RE.sub(lambda m: f"‹{m.group(1)}›", text)


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def sha256_hex(obj: Any) -> str:
    """sha256 of the canonical JSON of obj."""
    return hashlib.sha256(_canonical(obj).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Prompt:
    """One prompt version, loaded from its directory."""

    task: str
    version: str
    system: str
    user_template: str
    few_shot: tuple[dict[str, Any], ...]
    params: dict[str, Any]
    schema: dict[str, Any]

    @property
    def hash(self) -> str:
        """Hash of everything that shapes a request except the paragraph: recorded on every annotation."""
        return sha256_hex(
            {
                "system": self.system,
                "user": self.user_template,
                "few_shot": list(self.few_shot),
                "params": self.params,
                "schema": self.schema,
            }
        )[:16]

    @property
    def max_tokens(self) -> int:
        return int(self.params.get("max_tokens", 64))

    @property
    def max_reply_attempts(self) -> int:
        return int(self.params.get("max_reply_attempts", 3))

    def render_user(self, title: str | None, section_title: str | None, text: str) -> str:
        """The user message for one paragraph (untrusted fields neutralised and truncated)."""
        limit = int(self.params.get("max_input_chars", 4000))
        body = text if len(text) <= limit else text[:limit] + " [...]"
        return string.Template(self.user_template).substitute(
            title=neutralise(title) or "(none)",
            section_title=neutralise(section_title) or "(none)",
            text=neutralise(body),
        )

    @functools.cached_property
    def _fixed_messages(self) -> tuple[dict[str, str], ...]:
        msgs = [{"role": "system", "content": self.system}]
        for ex in self.few_shot:
            msgs.append({"role": "user", "content": self.render_user(ex["title"], ex["section_title"], ex["text"])})
            msgs.append({"role": "assistant", "content": json.dumps(ex["reply"])})
        return tuple(msgs)

    def messages(self, title: str | None, section_title: str | None, text: str) -> list[dict[str, str]]:
        """Full chat: system rubric, few-shot turns, then the paragraph."""
        return [*(dict(m) for m in self._fixed_messages), {"role": "user", "content": self.render_user(title, section_title, text)}]


def chat_request(prompt: Prompt, model: str, messages: list[dict[str, str]], attempt: int = 0,
                 fmt: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """The body of one `/v1/chat/completions` request: what the online client POSTs and what a batch line
    carries (pipeline/teacher/batch_requests.py), so both paths ask exactly the same question.

    `attempt` 0 is the first ask (the prompt's temperature); a retry after an invalid reply uses its
    retry_temperature (a deterministic server would repeat the same bad reply at temperature 0).
    `fmt` is a precomputed `response_format()` (the client keeps one instead of rebuilding it per call).
    """
    temperature = prompt.params.get("temperature", 0.0) if attempt == 0 else prompt.params.get("retry_temperature", 0.7)
    return {
        "model": model,
        "messages": messages,
        "temperature": temperature,
        "max_tokens": prompt.max_tokens,
        "response_format": fmt if fmt is not None else response_format(),
    }


def input_hash(title: str | None, section_title: str | None, text: str) -> str:
    """Hash of a paragraph's inputs to the prompt (what, besides the prompt, decides the reply)."""
    return sha256_hex({"title": title, "section_title": section_title, "text": text})[:24]


def load_prompt(version: str = DEFAULT_VERSION, task: str = DEFAULT_TASK, root: Path = PROMPTS_ROOT) -> Prompt:
    """Load and check a prompt version. Raises ConfigError when it is missing or its schema drifted."""
    d = root / task / version
    if not d.is_dir():
        available = sorted(p.name for p in (root / task).glob("v*")) if (root / task).is_dir() else []
        raise ConfigError(f"no prompt version {version!r} in {root / task} (available: {available})")
    try:
        schema = json.loads((d / "reply_schema.json").read_text())
        prompt = Prompt(
            task=task,
            version=version,
            system=(d / "system.md").read_text(encoding="utf-8"),
            user_template=(d / "user.md").read_text(encoding="utf-8"),
            few_shot=tuple(json.loads((d / "few_shot.json").read_text(encoding="utf-8"))),
            params=json.loads((d / "params.json").read_text()),
            schema=schema,
        )
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"prompt {d} is incomplete or invalid: {e}") from e
    if schema != reply_schema():
        raise ConfigError(
            f"{d / 'reply_schema.json'} differs from the schema derived from pipeline/core/labels.py; "
            "the label schema changed, so make a new prompt version"
        )
    return prompt


if __name__ == "__main__":  # regenerate the checked copy: python -m pipeline.teacher.prompt > .../reply_schema.json
    print(json.dumps(reply_schema(), indent=2))
