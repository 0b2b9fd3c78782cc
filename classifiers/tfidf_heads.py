"""The TF-IDF heads: word and bigram TF-IDF + logistic regression (type, domain) and ridge (score).

One implementation serves two uses:
- the `tfidf` baseline of classifiers.baselines (fit on the training split, scored on validation);
- a fallback a user can propagate with, head by head: `pmc-curate train` saves the heads fit on the
  training split beside the student (W/model/tfidf_heads.json + .npz), and `propagate --tfidf-heads
  educational_score` (or `auto`: the heads on which train found TF-IDF better than the student) takes
  those heads from them. TF-IDF reads every word of a paragraph, which a student truncated at its max
  length cannot (docs/classifier.md, "When a baseline wins").

Saved as plain JSON (vocabulary, settings) and a NumPy archive (idf, coefficients); loading them runs no
code from the files (no pickle).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core.errors import ConfigError
from pipeline.core.labels import HEADS, HEADS_BY_NAME, SCORE_MAX, SCORE_MIN

FILE_JSON, FILE_NPZ = "tfidf_heads.json", "tfidf_heads.npz"
AUTO = "auto"
C, ALPHA = 10.0, 1.0  # logistic regression C, ridge alpha (chosen on the learning-curve runs)


@dataclass
class TfidfHeads:
    """A fitted TF-IDF vectorizer and one linear model per head."""

    vectorizer: Any  # sklearn TfidfVectorizer
    weights: dict[str, tuple[np.ndarray, np.ndarray]]  # head -> (coef [k, V] or [V], intercept [k] or [])

    @classmethod
    def fit(cls, texts: Sequence[str], labels: dict[str, np.ndarray]) -> TfidfHeads:
        """Fit on texts with labels {head: class indices or scores} (pipeline.core.labels.HEADS order)."""
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression, Ridge

        try:
            vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, max_features=50_000)
            x = vec.fit_transform(texts)
        except ValueError:  # a handful of paragraphs: no term in two of them
            vec = TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True)
            x = vec.fit_transform(texts)
        weights: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for h in HEADS:
            y = np.asarray(labels[h.name])
            if h.kind == "regression":
                reg = Ridge(alpha=ALPHA).fit(x, y.astype(np.float64))
                weights[h.name] = (reg.coef_.astype(np.float32), np.asarray([reg.intercept_], dtype=np.float32))
                continue
            k = len(h.classes)
            coef = np.zeros((k, x.shape[1]), dtype=np.float32)
            intercept = np.full(k, -30.0, dtype=np.float32)  # classes never seen in training: probability ~0
            present = np.unique(y)
            if len(present) < 2:  # one class in training: that class, certain
                intercept[int(present[0])] = 0.0
            else:
                clf = LogisticRegression(C=C, max_iter=2000, class_weight="balanced").fit(x, y)
                rows = clf.classes_.astype(int)
                if len(rows) == 2:  # binary: sklearn keeps one row (the positive class); softmax over [-z/2, z/2]
                    coef[rows[1]], intercept[rows[1]] = clf.coef_[0] / 2, clf.intercept_[0] / 2
                    coef[rows[0]], intercept[rows[0]] = -clf.coef_[0] / 2, -clf.intercept_[0] / 2
                else:
                    coef[rows], intercept[rows] = clf.coef_, clf.intercept_
            weights[h.name] = (coef, intercept)
        return cls(vec, weights)

    def predict(self, texts: Sequence[str]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """({class head: probabilities [N, k]}, scores [N] clipped to the scale)."""
        x = self.vectorizer.transform(list(texts))
        probs: dict[str, np.ndarray] = {}
        score = np.zeros(len(texts), dtype=np.float32)
        for h in HEADS:
            coef, intercept = self.weights[h.name]
            z = np.asarray(x @ coef.T) + intercept
            if h.kind == "regression":
                score = np.clip(z.reshape(-1), SCORE_MIN, SCORE_MAX).astype(np.float32)
            else:
                z = z - z.max(axis=1, keepdims=True)
                p = np.exp(z)
                probs[h.name] = (p / p.sum(axis=1, keepdims=True)).astype(np.float32)
        return probs, score

    def save(self, directory: str | Path) -> str:
        """Write the two files into a model directory; returns the heads' id (a hash of their content)."""
        d = Path(directory)
        vec = self.vectorizer
        meta = {"vocabulary": {t: int(i) for t, i in vec.vocabulary_.items()}, "ngram_range": list(vec.ngram_range),
                "sublinear_tf": vec.sublinear_tf, "heads": list(self.weights)}
        arrays = {"idf": vec.idf_.astype(np.float64)}
        for name, (coef, intercept) in self.weights.items():
            arrays[f"{name}.coef"], arrays[f"{name}.intercept"] = coef, intercept
        (d / FILE_JSON).write_text(json.dumps(meta, sort_keys=True))
        np.savez(d / FILE_NPZ, **arrays)
        return heads_id(d)

    @classmethod
    def load(cls, directory: str | Path) -> TfidfHeads:
        """The heads saved by save(); ConfigError when the model directory has none."""
        from sklearn.feature_extraction.text import TfidfVectorizer

        d = Path(directory)
        if not (d / FILE_JSON).is_file() or not (d / FILE_NPZ).is_file():
            raise ConfigError(f"{d} has no TF-IDF heads ({FILE_JSON}); retrain with this version of `pmc-curate train`")
        meta = json.loads((d / FILE_JSON).read_text())
        arrays = np.load(d / FILE_NPZ, allow_pickle=False)
        vec = TfidfVectorizer(ngram_range=tuple(meta["ngram_range"]), sublinear_tf=meta["sublinear_tf"],
                              vocabulary=meta["vocabulary"])
        vec.idf_ = arrays["idf"]
        return cls(vec, {h: (arrays[f"{h}.coef"], arrays[f"{h}.intercept"]) for h in meta["heads"]})


def heads_id(directory: str | Path) -> str:
    """tfidf-<12 hex>: a content hash of the saved heads."""
    h = hashlib.sha256()
    for name in (FILE_JSON, FILE_NPZ):
        h.update((Path(directory) / name).read_bytes())
    return f"tfidf-{h.hexdigest()[:12]}"


def recommended_heads(model_dir: str | Path) -> list[str]:
    """The heads on which `train` found TF-IDF better than the student (metrics.json's baseline_wins)."""
    f = Path(model_dir) / "metrics.json"
    wins = json.loads(f.read_text()).get("baseline_wins", {}) if f.is_file() else {}
    return [h for h, w in wins.items() if w.get("usable")]


def resolve_heads(requested: Sequence[str], recommended: Sequence[str]) -> list[str]:
    """The heads to take from TF-IDF: `auto` expands to what train recommended; unknown heads are an error."""
    out: list[str] = []
    for name in requested:
        names = list(recommended) if name == AUTO else [name]
        for n in names:
            if n not in HEADS_BY_NAME:
                raise ConfigError(f"--tfidf-heads: unknown head {n!r}; heads: {', '.join(HEADS_BY_NAME)} or {AUTO}")
            if n not in out:
                out.append(n)
    return out
