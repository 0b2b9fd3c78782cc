"""The pilot-size experiment of issue 13: train the student on N rule-teacher labels of the real sample,
score it on every paragraph it was not trained on.

    .venv/bin/python bench/exp_student.py --n 600 --max-length 128 [--window-words 0] [--set lr=1e-4 ...]

Labels come from pipeline.teacher.rules over the full paragraph text (--window-words 0) or its first
N words; the annotated paragraphs are the first N in sha256(id) order (the sample stage's order). Prints
one JSON line: the config overrides, train seconds, steps, and type / domain macro-F1 and score r / MAE
on the paragraphs not annotated (the issue's "1,477 paragraphs it did not train on" at N = 600).
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadavg import load_line

from classifiers.data import Example, model_input
from classifiers.metrics import evaluate_predictions
from classifiers.predict import Predictor
from classifiers.train import TrainConfig, train
from pipeline.core.labels import DOCUMENT_TYPES, DOMAINS
from pipeline.core.workdir import Workdir
from pipeline.teacher.rules import sample_paragraphs, teacher_rules, write_workdir

SAMPLE = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "pmc-oa-sample"


def hash_order(paragraphs):
    return sorted(paragraphs, key=lambda p: hashlib.sha256(p.id.encode()).hexdigest())


def examples_of(paragraphs, window_words, teacher="rules-v1"):
    rules = teacher_rules(teacher)
    out = []
    for p in paragraphs:
        t, d, s = rules(p.text, window_words)
        out.append(Example(p.id, p.article_id, p.text, p.section_title, DOCUMENT_TYPES.index(t), DOMAINS.index(d), float(s)))
    return out


def r3(v):
    """A figure rounded for the JSON line; an undefined one ("n/a (reason)") as it is."""
    from pipeline.core.agreement import is_na

    return v if is_na(v) else round(float(v), 3)


def parse_value(v: str):
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return v


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=600)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--window-words", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sample", default=str(SAMPLE))
    ap.add_argument("--set", nargs="*", default=[], help="TrainConfig overrides, key=value")
    ap.add_argument("--teacher", default="rules-v1", help="rule teacher (pipeline.teacher.rules.TEACHERS)")
    ap.add_argument("--baselines", action="store_true",
                    help="also score majority and TF-IDF, fit on the same labels, on the same unseen paragraphs")
    a = ap.parse_args()
    print(load_line(), flush=True)
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(a.threads)
    paragraphs = [p for p in sample_paragraphs(Path(a.sample)) if p.text and p.text.strip()]
    ordered = hash_order(paragraphs)
    annotated, rest = ordered[: a.n], ordered[a.n :]
    over = {k: parse_value(v) for k, v in (s.split("=", 1) for s in a.set)}
    cfg = TrainConfig(max_length=a.max_length, **over)
    with tempfile.TemporaryDirectory() as tmp:
        w = Workdir.of(tmp)
        write_workdir(w, paragraphs, annotated, window_words=a.window_words or None, teacher=a.teacher)
        t0 = time.perf_counter()
        m = train(w, cfg, progress=False)
        wall = time.perf_counter() - t0
        test = examples_of(rest, a.window_words or None, a.teacher)
        pred = Predictor.from_dir(w.model, batch_size=64).predict([model_input(e.text, e.section_title) for e in test])
        r = evaluate_predictions(test, pred)
        base = {}
        if a.baselines:
            from classifiers.baselines import majority, tfidf

            labelled = examples_of(annotated, a.window_words or None, a.teacher)
            for name, fn in (("majority", majority), ("tfidf", tfidf)):
                b = evaluate_predictions(test, fn(labelled, test))
                base[name] = {"type_f1": r3(b["document_type"]["macro_f1"]), "domain_f1": r3(b["domain"]["macro_f1"]),
                              "score_r": r3(b["educational_score"]["pearson_r"])}
    cfgd = json.loads(json.dumps(m.get("config", {}))) if "config" in m else {}
    print(json.dumps({
        "n": a.n, "teacher": a.teacher, "max_length": a.max_length, "set": over, "baselines": base,
        "baseline_wins": m.get("baseline_wins"), "load_avg": round(os.getloadavg()[0], 1), "train_s": round(wall, 1), "steps": m["steps"], "best_step": m["best_step"],
        "n_test": r["n"], "type_f1": r3(r["document_type"]["macro_f1"]),
        "domain_f1": r3(r["domain"]["macro_f1"]), "score_r": r3(r["educational_score"]["pearson_r"]),
        "score_mae": r3(r["educational_score"]["mae"]),
        "val": {k: r3(v) for k, v in (("type", m["validation"]["document_type"]["macro_f1"]),
                                             ("domain", m["validation"]["domain"]["macro_f1"]),
                                             ("score", m["validation"]["educational_score"]["pearson_r"]))}
        if m["validation"] else None, **cfgd,
    }), flush=True)


if __name__ == "__main__":
    main()
