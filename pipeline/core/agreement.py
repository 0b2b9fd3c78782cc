"""Agreement between two labellers (gold vs teacher, teacher A vs teacher B, teacher vs student).

The figures come from scikit-learn (accuracy, macro-F1, Cohen's kappa, confusion matrix, MAE) and
scipy (Pearson r, bootstrap intervals), so the annotate stage and the classifier's evaluation report
the same numbers the same way (the paper reports type F1 + Cohen's kappa, domain F1, score Pearson
r + MAE).

Honest figures: a metric the data cannot support is not a number but the string "n/a (reason)", in
tables, plot titles and JSON alike: macro-F1, kappa and Pearson r on fewer than MIN_N paragraphs,
or when the reference labels hold one class (or the scores are constant). Accuracy and MAE are
plain descriptions and stay numbers for any non-empty sample. Headline figures carry a 95%
percentile-bootstrap interval (`ci95`), resampling paragraphs, from MIN_N paragraphs on (for the
class heads as multinomial draws over the confusion matrix, the same resampling at any corpus size).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy import stats as sps
from sklearn import metrics as skm

from pipeline.core.labels import HEADS

MIN_N = 30  # below this many paragraphs, macro-F1, kappa, Pearson r and ECE are not reported
N_RESAMPLES = 1000
LEVEL = 0.95
NA = "n/a"

Figure = float | str  # a number, or "n/a (reason)"


def na(reason: str) -> str:
    """An undefined figure, with why."""
    return f"{NA} ({reason})"


def is_na(v: Any) -> bool:
    """True for None, NaN and "n/a (...)" strings."""
    return v is None or isinstance(v, str) or (isinstance(v, float) and math.isnan(v))


def num(v: Any) -> float:
    """The figure as a float, NaN when undefined (for comparisons and plots)."""
    return float("nan") if is_na(v) else float(v)


def fmt(v: Any, digits: int = 3) -> str:
    """A figure for a table or a title: "0.812", or the n/a string with its reason."""
    if isinstance(v, str):
        return v
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return NA
    return f"{v:.{digits}f}"


def fmt_ci(v: Any, ci: Sequence[float] | None, digits: int = 3) -> str:
    """"0.812 [0.770, 0.850]" (the 95% interval when there is one)."""
    if is_na(v) or not ci:
        return fmt(v, digits)
    return f"{v:.{digits}f} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


# ---- the figures themselves (plain floats, NaN when undefined) ----------------------------------

def confusion(y_true: Sequence[Any], y_pred: Sequence[Any], classes: Sequence[Any]) -> np.ndarray:
    """Confusion matrix, rows = true class, columns = predicted, in `classes` order."""
    if len(y_true) == 0:
        return np.zeros((len(classes), len(classes)), dtype=np.int64)
    unknown = (set(y_true) | set(y_pred)) - set(classes)
    if unknown:
        raise KeyError(f"labels outside the classes {list(classes)}: {sorted(map(str, unknown))}")
    return skm.confusion_matrix(list(y_true), list(y_pred), labels=list(classes)).astype(np.int64)


def accuracy(y_true: Sequence[Any], y_pred: Sequence[Any]) -> float:
    """Share of items where both labellers agree (nan for no items)."""
    if len(y_true) == 0:
        return float("nan")
    return float(skm.accuracy_score(list(y_true), list(y_pred)))


def macro_f1(y_true: Sequence[Any], y_pred: Sequence[Any], classes: Sequence[Any]) -> float:
    """Unweighted mean of per-class F1 over the classes present in either labelling (scikit-learn's
    default when `labels` is not forced); nan for no items."""
    present = [c for c in classes if c in set(y_true) | set(y_pred)]
    if not present:
        return float("nan")
    return float(skm.f1_score(list(y_true), list(y_pred), labels=present, average="macro", zero_division=0))


def cohen_kappa(y_true: Sequence[Any], y_pred: Sequence[Any], classes: Sequence[Any]) -> float:
    """Cohen's kappa; nan when chance agreement is 1 (both labellers used one and the same class)."""
    if len(y_true) == 0:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-learn warns, then returns nan, when kappa is undefined
        return float(skm.cohen_kappa_score(list(y_true), list(y_pred), labels=list(classes)))


def pearson_r(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson correlation (nan when either side is constant or there are fewer than 2 items)."""
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(sps.pearsonr(a, b).statistic)


def mae(x: Sequence[float], y: Sequence[float]) -> float:
    """Mean absolute error."""
    if len(x) == 0:
        return float("nan")
    return float(skm.mean_absolute_error(np.asarray(x, dtype=float), np.asarray(y, dtype=float)))


# ---- bootstrap: the same formulas, vectorised over resamples -------------------------------------

def _confusions(t: np.ndarray, p: np.ndarray, k: int) -> np.ndarray:
    """Confusion matrices of a batch of resamples: t, p of shape (B, n) -> (B, k, k)."""
    t, p = np.atleast_2d(t), np.atleast_2d(p)
    b = t.shape[0]
    codes = (t * k + p + (np.arange(b) * k * k)[:, None]).ravel()
    return np.bincount(codes, minlength=b * k * k).reshape(b, k, k)


def _f1_of(m: np.ndarray) -> np.ndarray:
    tp = np.diagonal(m, axis1=1, axis2=2).astype(float)
    denom = m.sum(axis=2) + m.sum(axis=1)
    present = denom > 0
    f1 = np.where(present, 2 * tp / np.maximum(denom, 1), 0.0)
    return (f1 * present).sum(axis=1) / np.maximum(present.sum(axis=1), 1)


def _kappa_of(m: np.ndarray) -> np.ndarray:
    n = m.sum(axis=(1, 2)).astype(float)
    po = np.trace(m, axis1=1, axis2=2) / n
    pe = (m.sum(axis=1) * m.sum(axis=2)).sum(axis=1) / (n * n)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pe < 1, (po - pe) / (1 - pe), np.nan)


def _r_of(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=-1, keepdims=True)
    b = b - b.mean(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a * b).sum(axis=-1) / np.sqrt((a * a).sum(axis=-1) * (b * b).sum(axis=-1))


MAX_BOOTSTRAP_N = 100_000  # score intervals of bigger sets come from a seeded subsample this size (wider: conservative)


def bootstrap_ci(statistic: Callable[..., np.ndarray], *data: np.ndarray, seed: int = 0) -> list[float] | None:
    """95% percentile interval of `statistic` over paragraph resamples (scipy.stats.bootstrap, paired);
    None when a resample leaves it undefined or the sample is too small. Memory stays under ~200 MB."""
    n = len(data[0])
    if n < 2:
        return None
    if n > MAX_BOOTSTRAP_N:
        keep = np.random.default_rng(seed).choice(n, MAX_BOOTSTRAP_N, replace=False)
        data, n = tuple(d[keep] for d in data), MAX_BOOTSTRAP_N
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sps.bootstrap(data, statistic, paired=True, vectorized=True, n_resamples=N_RESAMPLES,
                            confidence_level=LEVEL, method="percentile", batch=max(1, min(100, 20_000_000 // n)),
                            rng=np.random.default_rng(seed))
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return None if math.isnan(lo) or math.isnan(hi) else [round(lo, 4), round(hi, 4)]


def cell_bootstrap_ci(m: np.ndarray, statistic: Callable[[np.ndarray], np.ndarray], seed: int = 0) -> list[float] | None:
    """The same paired bootstrap for a statistic of the confusion matrix alone: resampling n
    paragraphs is a multinomial draw of n over its cells, so the cost does not grow with n."""
    n = int(m.sum())
    if n < 2:
        return None
    draws = np.random.default_rng(seed).multinomial(n, m.ravel() / n, size=N_RESAMPLES).reshape(-1, *m.shape)
    vals = statistic(draws)
    if np.isnan(vals).any():
        return None
    lo, hi = np.percentile(vals, [100 * (1 - LEVEL) / 2, 100 * (1 + LEVEL) / 2])
    return [round(float(lo), 4), round(float(hi), 4)]


# ---- judged figures: numbers where the data support them, "n/a (reason)" elsewhere ----------------

def _too_few(n: int, min_n: int) -> str | None:
    if n == 0:
        return na("no paragraphs")
    if n < min_n:
        return na(f"{n} paragraphs, fewer than {min_n}")
    return None


def classification_figures(y_true: Sequence[Any], y_pred: Sequence[Any], classes: Sequence[Any],
                           intervals: bool = True, min_n: int = MIN_N) -> dict[str, Any]:
    """accuracy, macro_f1, cohen_kappa (numbers or "n/a (reason)"), their ci95, the confusion matrix."""
    n = len(y_true)
    index = {c: i for i, c in enumerate(classes)}
    t = np.array([index[c] for c in y_true], dtype=np.int64)
    p = np.array([index[c] for c in y_pred], dtype=np.int64)
    k = len(classes)
    out: dict[str, Any] = {"accuracy": accuracy(y_true, y_pred) if n else na("no paragraphs")}
    reason = _too_few(n, min_n)
    if reason is None and len(set(t.tolist())) < 2:
        reason = na(f"the reference labels hold one class ({classes[int(t[0])]})")
    out["macro_f1"] = reason or macro_f1(y_true, y_pred, classes)
    kappa = cohen_kappa(y_true, y_pred, classes)
    out["cohen_kappa"] = reason or (kappa if not math.isnan(kappa) else na("chance agreement is 1"))
    ci: dict[str, list[float] | None] = {"accuracy": None, "macro_f1": None, "cohen_kappa": None}
    if intervals and n >= min_n:  # an interval over a handful of paragraphs would claim certainty
        m = _confusions(t, p, k)[0]
        ci["accuracy"] = cell_bootstrap_ci(m, lambda c: np.trace(c, axis1=1, axis2=2) / c.sum(axis=(1, 2)))
        if reason is None:
            ci["macro_f1"] = cell_bootstrap_ci(m, _f1_of)
            ci["cohen_kappa"] = cell_bootstrap_ci(m, _kappa_of)
    out["ci95"] = ci
    out["confusion"] = confusion(y_true, y_pred, classes).tolist()
    return out


def score_figures(y_true: Sequence[float], y_pred: Sequence[float], intervals: bool = True,
                  min_n: int = MIN_N) -> dict[str, Any]:
    """pearson_r and mae (numbers or "n/a (reason)") and their ci95."""
    a, b = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    n = len(a)
    reason = _too_few(n, min_n)
    if reason is None and (np.ptp(a) == 0 or np.ptp(b) == 0):
        reason = na("constant " + ("reference" if np.ptp(a) == 0 else "predicted") + " scores")
    out: dict[str, Any] = {"pearson_r": reason or pearson_r(a, b), "mae": mae(a, b) if n else na("no paragraphs")}
    ci: dict[str, list[float] | None] = {"pearson_r": None, "mae": None}
    if intervals and n >= min_n:
        ci["mae"] = bootstrap_ci(lambda u, v, axis=-1: np.abs(u - v).mean(axis=axis), a, b)
        if reason is None:
            ci["pearson_r"] = bootstrap_ci(lambda u, v, axis=-1: _r_of(u, v), a, b)
    out["ci95"] = ci
    return out


def agreement_report(reference: Sequence[dict[str, Any]], other: Sequence[dict[str, Any]],
                     intervals: bool = True) -> dict[str, Any]:
    """Per-head agreement of two aligned label lists (same items, same order).

    Classification heads: accuracy, macro-F1, Cohen's kappa, confusion matrix. Regression head
    (educational_score): Pearson r, MAE, and exact/within-1 agreement of the rounded score.
    """
    if len(reference) != len(other):
        raise ValueError(f"label lists differ in length: {len(reference)} vs {len(other)}")
    report: dict[str, Any] = {"n": len(reference), "min_n": MIN_N}
    for head in HEADS:
        t = [r[head.name] for r in reference]
        p = [o[head.name] for o in other]
        if head.kind == "classification":
            report[head.name] = dict(classification_figures(t, p, head.classes, intervals), classes=list(head.classes))
        else:
            tr = [round(float(v)) for v in t]
            pr = [round(float(v)) for v in p]
            report[head.name] = dict(
                score_figures(t, p, intervals),
                exact=accuracy(tr, pr) if tr else na("no paragraphs"),
                within_1=float(np.mean([abs(a - b) <= 1 for a, b in zip(tr, pr, strict=True)])) if tr else na("no paragraphs"),
            )
    return report


def format_report(report: dict[str, Any], title: str) -> str:
    """A few plain lines for the terminal."""
    lines = [f"{title}  (n={report['n']})"]
    for head in HEADS:
        r = report[head.name]
        ci = r.get("ci95") or {}
        if head.kind == "classification":
            lines.append(f"  {head.name:<18} accuracy {fmt_ci(r['accuracy'], ci.get('accuracy'))}  "
                         f"macro-F1 {fmt_ci(r['macro_f1'], ci.get('macro_f1'))}  "
                         f"kappa {fmt_ci(r['cohen_kappa'], ci.get('cohen_kappa'))}")
        else:
            lines.append(f"  {head.name:<18} pearson r {fmt_ci(r['pearson_r'], ci.get('pearson_r'))}  "
                         f"MAE {fmt_ci(r['mae'], ci.get('mae'))}  exact {fmt(r['exact'])}  within-1 {fmt(r['within_1'])}")
    if report["n"] < MIN_N:
        lines.append(f"  caution: {report['n']} paragraphs is too few to judge agreement (at least {MIN_N} needed)")
    return "\n".join(lines)
