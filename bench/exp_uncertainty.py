"""Does a second annotation round picked by the student's uncertainty help more than a random one?

An offline experiment on real PMC paragraphs with pipeline.teacher.rules as the "teacher":

1. Hold out ~30% of the articles as the test set (never annotated, never sampled).
2. Round 1: annotate R1 paragraphs of the remaining pool in hash order (a uniform sample); train S1.
3. Round 2, two ways, each adding R2 paragraphs: (a) the next R2 in hash order (random), (b) the R2
   paragraphs S1 is least sure about (classifiers.uncertainty, as `sample --strategy uncertainty`).
   Train S2a and S2b from the base model on R1 + R2 with identical settings.
4. Compare S1, S2a, S2b on the test articles: per head macro-F1 / kappa, per-class F1 (the classes
   where S1 was weakest), score r.

    .venv/bin/python bench/exp_uncertainty.py --r1 150 --r2 150 --seeds 1 --json /tmp/exp.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from classifiers.data import Example, is_validation, model_input
from classifiers.metrics import confusion_matrix, evaluate_predictions
from classifiers.predict import Predictor
from classifiers.train import TrainConfig, train
from classifiers.uncertainty import uncertainty
from pipeline.core.labels import DOCUMENT_TYPES, DOMAINS
from pipeline.core.workdir import Workdir
from pipeline.teacher.rules import rule_labels, sample_paragraphs, write_workdir

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadavg import load_line

SAMPLE = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "pmc-oa-sample"
WINDOW, MAX_LENGTH = 40, 64


def per_class_f1(m: list[list[int]]) -> list[float]:
    a = np.array(m, dtype=float)
    tp, t, p = np.diag(a), a.sum(1), a.sum(0)
    return [float(2 * tp[i] / (t[i] + p[i])) if t[i] + p[i] else float("nan") for i in range(len(a))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--r1", type=int, default=150)
    ap.add_argument("--r2", type=int, default=150)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    print(load_line(), flush=True)
    torch.set_num_threads(args.threads)

    paragraphs = sample_paragraphs(SAMPLE)
    test = [p for p in paragraphs if is_validation(p.article_id, 99, 0.3)]
    pool = [p for p in paragraphs if not is_validation(p.article_id, 99, 0.3)]
    test_ex = []
    for p in test:
        t, d, s = rule_labels(p.text, WINDOW)
        test_ex.append(Example(p.id, p.article_id, p.text, p.section_title, DOCUMENT_TYPES.index(t), DOMAINS.index(d), s))
    test_texts = [model_input(p.text, p.section_title) for p in test]
    print(f"pool {len(pool)} paragraphs, test {len(test)} paragraphs from {len({p.article_id for p in test})} articles")
    runs = []
    for seed in range(args.seeds):
        order = sorted(pool, key=lambda p, s=seed: hashlib.sha256(f"{s}:{p.id}".encode()).digest())
        r1, rest = order[: args.r1], order[args.r1 :]
        cfg = TrainConfig(max_length=MAX_LENGTH, epochs=args.epochs, batch_size=16, lr=2e-4, seed=seed,
                          validation_fraction=0.0)

        def fit(annotated, name, tmp, cfg=cfg, seed=seed):  # type: ignore[no-untyped-def]
            w = Workdir.of(Path(tmp) / name)
            write_workdir(w, paragraphs, annotated, window_words=WINDOW)
            t0 = time.perf_counter()
            train(w, cfg, progress=False)
            pred = Predictor.from_dir(w.model, batch_size=64)
            m = evaluate_predictions(test_ex, pred.predict(test_texts))
            print(f"seed {seed} {name}: trained on {len(annotated)} in {time.perf_counter() - t0:.0f} s; "
                  f"type F1 {m['document_type']['macro_f1']:.3f} domain F1 {m['domain']['macro_f1']:.3f} "
                  f"score r {m['educational_score']['pearson_r']:.3f}", flush=True)
            return w, m

        with tempfile.TemporaryDirectory() as tmp:
            w1, m1 = fit(r1, "round1", tmp)
            pred = Predictor.from_dir(w1.model, batch_size=64).predict([model_input(p.text, p.section_title) for p in rest])
            u = uncertainty(pred)
            uncertain = [rest[i] for i in np.argsort(-u, kind="stable")[: args.r2]]
            _, m2a = fit(r1 + rest[: args.r2], "round2_random", tmp)
            _, m2b = fit(r1 + uncertain, "round2_uncertainty", tmp)
        picked_types = np.bincount([DOCUMENT_TYPES.index(rule_labels(p.text, WINDOW)[0]) for p in uncertain], minlength=4)
        random_types = np.bincount([DOCUMENT_TYPES.index(rule_labels(p.text, WINDOW)[0]) for p in rest[: args.r2]], minlength=4)
        runs.append({"seed": seed, "round1": m1, "round2_random": m2a, "round2_uncertainty": m2b,
                     "round2_type_counts": {"random": random_types.tolist(), "uncertainty": picked_types.tolist()}})

    def summary(key: str, head: str, metric: str) -> float:
        return float(np.nanmean([r[key][head][metric] for r in runs]))

    print(f"\nmean over {len(runs)} seed(s), test = {len(test)} paragraphs of held-out articles")
    print(f"{'':<22}{'round 1':>10}{'+random':>10}{'+uncertain':>12}")
    for head, metric in [("document_type", "macro_f1"), ("document_type", "kappa"), ("domain", "macro_f1"),
                         ("domain", "kappa"), ("educational_score", "pearson_r"), ("educational_score", "mae")]:
        vals = [summary(k, head, metric) for k in ("round1", "round2_random", "round2_uncertainty")]
        print(f"{head[:13] + ' ' + metric:<22}" + "".join(f"{v:>10.3f}" for v in vals[:2]) + f"{vals[2]:>12.3f}")
    for head, classes in (("document_type", DOCUMENT_TYPES), ("domain", DOMAINS)):
        for key in ("round1", "round2_random", "round2_uncertainty"):
            f1 = np.nanmean([per_class_f1(r[key][head]["confusion_matrix"]) for r in runs], axis=0)
            print(f"{head} per-class F1 {key:<20} " + ", ".join(f"{c} {v:.2f}" for c, v in zip(classes, f1, strict=True)))
    for r in runs:
        print(f"seed {r['seed']} round-2 type counts (Clinical case, Study, Review, Other): {r['round2_type_counts']}")
    support = confusion_matrix(np.array([e.document_type for e in test_ex]), np.array([e.document_type for e in test_ex]), 4)
    print("test support per type:", np.diag(support).tolist())
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
