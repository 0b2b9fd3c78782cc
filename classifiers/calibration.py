"""Temperature scaling (Guo et al. 2017) of the classification heads, fit on validation.

One scalar T per head: calibrated probabilities = softmax(logits / T). T is chosen to minimise the
negative log-likelihood of the validation labels; it never changes the argmax, so accuracy, F1 and
kappa stay as they are, only the confidences (and the ECE) move. The student stores T beside its heads
(classifiers.model), and every consumer of Predictor (evaluate, propagate, uncertainty) gets calibrated
probabilities.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from classifiers.metrics import reliability
from pipeline.core import agreement

T_MIN, T_MAX = 0.05, 20.0


def _nll(logits: np.ndarray, y: np.ndarray, t: float) -> float:
    z = logits / t
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(y)), y].mean())


def softmax(logits: np.ndarray, t: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / t
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(probs: np.ndarray, y: np.ndarray) -> float:
    """The T in [T_MIN, T_MAX] minimising validation NLL; `probs` are the uncalibrated softmax outputs
    (their logs are the logits up to a per-row constant, which softmax ignores). 1.0 without data."""
    y = np.asarray(y, dtype=np.int64)
    if len(y) == 0:
        return 1.0
    logits = np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0))
    grid = np.exp(np.linspace(np.log(T_MIN), np.log(T_MAX), 121))
    losses = [_nll(logits, y, t) for t in grid]
    i = int(np.argmin(losses))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    for _ in range(40):  # golden-section refinement inside the best grid cell
        a, b = hi - 0.618 * (hi - lo), lo + 0.618 * (hi - lo)
        if _nll(logits, y, a) < _nll(logits, y, b):
            hi = b
        else:
            lo = a
    return float((lo + hi) / 2)


def calibrate(probs: np.ndarray, y: np.ndarray, n_bins: int = 10) -> dict[str, Any]:
    """Fit T on (probs, y); return T, the calibrated probabilities and the ECE / NLL before and after."""
    t = fit_temperature(probs, y)
    logits = np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0))
    after = softmax(logits, t)
    y = np.asarray(y, dtype=np.int64)
    few = agreement.na(f"{len(y)} paragraphs, fewer than {agreement.MIN_N}") if len(y) < agreement.MIN_N else None
    return {
        "temperature": t,
        "probs": after.astype(np.float32),
        "ece_before": few or reliability(probs, y, n_bins)["ece"],
        "ece_after": few or reliability(after, y, n_bins)["ece"],
        "nll_before": _nll(logits, y, 1.0) if len(y) else float("nan"),
        "nll_after": _nll(logits, y, t) if len(y) else float("nan"),
    }
