"""`pmc-curate evaluate --learning-curve`: the student's and the baselines' held-out figures against
the number of labels.

A fixed test set (the articles whose sha256(seed:article) falls below --test-fraction, never trained on)
and, for each size N, the first N of the remaining annotations in sha256(id) order (a random subset,
the same at every run; each larger subset contains the smaller). At each N the student is trained
with the given TrainConfig (its own article split for early stopping and calibration inside the N)
and the baselines are fit on the student's training part; all are scored on the same test set.
Writes learning_curve.json and learning_curve.png into the report folder.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from classifiers.baselines import BASELINES, PRIMARY, encoder_embeddings, run_baselines
from classifiers.data import Example, is_validation, model_input, split_by_article
from classifiers.predict import Predictor
from pipeline.core.agreement import fmt, num

log = logging.getLogger(__name__)

SIZES = (150, 300, 600, 1200, 0)  # 0 = all annotations outside the test set


def _cached(embed: Callable[[Sequence[str]], np.ndarray]) -> Callable[[Sequence[str]], np.ndarray]:
    cache: dict[str, np.ndarray] = {}

    def f(texts: Sequence[str]) -> np.ndarray:
        todo = list(dict.fromkeys(t for t in texts if t not in cache))
        if todo:
            cache.update(zip(todo, embed(todo), strict=True))
        return np.stack([cache[t] for t in texts])

    return f


def split_test(examples: Sequence[Example], seed: int, test_fraction: float) -> tuple[list[Example], list[Example]]:
    """(pool, test) by article; the pool in sha256(id) order."""
    test = [e for e in examples if is_validation(e.article_id, seed + 7919, test_fraction)]
    pool = [e for e in examples if not is_validation(e.article_id, seed + 7919, test_fraction)]
    return sorted(pool, key=lambda e: hashlib.sha256(e.id.encode()).hexdigest()), test


def learning_curve(examples: Sequence[Example], cfg: Any, sizes: Sequence[int] = SIZES,
                   test_fraction: float = 0.25, progress: bool = False,
                   on_point: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """{"n_test", "points": [{"n_labels", "student": metrics, "baselines": {...}, "train_seconds"}]}."""
    from dataclasses import replace

    from classifiers.metrics import evaluate_predictions
    from classifiers.train import default_base_model, train
    from pipeline.core.workdir import Workdir

    pool, test = split_test(examples, cfg.seed, test_fraction)
    if not test or not pool:
        raise ValueError("the learning curve needs annotations from several articles")
    base = cfg.base_model or default_base_model()
    embed = _cached(encoder_embeddings(base, cfg.max_length, cfg.device))
    test_texts = [model_input(e.text, e.section_title) for e in test]
    points = []
    for n in sorted({min(s, len(pool)) if s else len(pool) for s in sizes}):
        subset = pool[:n]
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="pmc-curate-curve-") as tmp:
            m = train(Workdir.of(tmp), replace(cfg, baselines=False), Path(tmp) / "model", progress=progress,
                      examples=subset)
            pred = Predictor.from_dir(Path(tmp) / "model", device=cfg.device).predict(test_texts)
        seconds = time.perf_counter() - t0
        train_part, _ = split_by_article(subset, cfg.seed, cfg.validation_fraction, cfg.min_validation)
        point = {"n_labels": n, "n_train": len(train_part), "train_seconds": round(seconds, 1),
                 "steps": m["steps"], "best_step": m["best_step"],
                 "student": evaluate_predictions(test, pred),
                 "baselines": run_baselines(train_part, test, base, cfg.max_length, cfg.device, embed=embed)}
        points.append(point)
        if on_point:
            on_point(point)
        s = point["student"]
        log.info("learning curve: %d labels: type F1 %s, domain F1 %s, score r %s (%.0f s)", n,
                 fmt(s["document_type"]["macro_f1"]), fmt(s["domain"]["macro_f1"]),
                 fmt(s["educational_score"]["pearson_r"]), seconds)
    return {"n_test": len(test), "n_test_articles": len({e.article_id for e in test}), "test_fraction": test_fraction,
            "points": points}


def plot_curve(curve: dict[str, Any], path: Path) -> None:
    """One panel per head: the primary figure of the student and each baseline against labels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(PRIMARY), figsize=(5 * len(PRIMARY), 4))
    xs = [p["n_labels"] for p in curve["points"]]
    for ax, (head, metric) in zip(axes, PRIMARY.items(), strict=True):
        ax.plot(xs, [num(p["student"][head][metric]) for p in curve["points"]], "o-", lw=2, label="student")
        for name in BASELINES:
            ax.plot(xs, [num(p["baselines"][name][head][metric]) for p in curve["points"]], "s--", lw=1, label=name)
        ax.set_xscale("log")
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.set_xlabel("teacher labels")
        ax.set_ylabel(metric)
        ax.set_title(f"{head} (test: {curve['n_test']} paragraphs)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown_table(curve: dict[str, Any]) -> list[str]:
    """Rows 'labels | student | baselines' per head, for the report and docs."""
    lines = ["| labels | head | student | " + " | ".join(BASELINES) + " | train s |",
             "|---|---|---|" + "---|" * len(BASELINES) + "---|"]
    for p in curve["points"]:
        for head, metric in PRIMARY.items():
            vals = [p["student"][head][metric]] + [p["baselines"][b][head][metric] for b in BASELINES]
            cells = [fmt(v) for v in vals]
            lines.append(f"| {p['n_labels']} | {head} {metric} | " + " | ".join(cells) + f" | {p['train_seconds']} |")
    return lines
