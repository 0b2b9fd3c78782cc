"""The student's evaluation figures, on integer class indices: the figures the paper reports.

The agreement metrics themselves live in pipeline.core.agreement (shared with the teacher's gold and
two-teacher reports, so every stage computes them the same way); this module adds calibration and
the per-head report layout.

Classification heads: accuracy, macro-F1, Cohen's kappa, confusion matrix, expected calibration error.
Regression head: Pearson r and mean absolute error.
A figure the data cannot support is "n/a (reason)", never a number (see pipeline.core.agreement).
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
    return agreement.confusion(np.asarray(y_true).tolist(), np.asarray(y_pred).tolist(), list(range(n_classes)))


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Share of exact matches."""
    return agreement.accuracy(np.asarray(y_true).tolist(), np.asarray(y_pred).tolist())


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    """Unweighted mean of per-class F1 over the classes present in either truth or prediction."""
    return agreement.macro_f1(np.asarray(y_true).tolist(), np.asarray(y_pred).tolist(), list(range(n_classes)))


def cohen_kappa(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    """Cohen's kappa: agreement corrected for the agreement expected by chance from the marginals."""
    return agreement.cohen_kappa(np.asarray(y_true).tolist(), np.asarray(y_pred).tolist(), list(range(n_classes)))


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
    y_true: np.ndarray, probs: np.ndarray, classes: tuple[str, ...], n_bins: int = 10, intervals: bool = True
) -> dict[str, Any]:
    """Every figure for one classification head, JSON-ready: numbers where the data support them,
    "n/a (reason)" where not (pipeline.core.agreement), 95% bootstrap intervals in `ci95`."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(probs).argmax(axis=1)
    rel = reliability(probs, y_true, n_bins)
    names = list(classes)
    figs = agreement.classification_figures([names[i] for i in y_true], [names[i] for i in y_pred], names, intervals)
    ci = figs["ci95"]
    ci["kappa"] = ci.pop("cohen_kappa")
    few = len(y_true) < agreement.MIN_N
    return {
        "n": int(len(y_true)),
        "accuracy": figs["accuracy"],
        "macro_f1": figs["macro_f1"],
        "kappa": figs["cohen_kappa"],
        "ece": agreement.na(f"{len(y_true)} paragraphs, fewer than {agreement.MIN_N}") if few else rel["ece"],
        "ci95": ci,
        "classes": list(classes),
        "confusion_matrix": figs["confusion"],
        "reliability": rel["bins"],
    }


def regression_report(y_true: np.ndarray, y_pred: np.ndarray, lo: float, hi: float,
                      intervals: bool = True) -> dict[str, Any]:
    """Figures for the score head; predictions are clipped to the label range first, as served."""
    y_pred = np.clip(np.asarray(y_pred, dtype=float), lo, hi)
    y_true = np.asarray(y_true, dtype=float)
    return dict(agreement.score_figures(y_true, y_pred, intervals), n=int(len(y_true)),
                rounded_accuracy=accuracy(np.rint(y_true), np.rint(y_pred)))


def raw_figures(examples: Sequence[Example], pred: Predictions) -> dict[str, Any]:
    """The unjudged figures (floats, NaN when undefined) the trainer early-stops on: no n/a strings,
    no intervals, so that a small validation split still ranks checkpoints."""
    y = label_arrays(examples)
    out: dict[str, Any] = {"n": len(examples)}
    for h in HEADS:
        if h.kind == "classification":
            yp = np.asarray(pred.probs[h.name]).argmax(axis=1)
            out[h.name] = {"macro_f1": macro_f1(y[h.name], yp, len(h.classes)),
                           "kappa": cohen_kappa(y[h.name], yp, len(h.classes))}
        else:
            ys = np.clip(np.asarray(pred.educational_score, dtype=float), SCORE_MIN, SCORE_MAX)
            out[h.name] = {"pearson_r": pearson(y[h.name], ys), "mae": mae(y[h.name], ys)}
    return out


def evaluate_predictions(examples: Sequence[Example], pred: Predictions, intervals: bool = True) -> dict[str, Any]:
    """Per-head agreement of student (or baseline) predictions with the teacher labels of `examples`."""
    y = label_arrays(examples)
    out: dict[str, Any] = {"n": len(examples), "min_n": agreement.MIN_N, "truncated": int(pred.truncated.sum())}
    for h in HEADS:
        if h.kind == "classification":
            out[h.name] = classification_report(y[h.name], pred.probs[h.name], h.classes, intervals=intervals)
        else:
            out[h.name] = regression_report(y[h.name], pred.educational_score, SCORE_MIN, SCORE_MAX, intervals)
    return out


def too_small(metrics: dict[str, Any] | None, what: str = "validation") -> str | None:
    """The end-of-run warning when the held-out set cannot judge the student (None when it can)."""
    if not metrics:
        return f"no {what} paragraphs: the student's agreement with the teacher is unknown"
    undefined = [f"{h.name} {k}" for h in HEADS for k in ("macro_f1", "kappa", "pearson_r")
                 if k in metrics.get(h.name, {}) and agreement.is_na(metrics[h.name][k])]
    if metrics["n"] >= agreement.MIN_N and not undefined:
        return None
    return (f"the held-out set ({what}) is too small to judge the student: {metrics['n']} paragraphs (at least {agreement.MIN_N} "
            f"needed, with more than one class per head); undefined: {', '.join(undefined) or 'none'}. "
            "Annotate more articles before trusting these figures.")
