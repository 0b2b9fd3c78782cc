"""Learning curve of the default student and the baselines on rule-teacher labels of the real sample.

    .venv/bin/python bench/learning_curve.py --max-length 64 --window-words 40 --out bench/out/learning_curve.json

Every paragraph of ../shared/data/pmc-oa-sample is labelled by pipeline.teacher.rules; the curve is
classifiers.learning_curve.learning_curve (test = a quarter of the articles, sizes 150/300/600/1200/all
of the rest). Prints one JSON line per size as it finishes; writes the curve, its PNG and a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from exp_student import SAMPLE, examples_of
from loadavg import load_line

from classifiers.baselines import PRIMARY
from classifiers.learning_curve import learning_curve, markdown_table, plot_curve
from classifiers.train import TrainConfig
from pipeline.teacher.rules import sample_paragraphs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--window-words", type=int, default=0)
    ap.add_argument("--sizes", default="150,300,600,1200,0")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="bench/out/learning_curve.json")
    a = ap.parse_args()
    print(load_line(), flush=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(a.threads)
    paragraphs = [p for p in sample_paragraphs(SAMPLE) if p.text and p.text.strip()]
    examples = examples_of(paragraphs, a.window_words or None)

    def show(point: dict) -> None:
        row = {"n_labels": point["n_labels"], "train_s": point["train_seconds"], "steps": point["steps"]}
        for who, m in [("student", point["student"])] + list(point["baselines"].items()):
            row[who] = [round(m[h][k], 3) for h, k in PRIMARY.items()]
        print(json.dumps(row), flush=True)

    curve = learning_curve(examples, TrainConfig(max_length=a.max_length),
                           [int(x) for x in a.sizes.split(",")], on_point=show)
    curve.update(max_length=a.max_length, window_words=a.window_words)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(curve, indent=2) + "\n")
    plot_curve(curve, out.with_suffix(".png"))
    out.with_suffix(".md").write_text("\n".join(markdown_table(curve)) + "\n")


if __name__ == "__main__":
    main()
