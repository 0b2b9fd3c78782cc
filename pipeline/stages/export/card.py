"""The export's dataset card (README.md): what the shards hold and how each trainer loads them."""

from __future__ import annotations

from typing import Any

_LOAD = {
    "olmo": """OLMo-core reads the `.npy` token files (raw memmaps, no header) with their `.csv.gz` document index.
`mixture.olmo-mix.txt` lists each component's files once per epoch (`label,path`; written when every epoch
count is whole); `mixture.olmo-source-mixture.json` holds `SourceMixtureDatasetConfig` fields
(`requested_tokens`, per source `target_ratio` and `max_repetition_ratio`) for fractional epochs.

```python
NumpyFSLDatasetConfig(paths=[...], sequence_length=4096, tokenizer=..., dtype=NumpyDatasetDType.{dtype})
```""",
    "megatron": """Megatron-LM / NeMo read each `<prefix>.bin` + `<prefix>.idx` pair (MMIDIDX version 1).
`mixture.megatron-data-args.txt` is a `--data-args-path` file (`WEIGHT PREFIX` per line, weight = tokens to draw);
`mixture.megatron-per-split.json` the same blend for `--per-split-data-args-path`. Train on
`{total:,}` tokens: `--train-samples` = that / `--seq-length`.""",
    "datatrove": """nanotron's Nanoset reads every `.ds` file of a folder (with `.ds.index` and `.ds.metadata`), one folder
per component. `mixture.nanotron.json` holds `dataset_folder` and `dataset_weights` (tokens to draw) for
`data_stages[].data.dataset`.""",
}

READ_BACK = """```python
from pipeline.shards import read_documents
for tokens, doc_id in read_documents("{where}/{component}", format="{fmt}"):
    ...   # token ids, ending with the end-of-document token {eos}
```
`documents.parquet` maps each document id to its paragraph ids (`component`, `document_id`, `paragraph_ids`)."""


def card(m: dict[str, Any]) -> str:
    tok = m["tokenizer"]
    mix = m["mixture"]
    lines = [
        f"# {m['subset']}: {m['format']} shards",
        "",
        f"The subset `{m['subset']}` (recipe `{m['recipe'].get('name')}`, sha256 `{str(m['recipe'].get('sha256'))[:16]}`) "
        f"tokenized by `pmc-curate export` on {m['created_utc']}.",
        "",
        "| | |",
        "|---|---|",
        f"| tokenizer | `{tok['name']}` (tokenizer.json sha256 `{tok['sha256']}`), {tok['vocab_size']:,} entries |",
        f"| end of document | `{tok['eos_token']}` = {tok['eos_id']}, appended to every document |",
        f"| format | {m['format']}, token type {m['dtype']}, at most {m['max_tokens_per_shard']:,} tokens a shard |",
        f"| documents | {m['documents']:,} written ({m['distinct_documents']:,} distinct; a document is "
        f"{'an article' if m['unit'] == 'article' else 'a paragraph'}) |",
        f"| shards | {len(m['shards'])} |",
        f"| tokens | {m['tokens']:,} written (EOS included){' with copies materialized' if m['materialized'] else ''} |",
        f"| to train on | {mix['total_tokens']:,} tokens"
        + (f" (scaled to the target {mix['target_tokens']:,})" if mix["target_tokens"] else " (the recipe's repeats)")
        + " |",
        "",
        "## Mixture",
        "",
        "| component | documents | tokens | recipe repeat | tokens to draw | epochs |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for c in mix["components"]:
        lines.append(f"| {c['name']} | {c['documents']:,} | {c['tokens']:,} | {c['repeat']} | {c['budget_tokens']:,} | "
                     f"{c['epochs']:.4g} |")  # fmt: skip
    lines += ["", "## Shards", "", "| shard | documents | tokens |", "|---|---:|---:|"]
    for s in m["shards"]:
        lines.append(f"| {s['directory']}/{s['target']} | {s['documents']:,} | {s['tokens']:,} |")
    lines += ["", "## Loading", "", _LOAD[m["format"]].format(dtype=m["dtype"], total=mix["total_tokens"]), "",
              "Reading back with numpy only (this project's reader):", "",
              READ_BACK.format(where=m["location"], component=(mix["components"] or [{"name": "x1"}])[0]["name"],
                                fmt=m["format"], eos=tok["eos_id"]), ""]  # fmt: skip
    return "\n".join(lines)
