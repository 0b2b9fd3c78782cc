"""Faster CPU inference for the student: int8 linear layers (PyTorch) or ONNX Runtime (fp32 or int8).

Selected by `precision` (`propagate --precision`, classifiers.predict.Predictor):

    fp32        PyTorch, float32 (the reference)
    int8        PyTorch dynamic quantization of every nn.Linear (int8 weights per output channel,
                activations quantized per batch; torch.ao.quantization.quantize_dynamic)
    onnx        the student exported to ONNX, BERT-style fusions (attention, embeddings) by
                onnxruntime.transformers' optimizer, but LayerNorm and GELU left apart from their Adds
                (UNFUSED: faster on CPU), run by ONNX Runtime in float32
    onnx-int8   the same graph with its MatMul weights quantized to int8 per channel
                (onnxruntime.quantization.quantize_dynamic): the fastest CPU path measured (bench/exp_cpu_paths.py, docs/benchmarks.md)

The int8 paths change the outputs slightly; their agreement with fp32 (labels, score error) is measured by
bench/exp_cpu_paths.py and tested in tests/test_cpu_runtime.py. The labels' model_id records the precision.
Predictor's `fallback_margin` re-runs in fp32 the rows whose labels an int8 path cannot call (classifiers.predict).
The ONNX file is exported once per machine and model version into a cache folder (export + optimisation +
quantization take seconds to tens of seconds: a fixed cost per worker, not per batch).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.core.errors import ConfigError
from pipeline.core.labels import HEADS
from pipeline.core.precision import ONNX_PRECISIONS

log = logging.getLogger(__name__)

OUTPUTS = tuple(h.name for h in HEADS)
CACHE_ENV = "PMC_CURATE_ONNX_CACHE"
# Fusions left out, offline and in the session: ONNX Runtime's CPU SkipLayerNormalization kernel took 481 ms of
# 3,752 (13%) over 90 paragraphs at one thread, where the Add + LayerNormalization it replaces take 83 ms; BiasGelu
# is a little slower than its Add + Gelu. Without both: 1.63x -> 1.88x the PyTorch fp32 student per CPU-second
# (docs/benchmarks.md). A change here must change EXPORT_RECIPE, so that cached exports are not reused.
UNFUSED = ("enable_skip_layer_norm", "enable_bias_skip_layer_norm", "enable_bias_gelu")
DISABLED_OPTIMIZERS = ("SkipLayerNormFusion", "BiasGeluFusion")
EXPORT_RECIPE = "2"


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """Dynamic int8 quantization of the model's linear layers (CPU only)."""
    import warnings

    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():  # torch announces the move of this API to torchao; it still works as is
        warnings.simplefilter("ignore")
        # per output channel: measured closer to fp32 than one scale per tensor, at the same speed
        return quantize_dynamic(model.eval(), {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)


def _require_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as e:  # pragma: no cover - a dependency
        raise ConfigError("--precision onnx/onnx-int8 needs onnxruntime (pip install onnxruntime onnx)") from e
    return onnxruntime


class _Outputs(torch.nn.Module):
    """The student with a tuple output (ONNX export needs one)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(input_ids, attention_mask)
        return tuple(out[name] for name in OUTPUTS)


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path(tempfile.gettempdir()) / "pmc-curate-onnx")


def model_key(model_dir: Path, precision: str) -> str:
    """The exported file's identity: the model's files (name, size, mtime) and the versions that shape it."""
    import onnxruntime

    h = hashlib.sha256(f"{precision}|{EXPORT_RECIPE}|{torch.__version__}|{onnxruntime.__version__}|"
                       f"{model_dir.resolve()}".encode())
    for f in sorted(model_dir.iterdir()):
        if f.is_file():
            st = f.stat()
            h.update(f"{f.name}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:20]


def export_onnx(model: torch.nn.Module, out: Path, precision: str) -> Path:
    """Export, fuse (BERT-family graphs) and, for onnx-int8, quantize; written under a temporary name, then renamed."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    out.parent.mkdir(parents=True, exist_ok=True)
    encoder = model.encoder
    previous = getattr(encoder.config, "_attn_implementation", None)
    encoder.set_attn_implementation("eager")  # SDPA exports as a graph the fusions do not recognise
    wrapper = _Outputs(model).eval()
    ids = torch.full((2, 16), 5, dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0  # a padded row: the mask path is traced, not a constant
    tmp = out.parent / f".{out.name}.{uuid.uuid4().hex[:8]}"
    raw, fused = tmp.with_suffix(".raw.onnx"), tmp.with_suffix(".fused.onnx")
    try:
        import warnings

        with warnings.catch_warnings(), torch.inference_mode(False):
            warnings.simplefilter("ignore")
            torch.onnx.export(wrapper, (ids, mask), str(raw), dynamo=False, opset_version=17,
                              input_names=["input_ids", "attention_mask"], output_names=list(OUTPUTS),
                              dynamic_axes={"input_ids": {0: "batch", 1: "tokens"},
                                            "attention_mask": {0: "batch", 1: "tokens"}})  # fmt: skip
        cfg = encoder.config
        kind = cfg.model_type if cfg.model_type in ("bert", "roberta", "xlm-roberta") else None
        if kind:
            options = FusionOptions("bert")
            for name in UNFUSED:
                setattr(options, name, False)
            opt = optimize_model(str(raw), model_type="bert", num_heads=cfg.num_attention_heads,
                                 hidden_size=cfg.hidden_size, optimization_options=options)  # fmt: skip
            opt.save_model_to_file(str(fused))
        else:
            raw.rename(fused)
        if precision == "onnx-int8":
            # per_channel: closer to fp32 at the same speed (measured: label agreement 0.92 vs 0.73 per tensor)
            quantize_dynamic(str(fused), str(tmp), weight_type=QuantType.QInt8, per_channel=True,
                             extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})  # fmt: skip
        else:
            fused.rename(tmp)
        tmp.rename(out)
    finally:
        for f in (raw, fused, tmp):
            f.unlink(missing_ok=True)
        if previous:
            encoder.set_attn_implementation(previous)
        model.eval()
    return out


def open_session(path: Path, threads: int, optimized_to: Path | None = None, profile_prefix: str = "") -> Any:
    """An ONNX Runtime CPU session of an exported student: one thread pool of `threads`, every graph
    optimisation but DISABLED_OPTIMIZERS. `optimized_to`: write the graph the session runs there (tests read
    its operators); `profile_prefix`: ONNX Runtime's profiler on (bench/exp_cpu_paths.py --profile)."""
    ort = _require_onnxruntime()
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if optimized_to is not None:
        so.optimized_model_filepath = str(optimized_to)
    if profile_prefix:
        so.enable_profiling = True
        so.profile_file_prefix = profile_prefix
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"],
                                disabled_optimizers=list(DISABLED_OPTIMIZERS))  # fmt: skip


class OnnxRunner:
    """An ONNX Runtime session of the student: (input_ids, attention_mask) int64 arrays -> {head: array}."""

    def __init__(self, model: torch.nn.Module, model_dir: Path, precision: str, threads: int = 0,
                 optimized_to: Path | None = None) -> None:  # fmt: skip
        _require_onnxruntime()
        if precision not in ONNX_PRECISIONS:
            raise ConfigError(f"OnnxRunner: precision must be one of {ONNX_PRECISIONS}, not {precision!r}")
        path = cache_dir() / f"{model_key(Path(model_dir), precision)}.onnx"
        if not path.is_file():
            log.info("exporting the student to ONNX (%s) -> %s (once per machine and model version)", precision, path)
            export_onnx(model, path, precision)
        self.session = open_session(path, int(threads or torch.get_num_threads()), optimized_to)
        self.path = path

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> dict[str, np.ndarray]:
        out = self.session.run(None, {"input_ids": input_ids, "attention_mask": attention_mask})
        return dict(zip(OUTPUTS, out, strict=True))
