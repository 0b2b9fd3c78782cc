"""The pilot-size levers of issue 13, unit by unit: minimum validation size, class weights, the
early-stopping criterion, temperature scaling (fit, saved with the heads, applied by Predictor), the
baselines and their gaps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from classifiers import baselines as B
from classifiers.calibration import calibrate, fit_temperature, softmax
from classifiers.data import Example, split_by_article
from classifiers.model import StudentModel
from classifiers.predict import Predictor
from classifiers.train import TrainConfig, default_base_model, schedule_steps
from classifiers.trainer import class_weights, task_score


def _examples(n_articles: int, per_article: int) -> list[Example]:
    return [Example(f"PMC{a}/p[{i}]", f"PMC{a}", f"text {a} {i}", None, 0, 0, 3.0)
            for a in range(n_articles) for i in range(per_article)]


def test_min_validation_adds_whole_articles_up_to_the_cap() -> None:
    ex = _examples(40, 15)  # 600 paragraphs: 10% is ~60
    _, plain = split_by_article(ex, seed=13, validation_fraction=0.1)
    train, val = split_by_article(ex, seed=13, validation_fraction=0.1, min_validation=150)
    assert len(val) >= 150 > len(plain) and {e.id for e in plain} <= {e.id for e in val}
    assert not {e.article_id for e in train} & {e.article_id for e in val}
    _, capped = split_by_article(ex, seed=13, validation_fraction=0.1, min_validation=10_000)
    assert len(capped) <= 0.3 * len(ex)
    # many labels: the fraction alone already gives more than the minimum; nothing moves
    big = _examples(400, 15)
    assert split_by_article(big, 13, 0.1, 150) == split_by_article(big, 13, 0.1)


def test_schedule_has_a_minimum_for_small_data_only() -> None:
    cfg = TrainConfig()
    assert schedule_steps(450, cfg) == 300  # a 600-label pilot: 29 steps an epoch, 3 epochs would be 87
    assert schedule_steps(19, cfg) == 2 * 12  # the demo's handful: at most 12 passes
    assert schedule_steps(400_000, cfg) == 3 * 25_000  # 400K labels: the epochs decide
    assert schedule_steps(450, TrainConfig(max_steps=4)) == 4
    assert schedule_steps(450, TrainConfig(min_steps=0)) == 87


def test_class_weights_favour_rare_classes() -> None:
    y = torch.tensor([0] * 90 + [1] * 9 + [2] * 1)
    w = class_weights(y, 4, 0.5)
    assert w[2] > w[1] > w[0] and w[3] == w.max()  # class 3 never seen: the largest weight
    assert float(w[y].mean()) == pytest.approx(1.0)
    assert class_weights(y, 4, 0.0) is None


def test_task_score_ignores_undefined_correlation() -> None:
    m = {"document_type": {"macro_f1": 0.3}, "domain": {"macro_f1": 0.6}, "educational_score": {"pearson_r": float("nan")}}
    assert task_score(m) == pytest.approx(0.3)


def test_temperature_scaling_recovers_an_overconfident_model() -> None:
    rng = np.random.default_rng(0)
    n, k = 4000, 4
    true_logits = rng.normal(0, 1.5, (n, k))
    y = np.array([rng.choice(k, p=p) for p in softmax(true_logits)])
    overconfident = softmax(true_logits * 3.0)  # the same ranking, three times too sharp
    assert fit_temperature(overconfident, y) == pytest.approx(3.0, rel=0.1)
    c = calibrate(overconfident, y)
    assert c["ece_after"] < c["ece_before"] / 2 and c["nll_after"] < c["nll_before"]
    assert (c["probs"].argmax(1) == overconfident.argmax(1)).all()  # argmax untouched
    assert fit_temperature(overconfident[:0], y[:0]) == 1.0


def test_temperatures_are_saved_with_the_heads_and_applied(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    base = default_base_model()
    model = StudentModel.from_base(base)
    tok = AutoTokenizer.from_pretrained(base)
    model.save(tmp_path / "a", tok, {"max_length": 32})
    model.temperature["document_type"] = 2.5
    model.save(tmp_path / "b", tok, {"max_length": 32})
    a, b = Predictor.from_dir(tmp_path / "a"), Predictor.from_dir(tmp_path / "b")
    assert b.model.temperature["document_type"] == pytest.approx(2.5) and a.model.temperature["domain"] == 1.0
    texts = ["The patient presented with fever.", "Cells were cultured."]
    pa, pb = a.predict(texts), b.predict(texts)
    np.testing.assert_allclose(pa.probs["domain"], pb.probs["domain"], atol=1e-6)
    logits = np.log(pa.probs["document_type"])
    np.testing.assert_allclose(pb.probs["document_type"], softmax(logits, 2.5), atol=1e-5)


def test_propagate_writes_calibrated_probabilities(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    from pipeline.stages.propagate.config import PropagateConfig
    from pipeline.stages.propagate.transforms import StudentModelHandler

    base = default_base_model()
    model = StudentModel.from_base(base)
    model.temperature.update(document_type=3.0, domain=0.5)
    model.save(tmp_path / "m", AutoTokenizer.from_pretrained(base), {"max_length": 32})
    handler = StudentModelHandler(PropagateConfig(model_dir=str(tmp_path / "m"), batch_size=4, beam_batch_size=4))
    predictor = handler.load_model()
    batch = [{"id": "PMC1/p[0]", "article_id": "PMC1", "text": "The patient presented with fever.", "section_title": None}]
    row = handler.run_inference(batch, predictor)[0]
    raw = Predictor(predictor.model, predictor.tokenizer, max_length=32)
    raw.temperature = {}
    p = raw.predict(["The patient presented with fever."])
    for head, t in (("document_type", 3.0), ("domain", 0.5)):
        np.testing.assert_allclose(row[f"{head}_scores"], softmax(np.log(p.probs[head]), t)[0], atol=1e-5)


def _text_examples(n: int, seed: int) -> list[Example]:
    rng = np.random.default_rng(seed)
    words = {0: "patient clinical hospital", 1: "cells protein gene", 2: "survey policy economics"}
    out = []
    for i in range(n):
        d = int(rng.integers(0, 3))
        s = float(1 + d + rng.integers(0, 2))
        out.append(Example(f"PMC{i % 20}/p[{i}]", f"PMC{i % 20}", f"{words[d]} filler {i}", None, d % 4, d, s))
    return out


def test_baselines_fit_the_same_split_and_report_gaps() -> None:
    train, test = _text_examples(120, 0), _text_examples(60, 1)
    embed = lambda texts: np.array([[t.count("patient"), t.count("cells"), t.count("survey")] for t in texts], float)  # noqa: E731
    out = B.run_baselines(train, test, "unused", 32, embed=embed)
    assert set(out) == set(B.BASELINES)
    assert out["tfidf"]["domain"]["macro_f1"] == pytest.approx(1.0)
    assert out["frozen_encoder"]["domain"]["macro_f1"] == pytest.approx(1.0)
    assert out["majority"]["domain"]["kappa"] == pytest.approx(0.0)
    assert out["majority"]["educational_score"]["pearson_r"] == "n/a (constant predicted scores)"
    g = B.gaps(out["tfidf"], out)
    assert g["domain"]["tfidf"] == 0.0 and g["educational_score"]["majority"] is None


def test_evaluate_learning_curve_and_report_sections(tmp_path: Path) -> None:
    """A tiny run end to end (58 embedded paragraphs, 16 tokens, a few steps): the report carries the
    baselines with their gaps, the calibration, and the learning curve as a table and an image."""
    import json

    from pipeline.cli import main as cli
    from pipeline.core.workdir import Workdir
    from pipeline.teacher.rules import sample_paragraphs, write_workdir
    from tests.conftest import EXAMPLES

    ps = sample_paragraphs(EXAMPLES / "jats")
    w = Workdir.of(tmp_path)
    write_workdir(w, ps, ps)
    assert cli(["train", "--workdir", str(w.root), "--max-length", "16", "--min-steps", "2", "--epochs", "1",
                "--validation-fraction", "0.3"]) == 0
    assert cli(["evaluate", "--workdir", str(w.root), "--learning-curve", "--curve-sizes", "10,0"]) == 0
    curve = json.loads((w.reports / "learning_curve.json").read_text())
    assert [p["n_labels"] for p in curve["points"]][0] == 10 and len(curve["points"]) == 2
    assert all(set(p["baselines"]) == set(B.BASELINES) for p in curve["points"])
    md = (w.reports / "classifier.md").read_text()
    for text in ("](learning_curve.png)", "## Learning curve", "beside cheaper models", "student minus baseline",
                 "ECE before", "](confusion.png)", "](reliability.png)"):
        assert text in md
    assert (w.reports / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"
    # a plain evaluate afterwards keeps the curve in the report
    assert cli(["evaluate", "--workdir", str(w.root)]) == 0
    assert "## Learning curve" in (w.reports / "classifier.md").read_text()
