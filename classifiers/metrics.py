"""The student's evaluation figures, on integer class indices: the figures the paper reports.

The agreement metrics themselves live in pipeline.agreement (shared with the teacher's gold and
two-teacher reports, so every stage computes them the same way); this module adds calibration and
the per-head report layout.

Classification heads: accuracy, macro-F1, Cohen's kappa, confusion matrix, expected calibration error.
Regression head: Pearson r and mean absolute error.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from classifiers.data import Example, label_arrays
from pipeline.core import agreement
from pipeline.core.labels import HEADS, SCORE_MAX, SCORE_MIN

if TYPE_CHECKING:
    from classifiers.predict import Predictions


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts[i, j] = paragraphs whose teacher label is class i and student label class j."""
    return agreement.confusion(np.asarray(y_true).tolist(), np.asarray(y_pred).tolist(), range(n_classes))


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Share of exact matches."""
    return agreement.accuracy(np.asarray(y_true).tolist(), np.asarray(y_pred).tolist())


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    """Unweighted mean of per-class F1 over the classes present in either truth or prediction."""
    return agreement.macro_f1(np.asarray(y_true).tolist(), np.asarray(y_pred).tolist(), range(n_classes))


def cohen_kappa(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    """Cohen's kappa: agreement corrected for the agreement expected by chance from the marginals."""
    return agreement.cohen_kappa(np.asarray(y_true).tolist(), np.asarray(y_pred).tolist(), range(n_classes))


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation; NaN when either side is constant."""
    return agreement.pearson_r(np.asarray(x, dtype=float), np.asarray(y, dtype=float))


def mae(x: np.ndarray, y: np.ndarray) -> float:
    """Mean absolute error."""
    return agreement.mae(np.asarray(x, dtype=float), np.asarray(y, dtype=float))


def reliability(probs: np.ndarray, y_true: np.ndarray, n_bins: int = 10) -> dict[str, Any]:
    """Top-label calibration: per confidence bin, mean confidence, accuracy and count; plus the ECE.

    ECE = sum over bins of (bin count / n) * |accuracy - confidence| (Guo et al. 2017).
    """
    probs = np.asarray(probs, dtype=float)
    y_true = np.asarray(y_true, dtype=np.int64)
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y_true).astype(float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # right-closed bins so confidence 1.0 falls into the last bin
    idx = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    bins = []
    ece = 0.0
    n = len(conf)
    for b in range(n_bins):
        sel = idx == b
        count = int(sel.sum())
        if count:
            acc_b, conf_b = float(correct[sel].mean()), float(conf[sel].mean())
            ece += count / n * abs(acc_b - conf_b)
        else:
            acc_b = conf_b = float("nan")
        bins.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "count": count,
                     "accuracy": acc_b, "confidence": conf_b})
    return {"ece": float(ece) if n else float("nan"), "bins": bins}


def classification_report(
    y_true: np.ndarray, probs: np.ndarray, classes: tuple[str, ...], n_bins: int = 10
) -> dict[str, Any]:
    """Every figure for one classification head, JSON-ready."""
    y_pred = np.asarray(probs).argmax(axis=1)
    k = len(classes)
    rel = reliability(probs, y_true, n_bins)
    return {
        "n": int(len(y_true)),
        "accuracy": accuracy(y_true, y_pred),
        "macro_f1": macro_f1(y_true, y_pred, k),
        "kappa": cohen_kappa(y_true, y_pred, k),
        "ece": rel["ece"],
        "classes": list(classes),
        "confusion_matrix": confusion_matrix(y_true, y_pred, k).tolist(),
        "reliability": rel["bins"],
    }


def regression_report(y_true: np.ndarray, y_pred: np.ndarray, lo: float, hi: float) -> dict[str, Any]:
    """Figures for the score head; predictions are clipped to the label range first, as served."""
    y_pred = np.clip(np.asarray(y_pred, dtype=float), lo, hi)
    y_true = np.asarray(y_true, dtype=float)
    return {
        "n": int(len(y_true)),
        "pearson_r": pearson(y_true, y_pred),
        "mae": mae(y_true, y_pred),
        "rounded_accuracy": accuracy(np.rint(y_true), np.rint(y_pred)),
    }


def evaluate_predictions(examples: Sequence[Example], pred: Predictions) -> dict[str, Any]:
    """Per-head agreement of student (or baseline) predictions with the teacher labels of `examples`."""
    y = label_arrays(examples)
    out: dict[str, Any] = {"n": len(examples), "truncated": int(pred.truncated.sum())}
    for h in HEADS:
        if h.kind == "classification":
            out[h.name] = classification_report(y[h.name], pred.probs[h.name], h.classes)
        else:
            out[h.name] = regression_report(y[h.name], pred.educational_score, SCORE_MIN, SCORE_MAX)
    return out
