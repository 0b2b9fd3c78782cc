"""Agreement between two labellers (gold vs teacher, teacher A vs teacher B, teacher vs student).

Pure numpy, no project imports beyond the label schema, so the annotate stage and the classifier's
evaluation report the same numbers the same way (the paper reports type F1 + Cohen's kappa,
domain F1, score Pearson r + MAE).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pipeline.core.labels import HEADS


def confusion(y_true: Sequence[str], y_pred: Sequence[str], classes: Sequence[str]) -> np.ndarray:
    """Confusion matrix, rows = true class, columns = predicted, in `classes` order."""
    index = {c: i for i, c in enumerate(classes)}
    m = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for t, p in zip(y_true, y_pred, strict=True):
        m[index[t], index[p]] += 1
    return m


def accuracy(y_true: Sequence[Any], y_pred: Sequence[Any]) -> float:
    """Share of items where both labellers agree (nan for no items)."""
    if len(y_true) == 0:
        return float("nan")
    return float(np.mean([t == p for t, p in zip(y_true, y_pred, strict=True)]))


def macro_f1(y_true: Sequence[str], y_pred: Sequence[str], classes: Sequence[str]) -> float:
    """Unweighted mean of per-class F1 over the classes present in either labelling.

    Classes absent from both sides are left out (their F1 is undefined), as scikit-learn does
    when `labels` is not forced.
    """
    m = confusion(y_true, y_pred, classes)
    tp = np.diag(m).astype(float)
    support_true = m.sum(axis=1)
    support_pred = m.sum(axis=0)
    present = (support_true + support_pred) > 0
    if not present.any():
        return float("nan")
    denom = support_true + support_pred
    f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
    return float(f1[present].mean())


def cohen_kappa(y_true: Sequence[str], y_pred: Sequence[str], classes: Sequence[str]) -> float:
    """Cohen's kappa: agreement corrected for the agreement expected by chance from the marginals."""
    m = confusion(y_true, y_pred, classes).astype(float)
    n = m.sum()
    if n == 0:
        return float("nan")
    po = np.trace(m) / n
    pe = float((m.sum(axis=0) * m.sum(axis=1)).sum()) / (n * n)
    if pe == 1.0:  # both labellers used one and the same class throughout
        return 1.0 if po == 1.0 else 0.0
    return float((po - pe) / (1 - pe))


def pearson_r(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson correlation (nan when either side is constant or there are fewer than 2 items)."""
    a = np.asarray(x, dtype=float)
    b = np.asarray(y, dtype=float)
    if len(a) < 2:
        return float("nan")
    a = a - a.mean()
    b = b - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    if denom == 0:
        return float("nan")
    return float((a * b).sum() / denom)


def mae(x: Sequence[float], y: Sequence[float]) -> float:
    """Mean absolute error."""
    if len(x) == 0:
        return float("nan")
    return float(np.mean(np.abs(np.asarray(x, dtype=float) - np.asarray(y, dtype=float))))


def agreement_report(reference: Sequence[dict[str, Any]], other: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per-head agreement of two aligned label lists (same items, same order).

    Classification heads: accuracy, macro-F1, Cohen's kappa, confusion matrix. Regression head
    (educational_score): Pearson r, MAE, and exact/within-1 agreement of the rounded score.
    """
    if len(reference) != len(other):
        raise ValueError(f"label lists differ in length: {len(reference)} vs {len(other)}")
    report: dict[str, Any] = {"n": len(reference)}
    for head in HEADS:
        t = [r[head.name] for r in reference]
        p = [o[head.name] for o in other]
        if head.kind == "classification":
            report[head.name] = {
                "accuracy": accuracy(t, p),
                "macro_f1": macro_f1(t, p, head.classes),
                "cohen_kappa": cohen_kappa(t, p, head.classes),
                "classes": list(head.classes),
                "confusion": confusion(t, p, head.classes).tolist(),
            }
        else:
            tr = [round(float(v)) for v in t]
            pr = [round(float(v)) for v in p]
            report[head.name] = {
                "pearson_r": pearson_r(t, p),
                "mae": mae(t, p),
                "exact": accuracy(tr, pr),
                "within_1": float(np.mean([abs(a - b) <= 1 for a, b in zip(tr, pr, strict=True)])) if tr else float("nan"),
            }
    return report


def format_report(report: dict[str, Any], title: str) -> str:
    """A few plain lines for the terminal."""
    lines = [f"{title}  (n={report['n']})"]
    for head in HEADS:
        r = report[head.name]
        if head.kind == "classification":
            lines.append(
                f"  {head.name:<18} accuracy {r['accuracy']:.3f}  macro-F1 {r['macro_f1']:.3f}  kappa {r['cohen_kappa']:.3f}"
            )
        else:
            lines.append(
                f"  {head.name:<18} pearson r {r['pearson_r']:.3f}  MAE {r['mae']:.3f}  exact {r['exact']:.3f}  within-1 {r['within_1']:.3f}"
            )
    return "\n".join(lines)
