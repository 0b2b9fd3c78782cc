"""Propagation throughput: our inference path vs transformers' pipeline("text-classification").

Same model weights, same real PMC paragraphs (the 83-article sample), same max length, same
process, same torch threads. Prints paragraphs/s per path and the ratio to the plain pipeline.

    # CPU (the issue's target: >= 2x the plain pipeline)
    .venv/bin/python bench/bench_propagate.py --threads 2 --limit 600 --max-length 512
    # GPU, one command: an xlm-roberta-base-sized encoder (random weights), 512 tokens, fp16 autocast (or
    # --precision bf16), length-sorted sub-batches of up to --max-tokens tokens; tokenization timed alone too
    .venv/bin/python bench/bench_propagate.py --gpu
    # the same argument path on CPU with a tiny XLM-R config (checks the script, not the GPU)
    .venv/bin/python bench/bench_propagate.py --gpu --device cpu --encoder tiny-xlmr --precision fp32 --limit 16

Paths:
  ours            classifiers.predict.Predictor: one tokenizer call, length-sorted sub-batches
                  padded to their own longest member, inference_mode, fp16 autocast on GPU
  beam            the whole `propagate` Beam pipeline (Parquet in, Parquet out) on the DirectRunner
  pipeline        transformers pipeline("text-classification"), its default batch_size (1)
  pipeline-bs     the same pipeline with batch_size = --batch-size (pads each batch to its longest)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# On a GPU the Rust tokenizer's own threads keep the device fed; on the shared CPU they would compete with torch.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true" if "--gpu" in sys.argv else "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

from classifiers.data import model_input
from classifiers.model import StudentModel
from classifiers.predict import Predictor
from classifiers.train import default_base_model
from pipeline.teacher.rules import sample_paragraphs

SAMPLE = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "pmc-oa-sample"


def xlmr_base_config(tiny: bool = False):  # type: ignore[no-untyped-def]
    """xlm-roberta-base's architecture (278M parameters), written out: no hub access needed (tiny: 2 layers of
    64, the MiniLM vocabulary, to check the GPU argument path on a CPU)."""
    from transformers import XLMRobertaConfig

    if tiny:
        return XLMRobertaConfig(vocab_size=30522, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                                intermediate_size=128, max_position_embeddings=514, type_vocab_size=1,
                                pad_token_id=0, layer_norm_eps=1e-5)  # fmt: skip
    return XLMRobertaConfig(vocab_size=250002, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                            intermediate_size=3072, max_position_embeddings=514, type_vocab_size=1,
                            pad_token_id=1, bos_token_id=0, eos_token_id=2, layer_norm_eps=1e-5)


def build_model(tmp: Path, encoder: str, max_length: int) -> Path:
    """A saved student directory: MiniLM (CPU) or a random xlm-roberta-base-sized encoder (GPU).

    The tokenizer is MiniLM's WordPiece in every case (no hub access): token counts, not token ids, set the
    cost of a forward pass, and the ids stay below the vocabulary size of both configs."""
    tok = AutoTokenizer.from_pretrained(default_base_model())
    torch.manual_seed(0)
    if encoder == "minilm":
        model = StudentModel.from_base(default_base_model())
    else:
        model = StudentModel.from_config(xlmr_base_config(tiny=encoder == "tiny-xlmr"))
    model.save(tmp, tok, {"max_length": max_length, "model_id": "bench"})
    return tmp


CPU_SECONDS: dict[str, float] = {}


def timed(fn, name: str = "") -> float:  # type: ignore[no-untyped-def]
    """Wall seconds of fn(); its process CPU seconds go to CPU_SECONDS[name] (a shared machine distorts
    wall time much more than CPU time, so both are reported)."""
    c, t = time.process_time(), time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    CPU_SECONDS[name] = time.process_time() - c
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sample", default=str(SAMPLE))
    ap.add_argument("--limit", type=int, default=600, help="paragraphs (0 = all)")
    ap.add_argument("--repeat-texts", type=int, default=1, help="repeat the paragraph list (GPU needs more work)")
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--gpu", action="store_true",
                    help="the GPU measurement: --device cuda, --encoder xlmr-base, sub-batches of --max-tokens, "
                         "--repeat-texts 12, pipeline rows skipped unless asked")
    ap.add_argument("--device", default="", help="cpu or cuda (default: cuda with --gpu, else cpu)")
    ap.add_argument("--encoder", choices=("minilm", "xlmr-base", "tiny-xlmr"), default="",
                    help="default: xlmr-base with --gpu, else minilm (MiniLM-L6, pretrained)")
    ap.add_argument("--max-tokens", type=int, default=0,
                    help="sub-batches of at most this many tokens (padded), length-sorted (default with --gpu: 65536)")
    ap.add_argument("--precision", default="", help="default: fp16 with --gpu, else fp32")
    ap.add_argument("--fallback-margin", type=float, default=None,
                    help="int8 precisions: as propagate's --fallback-margin (default: propagate's default)")
    ap.add_argument("--skip", default="", help="comma-separated paths to skip (pipeline,pipeline-bs,beam)")
    ap.add_argument("--json", default="", help="also write the results here")
    ap.add_argument("--smoke", action="store_true",
                    help="tiny sizes (24 paragraphs, 64 tokens): checks that the benchmark still runs; figures mean nothing")
    args = ap.parse_args()
    if args.smoke:
        args.limit, args.max_length, args.batch_size, args.threads = 24, 64, 8, 1
    if args.gpu:
        args.device = args.device or "cuda"
        args.encoder = args.encoder or "xlmr-base"
        args.max_tokens = args.max_tokens or 65536
        args.batch_size = max(args.batch_size, 4096)  # the token budget, not the count, closes a sub-batch
        args.repeat_texts = args.repeat_texts if args.repeat_texts > 1 else 12
        args.skip = args.skip or "pipeline,pipeline-bs,beam"
    args.device = args.device or "cpu"
    if args.max_tokens is None and not args.device.startswith("cuda"):
        from pipeline.stages.propagate.config import CPU_MAX_TOKENS

        args.max_tokens = CPU_MAX_TOKENS  # what `propagate` uses on a CPU by default (0: no cap)
    args.encoder = args.encoder or "minilm"
    args.precision = args.precision or ("fp16" if args.device.startswith("cuda") else "fp32")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("bench_propagate: --gpu / --device cuda needs a CUDA device, and torch sees none "
              f"(torch {torch.__version__}, CUDA build {torch.version.cuda or 'none'}). Run it on a GPU machine, "
              "or check the argument path here with: --gpu --device cpu --encoder tiny-xlmr --precision fp32",
              file=sys.stderr)
        return 2
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"
          + (" (above the core count: wall-time ratios are not comparable to an idle run)"
             if os.getloadavg()[0] > (os.cpu_count() or 1) else ""))
    torch.set_num_threads(args.threads)
    device = args.device
    skip = set(filter(None, args.skip.split(",")))

    paragraphs = sample_paragraphs(Path(args.sample))
    if args.limit:
        # every k-th paragraph, so the subset keeps the sample's length distribution
        step = max(1, len(paragraphs) // args.limit)
        paragraphs = paragraphs[::step][: args.limit]
    paragraphs = paragraphs * args.repeat_texts
    texts = [model_input(p.text, p.section_title) for p in paragraphs]
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as d:
        model_dir = build_model(Path(d), args.encoder, args.max_length)
        from pipeline.stages.propagate.config import PropagateConfig, fallback_margin

        # the margin propagate would use with this precision, so that `ours` and `beam` run the same model
        margin = fallback_margin(PropagateConfig(precision=args.precision, fallback_margin=args.fallback_margin))
        pred = Predictor.from_dir(model_dir, device=device, batch_size=args.batch_size, max_length=args.max_length,
                                  precision=args.precision, max_tokens=args.max_tokens or None, fallback_margin=margin)
        pred.tokenize(texts[:64])  # warm-up
        tok_s = timed(lambda: pred.tokenize(texts), "tokenize")
        results["tokenize"] = len(texts) / tok_s
        ids, truncated = pred.tokenize(texts)
        n_tokens = sum(len(x) for x in ids)
        print(f"model {pred.model_id}; {len(texts)} paragraphs, {n_tokens} tokens after truncation at {pred.max_length} "
              f"({int(truncated.sum())} truncated), device {device}, torch threads {torch.get_num_threads()}")
        pred.predict(texts[: args.batch_size])  # warm-up
        results["ours"] = len(texts) / timed(lambda: pred.predict(texts), "ours")

        if not {"pipeline", "pipeline-bs"} <= skip:
            hf = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=4)
            tok = AutoTokenizer.from_pretrained(model_dir)
            kwargs = {"dtype": torch.float16} if device.startswith("cuda") else {}
            clf = pipeline("text-classification", model=hf.to(**kwargs), tokenizer=tok, device=device)
            clf(texts[:4], truncation=True, max_length=args.max_length)  # warm-up
            if "pipeline" not in skip:
                results["pipeline"] = len(texts) / timed(
                    lambda: clf(texts, truncation=True, max_length=args.max_length), "pipeline")
            if "pipeline-bs" not in skip:
                results["pipeline-bs"] = len(texts) / timed(
                    lambda: clf(texts, truncation=True, max_length=args.max_length, batch_size=args.batch_size), "pipeline-bs")
        if "beam" not in skip and device == "cpu":
            from pipeline.core.records import Paragraph
            from pipeline.core.workdir import Workdir
            from pipeline.stages.propagate.stage import run_propagate
            from pipeline.teacher.rules import write_table

            w = Workdir.of(Path(d) / "work")
            write_table(paragraphs, Paragraph, w.paragraphs / "part-00000.parquet")
            cfg = PropagateConfig(model_dir=str(model_dir), batch_size=args.batch_size, max_length=args.max_length,
                                  torch_threads=args.threads, max_tokens=args.max_tokens, precision=args.precision,
                                  fallback_margin=margin)
            # The stage on a fifth of the paragraphs, then on all: the difference is its steady state,
            # apart from the fixed costs (pipeline construction, model load, Parquet files) both pay.
            small = Workdir.of(Path(d) / "work-small")
            n_small = max(1, len(paragraphs) // 5)
            write_table(paragraphs[:n_small], Paragraph, small.paragraphs / "part-00000.parquet")
            t_small = timed(lambda: run_propagate(small, cfg, []), "beam-small")
            t_full = timed(lambda: run_propagate(w, cfg, []), "beam")
            results["beam"] = len(texts) / t_full
            steady = (len(texts) - n_small) / max(t_full - t_small, 1e-9)
            steady_cpu = (len(texts) - n_small) / max(CPU_SECONDS["beam"] - CPU_SECONDS["beam-small"], 1e-9)
            fixed = t_small - n_small / steady
            print(f"beam stage: {t_small:.1f} s for {n_small} paragraphs, {t_full:.1f} s for {len(texts)}: steady "
                  f"{steady:.1f} paragraphs/s ({steady / results['ours']:.2f}x ours), "
                  f"{steady_cpu:.1f} per CPU-s ({steady_cpu / (len(texts) / CPU_SECONDS['ours']):.2f}x ours); "
                  f"fixed costs ~{fixed:.1f} s")
            results["beam-steady"] = steady
            CPU_SECONDS["beam-steady"] = len(texts) / steady_cpu

    base = results.get("pipeline")
    cpu_rate = {k: len(texts) / max(CPU_SECONDS[k], 1e-9) for k in results}
    print(f"\n{'path':<12} {'paragraphs/s':>13} {'x pipeline':>11} {'paragraphs/CPU-s':>17} {'x pipeline':>11}")
    for k, v in results.items():
        ratio = f"{v / base:.2f}" if base else "-"
        cratio = f"{cpu_rate[k] / cpu_rate['pipeline']:.2f}" if "pipeline" in cpu_rate else "-"
        print(f"{k:<12} {v:>13.1f} {ratio:>11} {cpu_rate[k]:>17.1f} {cratio:>11}")
    if pred.max_tokens:
        print(f"sub-batches of at most {pred.max_tokens} tokens: {len(pred.batches(ids))} for {len(texts)} paragraphs; "
              f"tokenize = the tokenizer alone (its threads: TOKENIZERS_PARALLELISM={os.environ['TOKENIZERS_PARALLELISM']})")
    machine = torch.cuda.get_device_name(0) if device.startswith("cuda") else f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "cpu_seconds": CPU_SECONDS, "n": len(texts), "machine": machine,
                                               "args": vars(args)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
