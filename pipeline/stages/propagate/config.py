"""What one propagation run is configured with: the flags of `pmc-curate propagate`, one field each."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.core.options import option
from pipeline.core.precision import INT8_PRECISIONS, PRECISIONS

# int8 paths: rows whose top two classes of a head are closer than this run again in fp32. At 0.05 the
# trained bench student's labels agree with fp32 on 99.2% (98.7% without), 4% of rows run twice: docs/benchmarks.md
DEFAULT_FALLBACK_MARGIN = 0.05
CPU_MAX_TOKENS = 2048  # padded tokens per forward pass on a CPU, unless --max-tokens says otherwise


@dataclass(frozen=True)
class PropagateConfig:
    """Settings of one propagation run (the workers receive it with the pipeline)."""

    workdir: str = option("", fixed=True, help="work directory with paragraphs/ and model/")
    model_dir: str = option("", deprecated=("--model",), help="trained student directory (default: W/model)")
    device: str = option("cpu", help="cpu, cuda, cuda:N or auto")
    # Sub-batch (one forward pass). 64 keeps CPU caches warm; on a GPU 256-1024 (NeMo Curator's range).
    batch_size: int = option(64, help="paragraphs per forward pass")
    # On a CPU a forward pass costs more per token as it widens (attention, caches): measured 0.81x the
    # batch-1 pipeline at 16 x 512 tokens, 1.09x at 4 x 512 (docs/benchmarks.md). A cap on padded tokens
    # keeps long paragraphs in small passes and lets short ones fill bigger ones.
    max_tokens: int | None = option(None, metavar="N", speed_only=True,
                                    help="padded tokens per forward pass at most (default: 2048 on a CPU, "
                                         "no cap on a GPU; 0: no cap)")
    # Beam batches up to this many paragraphs before run_inference sorts them by length: more
    # paragraphs per Beam batch = better length grouping, at the cost of memory per worker.
    beam_batch_size: int = option(1024, help="paragraphs per Beam batch, sorted by length inside")
    max_length: int | None = option(None, help="tokens (default: the training length)")
    precision: str = option("auto", choices=PRECISIONS, help="inference precision (auto: fp16 on a GPU, fp32 on CPU; int8, onnx, onnx-int8: faster CPU paths)")
    fallback_margin: float | None = option(None, metavar="M",
                                           help="int8 paths: run again in fp32 the paragraphs whose two likeliest "
                                                "classes of a head are closer than M (default 0.05 with --precision "
                                                "int8/onnx-int8; 0: never)")
    # 0 = torch's default; set 1-2 when running several Beam worker processes.
    torch_threads: int = option(0, speed_only=True, help="torch intra-op threads per worker (0: torch default)")
    # classifiers.tfidf_heads: train saves TF-IDF heads beside the student and says when one beats it
    tfidf_heads: list[str] = option(default_factory=list, metavar="HEAD", nargs="+",
                                    help="take these heads from the TF-IDF model saved beside the student "
                                         "(document_type, domain, educational_score, or auto: the heads on "
                                         "which train found TF-IDF better); model_id names both models")
    full: bool = option(False, help="label every paragraph (default: keep the labels the same model gave the same input)")


def fallback_margin(config: PropagateConfig) -> float:
    """The run's fp32 fallback margin: the flag, else the default for an int8 precision, else none."""
    if config.fallback_margin is not None:
        return float(config.fallback_margin)
    return DEFAULT_FALLBACK_MARGIN if config.precision in INT8_PRECISIONS else 0.0


def forward_tokens(config: PropagateConfig) -> int | None:
    """The cap on padded tokens per forward pass for this run's device (None: no cap)."""
    if config.max_tokens is not None:
        return config.max_tokens or None
    on_gpu = config.device.startswith("cuda")
    if config.device == "auto":
        import torch

        on_gpu = torch.cuda.is_available()
    return None if on_gpu else CPU_MAX_TOKENS
