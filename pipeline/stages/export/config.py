"""What one export run is configured with: the flags of `pmc-curate export`, one field each."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.core.options import option
from pipeline.shards import DEFAULT_MAX_TOKENS, FORMATS

UNITS = ("article", "paragraph")


@dataclass(frozen=True)
class ExportConfig:
    """Settings of one export run (the workers receive it with the pipeline)."""

    workdir: str = option("", fixed=True, help="work directory with subsets/<subset>/ (local, s3://, gs://)")
    subset: str = option("", help="the subset to export: a folder of W/subsets written by curate")
    tokenizer: str = option("", help="minilm (offline MiniLM), a tokenizer.json file or folder, or a cached "
                                     "transformers id")
    format: str = option("olmo", choices=FORMATS, help="shard format: olmo (.npy + .csv.gz), megatron (.bin + .idx), "
                                                       "datatrove (.ds + .ds.index + .ds.metadata)")
    out: str | None = option(None, help="output folder, local or s3:// gs:// (default: W/exports/<subset>/<format>)")
    unit: str = option("article", choices=UNITS,
                       help="a document is an article's kept paragraphs in order, with its section headings "
                            "(curate's JSONL documents), or one paragraph")
    materialize: bool = option(False, help="write each repeated document as many times as the recipe repeats it "
                                           "(default: once, the repeats become mixture weights)")
    target_tokens: int | None = option(None, help="scale the mixture to exactly this many tokens (default: the "
                                                  "recipe's repeats, or curate's --target-tokens)")
    eos_token: str | None = option(None, help="end-of-document token (default: the tokenizer's own: <|endoftext|>, "
                                              "</s>, <eos> or [SEP])")
    token_dtype: str | None = option(None, help="token integer type (default: the smallest the format's trainer "
                                                "reads for this vocabulary)")
    max_tokens_per_shard: int = option(DEFAULT_MAX_TOKENS, help="tokens one shard holds at most (EOS included)")
    chunk_documents: int = option(20_000, help="documents one worker task tokenizes and writes; shard names and "
                                               "bytes depend on it, never on the number of workers")
    batch_size: int = option(1000, speed_only=True, help="documents per tokenizer batch")

    @property
    def subset_name(self) -> str:
        return self.subset
