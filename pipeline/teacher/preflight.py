"""Before the first paid call: is the endpoint reachable and the key accepted, and what will it cost?"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import openai

from pipeline.core.errors import ConfigError
from pipeline.teacher.cache import RequestCache, cache_key
from pipeline.teacher.checkpoint import Checkpointer
from pipeline.teacher.config import TeacherConfig, resolve_api_key
from pipeline.teacher.prompt import Prompt, input_hash

log = logging.getLogger(__name__)

CHARS_PER_TOKEN = 4.0  # English BPE tokenizers average ~4 characters per token; an estimate, not a bill
EST_COMPLETION_TOKENS = 24  # {"document_type": "Clinical case", "domain": "clinical", "educational_score": 4}


@dataclass
class Estimate:
    """What the calls not yet cached should cost."""

    n_items: int
    n_cached: int
    prompt_tokens: int
    completion_tokens: int
    cost: float

    @property
    def n_calls(self) -> int:
        return self.n_items - self.n_cached


def import_checkpoints(teacher: TeacherConfig) -> Checkpointer | None:
    """The process's checkpointer for this teacher's cache, with every shard of the work directory imported."""
    if not teacher.checkpoint_dir:
        return None
    cp = Checkpointer.shared(teacher.cache_path, teacher.checkpoint_dir, teacher.checkpoint_every, teacher.checkpoint_seconds)
    cp.import_shards()
    return cp


def estimate(items: list[dict[str, Any]], prompt: Prompt, teacher: TeacherConfig) -> Estimate:
    """Token and cost estimate for the uncached calls (characters / 4 per token; output ~24 tokens).

    Calls checkpointed in the work directory by another machine count as cached: they are imported first.
    """
    import_checkpoints(teacher)
    cache = RequestCache(teacher.cache_path)
    try:
        keys = [
            cache_key(prompt.version, prompt.hash, teacher.model, input_hash(i.get("title"), i.get("section_title"), i["text"]))
            for i in items
        ]
        cached = cache.has_many(keys)
    finally:
        cache.close()
    fixed = prompt.messages("", "", "")
    fixed_chars = sum(len(m["content"]) for m in fixed)
    p_tok = 0
    n_calls = 0
    for item, key in zip(items, keys, strict=True):
        if key in cached:
            continue
        n_calls += 1
        chars = fixed_chars + len(prompt.render_user(item.get("title"), item.get("section_title"), item["text"]))
        p_tok += int(chars / CHARS_PER_TOKEN) + 4 * len(fixed)
    c_tok = n_calls * min(EST_COMPLETION_TOKENS, prompt.max_tokens)
    return Estimate(len(items), len(items) - n_calls, p_tok, c_tok, teacher.cost(p_tok, c_tok))


def preflight(base_url: str, model: str, api_key_env: str = "OPENAI_API_KEY") -> None:
    """Fail before any paid call when the endpoint is unreachable or refuses the key."""
    host = urlparse(base_url).hostname or ""
    if api_key_env and os.environ.get(api_key_env) and base_url.startswith("http://") and host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("sending OPENAI_API_KEY over plain http to %s; use https for remote endpoints", host)
    client = openai.OpenAI(api_key=resolve_api_key(api_key_env), base_url=base_url, max_retries=2, timeout=30)
    try:
        served = [m.id for m in client.models.list()]
    except (openai.AuthenticationError, openai.PermissionDeniedError) as e:
        raise ConfigError(f"{base_url} refused the credentials (HTTP {e.status_code}); set OPENAI_API_KEY") from None
    except openai.APIConnectionError:
        raise ConfigError(f"cannot reach the teacher endpoint {base_url}; is the server running?") from None
    except openai.APIStatusError as e:  # some servers have no /models; the first call will tell
        log.warning("GET %s/models answered HTTP %s; continuing", base_url, e.status_code)
        return
    finally:
        client.close()
    if served and model not in served:
        log.warning("model %r is not among the models %s lists (%s)", model, base_url, ", ".join(served[:10]))
