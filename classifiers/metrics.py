"""Agreement metrics in plain numpy (no scikit-learn dependency): the figures the paper reports.

Classification heads: accuracy, macro-F1, Cohen's kappa, confusion matrix, expected calibration error.
Regression head: Pearson r and mean absolute error.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts[i, j] = paragraphs whose teacher label is class i and student label class j."""
    m = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(m, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return m


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Share of exact matches."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return float((y_true == y_pred).mean()) if len(y_true) else float("nan")


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    """Unweighted mean of per-class F1 over the classes present in either truth or prediction.

    Classes absent from both are left out (as scikit-learn does with labels=None), so a three-class
    head evaluated on data without one class is not penalised for it.
    """
    m = confusion_matrix(y_true, y_pred, n_classes)
    tp = np.diag(m).astype(float)
    support_true, support_pred = m.sum(axis=1), m.sum(axis=0)
    present = (support_true + support_pred) > 0
    if not present.any():
        return float("nan")
    denom = support_true + support_pred
    f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
    return float(f1[present].mean())


def cohen_kappa(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    """Cohen's kappa: agreement corrected for the agreement expected by chance from the marginals."""
    m = confusion_matrix(y_true, y_pred, n_classes).astype(float)
    n = m.sum()
    if n == 0:
        return float("nan")
    po = np.trace(m) / n
    pe = float((m.sum(axis=0) * m.sum(axis=1)).sum()) / (n * n)
    if pe >= 1.0:  # both raters used one single class: agreement is total but carries no information
        return 1.0 if po >= 1.0 else 0.0
    return float((po - pe) / (1 - pe))


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation; NaN when either side is constant."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 2 or x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def mae(x: np.ndarray, y: np.ndarray) -> float:
    """Mean absolute error."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    return float(np.abs(x - y).mean()) if len(x) else float("nan")


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
