"""Honest figures: scikit-learn / scipy numbers, "n/a (reason)" where the data cannot support one,
bootstrap intervals, end-of-run warnings and the report sentences that used to come out empty."""

from __future__ import annotations

import json

import numpy as np
import pytest
import sklearn.metrics as sk
from scipy import stats

from classifiers import metrics as M
from classifiers.baselines import gaps
from classifiers.data import Example
from classifiers.evaluate import _gap_sentence, render_markdown
from classifiers.predict import Predictions
from pipeline.core import agreement as A
from pipeline.core.labels import DOCUMENT_TYPES, DOMAINS


def _labels(n: int, k: int, agree: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = rng.integers(0, k, n)
    p = np.where(rng.random(n) < agree, t, rng.integers(0, k, n))
    return t, p


def test_figures_are_scikit_learns_and_scipys() -> None:
    t, p = _labels(300, 4, 0.6, 0)
    assert A.macro_f1(t.tolist(), p.tolist(), range(4)) == pytest.approx(sk.f1_score(t, p, average="macro"))
    assert A.cohen_kappa(t.tolist(), p.tolist(), range(4)) == pytest.approx(sk.cohen_kappa_score(t, p))
    x = np.random.default_rng(1).normal(size=50)
    y = x + np.random.default_rng(2).normal(size=50)
    assert A.pearson_r(x, y) == pytest.approx(stats.pearsonr(x, y).statistic)
    # the vectorised forms the bootstrap resamples with give the same numbers
    m = A._confusions(t, p, 4)
    assert A._f1_of(m)[0] == pytest.approx(sk.f1_score(t, p, average="macro"))
    assert A._kappa_of(m)[0] == pytest.approx(sk.cohen_kappa_score(t, p))
    assert A._r_of(x, y) == pytest.approx(stats.pearsonr(x, y).statistic)


def test_a_handful_of_one_class_paragraphs_claims_nothing() -> None:
    """The demo's case: 6 validation paragraphs of one class used to read macro-F1 1.000, kappa 1.000."""
    r = A.classification_figures(["Study"] * 6, ["Study"] * 6, DOCUMENT_TYPES)
    assert r["macro_f1"] == r["cohen_kappa"] == "n/a (6 paragraphs, fewer than 30)"
    assert r["accuracy"] == 1.0 and r["ci95"] == {"accuracy": None, "macro_f1": None, "cohen_kappa": None}
    many = A.classification_figures(["Study"] * 40, ["Study"] * 39 + ["Review"], DOCUMENT_TYPES)
    assert many["macro_f1"] == many["cohen_kappa"] == "n/a (the reference labels hold one class (Study))"
    s = A.score_figures([3.0] * 40, np.linspace(1, 5, 40))
    assert s["pearson_r"] == "n/a (constant reference scores)" and isinstance(s["mae"], float)
    assert A.classification_figures([], [], DOMAINS)["accuracy"] == "n/a (no paragraphs)"
    json.dumps(r)  # strings, not NaN: valid JSON


def test_headline_figures_carry_bootstrap_intervals() -> None:
    t, p = _labels(400, 3, 0.7, 3)
    names = list(DOMAINS)
    r = A.classification_figures([names[i] for i in t], [names[i] for i in p], names)
    for key in ("accuracy", "macro_f1", "cohen_kappa"):
        lo, hi = r["ci95"][key]
        assert lo < r[key] < hi and hi - lo < 0.2
    again = A.classification_figures([names[i] for i in t], [names[i] for i in p], names)
    assert again["ci95"] == r["ci95"]  # seeded: the same report twice
    x = np.random.default_rng(4).uniform(1, 5, 200)
    s = A.score_figures(x, x + np.random.default_rng(5).normal(0, 0.5, 200))
    assert s["ci95"]["pearson_r"][0] < s["pearson_r"] < s["ci95"]["pearson_r"][1]
    assert A.fmt_ci(s["mae"], s["ci95"]["mae"]).count("[") == 1


def _examples(n: int, one_class: bool) -> tuple[list[Example], Predictions]:
    rng = np.random.default_rng(0)
    ex, probs = [], {"document_type": [], "domain": []}
    for i in range(n):
        t, d = (0, 0) if one_class else (int(rng.integers(0, 4)), int(rng.integers(0, 3)))
        ex.append(Example(f"PMC{i}/p[0]", f"PMC{i}", "x", None, t, d, float(1 + i % 5)))
        probs["document_type"].append(np.eye(4)[t] * 0.9 + 0.025)
        probs["domain"].append(np.eye(3)[d] * 0.9 + 0.1 / 3)
    pred = Predictions({k: np.array(v, dtype=np.float32) for k, v in probs.items()},
                       np.array([1 + i % 5 for i in range(n)], dtype=np.float32), np.zeros(n, bool), np.ones(n, int))
    return ex, pred


def test_student_report_on_a_tiny_validation_split_says_so() -> None:
    ex, pred = _examples(6, one_class=True)
    m = M.evaluate_predictions(ex, pred)
    for head in ("document_type", "domain"):
        assert m[head]["macro_f1"].startswith("n/a (") and m[head]["kappa"].startswith("n/a (")
        assert m[head]["ece"].startswith("n/a (")
    warning = M.too_small(m)
    assert warning and "6 paragraphs" in warning and "at least 30" in warning
    page = render_markdown(m, "pmc-curate-student-x", "validation", [])
    assert "Caution" in page and "| document_type | macro-F1 | n/a (6 paragraphs, fewer than 30) |" in page
    assert "| domain | Cohen's kappa | n/a (6 paragraphs, fewer than 30) |" in page
    raw = M.raw_figures(ex, pred)  # what early stopping ranks checkpoints by: numbers, always
    assert isinstance(raw["domain"]["macro_f1"], float)
    big_ex, big_pred = _examples(120, one_class=False)
    big = M.evaluate_predictions(big_ex, big_pred)
    assert M.too_small(big) is None and big["domain"]["ci95"]["macro_f1"] is not None


def test_gaps_and_their_sentence_with_undefined_figures() -> None:
    student = {"document_type": {"macro_f1": "n/a (6 paragraphs, fewer than 30)"}, "domain": {"macro_f1": 0.8},
               "educational_score": {"pearson_r": "n/a (constant predicted scores)"}}
    base = {"majority": {"document_type": {"macro_f1": 0.2}, "domain": {"macro_f1": 0.3},
                         "educational_score": {"pearson_r": 0.1}}}
    g = gaps(student, base)
    assert g["document_type"]["majority"] is None and g["domain"]["majority"] == pytest.approx(0.5)
    empty = _gap_sentence(g["document_type"])
    assert "baseline: ." not in empty and "n/a (" in empty
    assert _gap_sentence(g["domain"]).startswith("student minus baseline: +0.500 vs majority")


def test_terminal_lines_name_the_reason() -> None:
    ref = [{"document_type": "Study", "domain": "clinical", "educational_score": 3}] * 5
    rep = A.agreement_report(ref, ref)
    text = A.format_report(rep, "x")
    assert "n/a (5 paragraphs, fewer than 30)" in text and "caution" in text


def test_confusion_cell_bootstrap_is_the_paragraph_bootstrap(monkeypatch: pytest.MonkeyPatch) -> None:
    t, p = _labels(500, 4, 0.6, 7)
    m = A._confusions(t, p, 4)[0]
    by_cells = A.cell_bootstrap_ci(m, A._f1_of)
    by_rows = A.bootstrap_ci(lambda a, b, axis=-1: A._f1_of(A._confusions(a, b, 4)), t, p)
    assert by_cells and by_rows and all(abs(x - y) < 0.015 for x, y in zip(by_cells, by_rows, strict=True))
    # a set bigger than MAX_BOOTSTRAP_N is resampled from a seeded subsample: an interval, still
    monkeypatch.setattr(A, "MAX_BOOTSTRAP_N", 200)
    x = np.random.default_rng(8).normal(size=1000)
    ci = A.bootstrap_ci(lambda u, v, axis=-1: A._r_of(u, v), x, x + np.random.default_rng(9).normal(size=1000))
    assert ci and ci[0] < A.pearson_r(x, x + np.random.default_rng(9).normal(size=1000)) < ci[1]
