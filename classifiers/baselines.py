"""Baselines trained on the student's own split, so a user sees whether a cheaper model would do.

- `majority`: the training set's most frequent class per head, its mean score;
- `tfidf`: TF-IDF of words and bigrams + logistic regression (type, domain) and ridge (score);
- `frozen_encoder`: the base encoder, untouched, mean-pooled, with linear heads (logistic regression,
  ridge) on the embeddings: the FineWeb-Edu classifier recipe.

Each returns classifiers.predict.Predictions on the evaluation paragraphs, scored by the same
classifiers.metrics.evaluate_predictions as the student. scikit-learn does the fitting.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from classifiers.data import Example, label_arrays, model_input
from classifiers.predict import Predictions
from pipeline.core.agreement import num
from pipeline.core.labels import HEADS, SCORE_MAX, SCORE_MIN

log = logging.getLogger(__name__)

BASELINES = ("majority", "tfidf", "frozen_encoder")


def _texts(examples: Sequence[Example]) -> list[str]:
    return [model_input(e.text, e.section_title) for e in examples]


def _predictions(probs: dict[str, np.ndarray], score: np.ndarray) -> Predictions:
    n = len(score)
    return Predictions(probs=probs, educational_score=np.clip(score, SCORE_MIN, SCORE_MAX).astype(np.float32),
                       truncated=np.zeros(n, dtype=bool), n_tokens=np.zeros(n, dtype=np.int64))


def _full_proba(clf: Any, x: Any, n_classes: int) -> np.ndarray:
    """predict_proba widened to every class of the schema (classes absent from training get 0)."""
    p = clf.predict_proba(x)
    out = np.zeros((p.shape[0], n_classes), dtype=np.float32)
    out[:, clf.classes_] = p
    return out


def _fit_linear(x_train: Any, x_test: Any, y: dict[str, np.ndarray], c: float, alpha: float) -> Predictions:
    from sklearn.linear_model import LogisticRegression, Ridge

    n = x_test.shape[0]
    probs = {}
    for h in HEADS:
        if h.kind != "classification":
            continue
        classes = np.unique(y[h.name])
        if len(classes) < 2:  # one class in training: that class, certain
            p = np.zeros((n, len(h.classes)), dtype=np.float32)
            p[:, classes[0]] = 1.0
            probs[h.name] = p
            continue
        clf = LogisticRegression(C=c, max_iter=2000, class_weight="balanced")
        clf.fit(x_train, y[h.name])
        probs[h.name] = _full_proba(clf, x_test, len(h.classes))
    reg = Ridge(alpha=alpha).fit(x_train, y["educational_score"])
    return _predictions(probs, reg.predict(x_test))


def majority(train: Sequence[Example], test: Sequence[Example]) -> Predictions:
    y = label_arrays(train)
    probs = {}
    for h in HEADS:
        if h.kind == "classification":
            p = np.zeros((len(test), len(h.classes)), dtype=np.float32)
            p[:, int(np.bincount(y[h.name], minlength=len(h.classes)).argmax())] = 1.0
            probs[h.name] = p
    return _predictions(probs, np.full(len(test), float(y["educational_score"].mean())))


def tfidf(train: Sequence[Example], test: Sequence[Example]) -> Predictions:
    from classifiers.tfidf_heads import TfidfHeads

    probs, score = TfidfHeads.fit(_texts(train), label_arrays(train)).predict(_texts(test))
    return _predictions(probs, score)


def encoder_embeddings(base_model: str, max_length: int, device: str = "auto",
                       batch_size: int = 64) -> Callable[[Sequence[str]], np.ndarray]:
    """texts -> mean-pooled embeddings of the untouched base encoder (loaded once)."""
    import torch
    from transformers import AutoTokenizer

    from classifiers.model import StudentModel
    from classifiers.predict import Predictor

    model = StudentModel.from_base(base_model, dropout=0.0, pooling="mean")
    predictor = Predictor(model, AutoTokenizer.from_pretrained(base_model), max_length=max_length, device=device,
                          batch_size=batch_size, precision="fp32")

    def embed(texts: Sequence[str]) -> np.ndarray:
        ids, _ = predictor.tokenize(texts)
        out = np.zeros((len(texts), model.encoder.config.hidden_size), dtype=np.float32)
        with torch.inference_mode():
            for idx in predictor.batches(ids):
                width = max(len(ids[i]) for i in idx)
                input_ids = torch.full((len(idx), width), predictor.pad_id, dtype=torch.long)
                mask = torch.zeros((len(idx), width), dtype=torch.long)
                for row, i in enumerate(idx):
                    input_ids[row, : len(ids[i])] = torch.as_tensor(ids[i])
                    mask[row, : len(ids[i])] = 1
                hidden = model.encoder(input_ids=input_ids.to(predictor.device),
                                       attention_mask=mask.to(predictor.device)).last_hidden_state
                out[idx] = model.pool(hidden, mask.to(predictor.device)).float().cpu().numpy()
        return out

    return embed


def frozen_encoder(train: Sequence[Example], test: Sequence[Example],
                   embed: Callable[[Sequence[str]], np.ndarray]) -> Predictions:
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(e_train := embed(_texts(train)))
    return _fit_linear(scaler.transform(e_train), scaler.transform(embed(_texts(test))), label_arrays(train),
                       c=0.1, alpha=100.0)


def run_baselines(train: Sequence[Example], test: Sequence[Example], base_model: str, max_length: int,
                  device: str = "auto", embed: Callable[[Sequence[str]], np.ndarray] | None = None
                  ) -> dict[str, dict[str, Any]]:
    """{baseline name: evaluate_predictions(test, ...) plus its fit seconds}, all fit on `train`."""
    from classifiers.metrics import evaluate_predictions

    out: dict[str, dict[str, Any]] = {}
    for name in BASELINES:
        t0 = time.perf_counter()
        if name == "majority":
            pred = majority(train, test)
        elif name == "tfidf":
            pred = tfidf(train, test)
        else:
            pred = frozen_encoder(train, test, embed or encoder_embeddings(base_model, max_length, device))
        out[name] = dict(evaluate_predictions(test, pred), seconds=round(time.perf_counter() - t0, 1))
        log.info("baseline %s: %.1f s", name, out[name]["seconds"])
    return out


PRIMARY = {"document_type": "macro_f1", "domain": "macro_f1", "educational_score": "pearson_r"}


def gaps(student: dict[str, Any], baselines: dict[str, dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """{head: {baseline: student's primary figure minus the baseline's}} (macro-F1, macro-F1, Pearson r);
    None where either side is undefined ("n/a (...)": a constant prediction has no correlation)."""
    out: dict[str, dict[str, float | None]] = {}
    for head, metric in PRIMARY.items():
        row: dict[str, float | None] = {}
        for name, b in baselines.items():
            s, v = num(student[head][metric]), num(b[head][metric])
            row[name] = None if np.isnan(s) or np.isnan(v) else round(s - v, 4)
        out[head] = row
    return out


# A baseline "wins" a head when its primary figure beats the student's by more than this (validation noise
# at pilot scale is larger than 0.01, so smaller differences are not worth a different model).
WIN_MARGIN = 0.01


def baseline_wins(student: dict[str, Any], baselines: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """{head: {"baseline", "metric", "student", "baseline_value", "usable"}} for each head on which the best
    baseline beats the student by more than WIN_MARGIN; `usable`: the TF-IDF baseline beats it too, so
    propagate can take that head from TF-IDF (`--tfidf-heads`; only the TF-IDF heads are saved beside the
    student)."""
    out: dict[str, dict[str, Any]] = {}
    for head, metric in PRIMARY.items():
        s = num(student[head][metric])
        s = 0.0 if np.isnan(s) else s  # undefined for the student (a constant prediction) while defined for a baseline
        best = max(((name, num(b[head][metric])) for name, b in baselines.items() if not np.isnan(num(b[head][metric]))),
                   key=lambda kv: kv[1], default=None)
        if best is not None and best[1] > s + WIN_MARGIN:
            t = num(baselines.get("tfidf", {}).get(head, {}).get(metric))
            out[head] = {"baseline": best[0], "metric": metric, "student": round(s, 4),
                         "baseline_value": round(float(best[1]), 4),
                         "usable": not np.isnan(t) and t > s + WIN_MARGIN}
    return out
