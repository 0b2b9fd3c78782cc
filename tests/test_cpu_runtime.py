"""The faster CPU paths (classifiers.cpu_runtime): ONNX fp32 reproduces PyTorch, the int8 paths agree with fp32,
and the labels' model id records the precision."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from classifiers.model import StudentModel
from classifiers.predict import Predictor
from pipeline.core.errors import ConfigError

MAX_LENGTH = 96
WORDS = ["patients", "tumour", "cells", "were", "cultured", "treated", "with", "cisplatin", "for", "hours", "the", "mice", "received", "a", "dose", "of", "we", "measured", "expression", "by", "western", "blot", "randomised", "trial", "outcome", "mortality", "children", "fever", "cough", "figure", "shows", "significant", "increase", "p", "value", "protein", "binding", "kinase", "pathway", "la", "patiente", "a", "été", "traitée"]


def _texts(n: int = 48) -> list[str]:
    """Varied lengths (4 to 150 words, some cut at MAX_LENGTH), deterministic."""
    rng = np.random.default_rng(0)
    return [" ".join(rng.choice(WORDS, size=int(k))) + "." for k in itertools.islice(itertools.cycle((4, 20, 45, 90, 150)), n)]


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default encoder with random heads large enough that labels and score depend on the input
    (fresh heads give near-uniform outputs, whose argmax any rounding flips)."""
    from transformers import AutoTokenizer

    from classifiers.train import default_base_model

    torch.manual_seed(0)
    model = StudentModel.from_base(default_base_model())
    with torch.no_grad():
        for head in model.heads.values():
            head.weight.normal_(0, 0.5)
            head.bias.zero_()
        model.heads["educational_score"].bias.fill_(3.0)
    d = tmp_path_factory.mktemp("student")
    model.save(d, AutoTokenizer.from_pretrained(default_base_model()), {"max_length": MAX_LENGTH, "model_id": "s"})
    return d


@pytest.fixture(autouse=True)
def onnx_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PMC_CURATE_ONNX_CACHE", str(tmp_path_factory.getbasetemp() / "onnx-cache"))


@pytest.fixture(scope="module")
def reference(student_dir: Path):  # type: ignore[no-untyped-def]
    return Predictor.from_dir(student_dir, precision="fp32", batch_size=16).predict(_texts())


def _labels(pred) -> np.ndarray:  # type: ignore[no-untyped-def]
    return np.stack([p.argmax(1) for p in pred.probs.values()], axis=1)


def test_onnx_fp32_reproduces_pytorch(student_dir: Path, reference) -> None:  # type: ignore[no-untyped-def]
    p = Predictor.from_dir(student_dir, precision="onnx", batch_size=16)
    assert p.model_id == "s+onnx"
    out = p.predict(_texts())
    for name in reference.probs:
        np.testing.assert_allclose(out.probs[name], reference.probs[name], atol=1e-4)
    np.testing.assert_allclose(out.educational_score, reference.educational_score, atol=1e-4)
    assert out.truncated.tolist() == reference.truncated.tolist() and reference.truncated.any()
    # the second predictor of the same model reuses the exported file
    assert Predictor.from_dir(student_dir, precision="onnx").runner.path == p.runner.path


@pytest.mark.parametrize("precision", ["int8", "onnx-int8"])
def test_int8_paths_agree_with_fp32(student_dir: Path, reference, precision: str) -> None:  # type: ignore[no-untyped-def]
    p = Predictor.from_dir(student_dir, precision=precision, batch_size=16)
    assert p.model_id == f"s+{precision}"
    out = p.predict(_texts())
    assert np.ptp(reference.educational_score) > 0.3  # the score depends on the input, so the MAE means something
    assert len(np.unique(_labels(reference)[:, 0])) > 1
    agreement = (_labels(out) == _labels(reference)).mean()
    mae = np.abs(out.educational_score - reference.educational_score).mean()
    # Random heads on near-duplicate synthetic texts have small margins (measured here: 0.83-0.94), so the
    # bar is well below the agreement on real paragraphs with fitted heads (bench/exp_cpu_paths.py,
    # docs/benchmarks.md); a broken quantization (wrong scales, a dropped mask) falls towards chance (~0.3).
    assert agreement >= 0.75, agreement
    # score head: random weights of std 0.5 make it ~10x more sensitive than a fitted one (its range saturates)
    assert mae <= 0.1 * np.ptp(reference.educational_score), mae


def test_cpu_paths_refuse_a_gpu(student_dir: Path) -> None:
    model = StudentModel.from_dir(student_dir)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(student_dir)
    with pytest.raises(ConfigError, match="needs the model directory"):
        Predictor(model, tok, max_length=MAX_LENGTH, precision="onnx")
    if torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CPU path"):
            Predictor(model, tok, max_length=MAX_LENGTH, device="cuda", precision="int8")


def test_session_runs_the_unfused_layer_norm_and_gelu(student_dir: Path, tmp_path: Path) -> None:
    """ONNX Runtime's CPU SkipLayerNormalization is ~6x slower than the Add + LayerNormalization it fuses
    (docs/benchmarks.md): neither the export nor the session may fuse it back, and the int8 graph stays int8."""
    import onnx

    from classifiers.cpu_runtime import OnnxRunner

    model = StudentModel.from_dir(student_dir).eval()
    runner = OnnxRunner(model, student_dir, "onnx-int8", threads=1, optimized_to=tmp_path / "ran.onnx")
    exported = {n.op_type for n in onnx.load(str(runner.path)).graph.node}
    ran = {n.op_type for n in onnx.load(str(tmp_path / "ran.onnx")).graph.node}
    for ops in (exported, ran):
        assert not ops & {"SkipLayerNormalization", "SkipSimplifiedLayerNormalization", "BiasGelu"}, ops
        assert "LayerNormalization" in ops and "QAttention" in ops, ops
    assert "Gelu" in ran and ran & {"MatMulInteger", "DynamicQuantizeMatMul"}, ran


@pytest.mark.parametrize("precision", ["int8", "onnx-int8"])
def test_fallback_reruns_the_uncertain_rows_in_fp32(student_dir: Path, reference, precision: str) -> None:  # type: ignore[no-untyped-def]
    """--fallback-margin: rows whose top two classes an int8 path puts closer than the margin get fp32's outputs;
    the others keep the int8 ones; the model id says so."""
    texts = _texts()
    plain = Predictor.from_dir(student_dir, precision=precision, batch_size=16).predict(texts)
    top2 = {h: np.sort(p, axis=1)[:, -2:] for h, p in plain.probs.items()}
    close = np.any([t[:, 1] - t[:, 0] < 0.2 for t in top2.values()], axis=0)
    assert 0 < close.sum() < len(texts)  # the margin splits these rows, so both branches are checked
    p = Predictor.from_dir(student_dir, precision=precision, batch_size=16, fallback_margin=0.2)
    assert p.model_id == f"s+{precision}+fp32-below-0.2"
    out = p.predict(texts)
    assert p.fallbacks == close.sum()
    for name in reference.probs:
        np.testing.assert_allclose(out.probs[name][close], reference.probs[name][close], atol=1e-5)
        np.testing.assert_array_equal(out.probs[name][~close], plain.probs[name][~close])
    np.testing.assert_allclose(out.educational_score[close], reference.educational_score[close], atol=1e-5)
    np.testing.assert_array_equal(out.educational_score[~close], plain.educational_score[~close])
    assert (_labels(out) == _labels(reference)).mean() >= (_labels(plain) == _labels(reference)).mean()


def test_fallback_needs_an_int8_path(student_dir: Path) -> None:
    with pytest.raises(ConfigError, match="needs --precision int8 or onnx-int8, not onnx"):
        Predictor.from_dir(student_dir, precision="onnx", fallback_margin=0.1)
    with pytest.raises(ConfigError, match=r"must be in \[0, 1\)"):
        Predictor.from_dir(student_dir, precision="int8", fallback_margin=1.5)
