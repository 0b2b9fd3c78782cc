"""The subset's size in a trainer's tokens, and `--target-tokens`: the recipe's repeats scaled to a budget.

    pmc-curate curate --recipe be-all --tokenizer PATH_OR_ID [--target-tokens 33600000000]

Counted, not estimated: every distinct document of the subset (an article's kept paragraphs with its
section headings, exactly what `pmc-curate export --unit article` writes) is tokenized once with the
target tokenizer, plus its end-of-document token. A *component* is the documents the recipe repeats
the same number of times; the recipe draws repeat x tokens from each. `--target-tokens N` keeps those
proportions and scales them to exactly N tokens (pipeline.shards.apportion, largest remainders), so each
component is seen N x w_i / W times (its effective epochs). The subset's rows keep the recipe's own
repeats; `pmc-curate export` writes the scaled budget into the trainer's mixture file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from pipeline.core.errors import ConfigError
from pipeline.shards import apportion
from pipeline.stages.export import tokenizer as T
from pipeline.stages.export.plan import article_text, component_name

_BATCH = 512  # documents per tokenizer call


def _articles(data_files: list[Path]) -> Iterator[tuple[int, str]]:
    """(repeat, document text) of every distinct article document, in the subset's order."""
    current: str | None = None
    pieces: list[tuple[str | None, str]] = []
    repeat = 0
    counts: dict[str, int] = {}
    for f in data_files:  # copies: the number of rows of a paragraph (an article's copies are whole)
        for b in pq.ParquetFile(f).iter_batches(columns=["pmcid", "copy"], batch_size=65_536):
            for aid, c in zip(b.column(0).to_pylist(), b.column(1).to_pylist(), strict=True):
                counts[aid] = max(counts.get(aid, 0), c + 1)
    for f in data_files:
        cols = ["pmcid", "section_title", "text", "copy"]
        for b in pq.ParquetFile(f).iter_batches(columns=cols, batch_size=8192):
            for aid, title, text, copy in zip(*(b.column(c).to_pylist() for c in cols), strict=True):
                if copy != 0:
                    continue
                if aid != current:
                    if pieces:
                        yield repeat, article_text(pieces)
                    current, pieces, repeat = aid, [], counts[aid]
                pieces.append((title, text))
    if pieces:
        yield repeat, article_text(pieces)


def budget(staging: Path, tokenizer: str | None, target_tokens: int | None) -> dict[str, Any]:
    """Tokens of each component in the target tokenizer and, with a target, each one's budget and epochs."""
    if target_tokens is not None and target_tokens < 1:
        raise ConfigError("--target-tokens must be a positive number of tokens")
    tok, info = T.load(tokenizer or T.MINILM)
    docs: dict[int, list[int]] = {}  # repeat -> [documents, tokens]

    def flush(batch: list[tuple[int, str]]) -> None:
        for (rep, _), enc in zip(batch, tok.encode_batch([t for _, t in batch], add_special_tokens=False), strict=True):
            d = docs.setdefault(rep, [0, 0])
            d[0] += 1
            d[1] += len(enc.ids) + 1  # + the end-of-document token
    batch: list[tuple[int, str]] = []
    for item in _articles(sorted((staging / "data").glob("*.parquet"))):
        batch.append(item)
        if len(batch) >= _BATCH:
            flush(batch)
            batch = []
    if batch:
        flush(batch)
    reps = sorted(docs)
    weights = [r * docs[r][1] for r in reps]
    if target_tokens is not None and not sum(weights):
        raise ConfigError("--target-tokens: the subset is empty, there is nothing to scale")
    budgets = apportion(target_tokens, weights) if target_tokens is not None else weights
    components = [{"name": component_name(r), "repeat": r, "documents": docs[r][0], "tokens": docs[r][1],
                   "budget_tokens": b, "epochs": b / docs[r][1] if docs[r][1] else None}
                  for r, b in zip(reps, budgets, strict=True)]  # fmt: skip
    return {
        "tokenizer": info.to_dict(),
        "unit": "article",
        "counted": "exactly: every distinct document, once, with its end-of-document token",
        "distinct_tokens": sum(docs[r][1] for r in reps),
        "recipe_tokens": sum(weights),
        "target_tokens": target_tokens,
        "total_tokens": sum(budgets),
        "components": components,
    }


def budget_lines(b: dict[str, Any]) -> list[str]:
    """The budget as text lines (the console and the card)."""
    head = (f"budget in {b['tokenizer']['name']} tokens (EOS included): {b['distinct_tokens']:,} distinct, "
            f"{b['recipe_tokens']:,} with the recipe's repeats")  # fmt: skip
    if b["target_tokens"] is not None:
        head += f", scaled to the target {b['target_tokens']:,}"
    lines = [head]
    for c in b["components"]:
        epochs = "n/a" if c["epochs"] is None else f"{c['epochs']:.4g}"
        lines.append(f"  {c['name']}: {c['documents']:,} documents, {c['tokens']:,} tokens x {epochs} epochs "
                     f"= {c['budget_tokens']:,} (recipe repeat {c['repeat']})")  # fmt: skip
    return lines
