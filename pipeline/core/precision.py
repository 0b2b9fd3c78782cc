"""Inference precisions and the int8 paths' fp32 fallback: one definition for propagate's flags (no torch
import: the launcher of a Dataflow or Flink job may not have it) and for classifiers' runtimes."""

from __future__ import annotations

from pipeline.core.errors import ConfigError

CPU_PRECISIONS = ("int8", "onnx", "onnx-int8")  # classifiers.cpu_runtime; refused on a GPU
ONNX_PRECISIONS = ("onnx", "onnx-int8")
INT8_PRECISIONS = ("int8", "onnx-int8")  # the ones --fallback-margin applies to
PRECISIONS = ("auto", "fp32", "fp16", "bf16", *CPU_PRECISIONS)


def check_fallback_margin(margin: float, precision: str) -> None:
    """ConfigError unless `margin` is in [0, 1) and, when not 0, `precision` is an int8 path."""
    if not 0.0 <= margin < 1.0:
        raise ConfigError(f"--fallback-margin must be in [0, 1), not {margin}")
    if margin and precision not in INT8_PRECISIONS:
        raise ConfigError(f"--fallback-margin re-runs an int8 path's uncertain paragraphs in fp32; it needs "
                          f"--precision {' or '.join(INT8_PRECISIONS)}, not {precision}")  # fmt: skip
