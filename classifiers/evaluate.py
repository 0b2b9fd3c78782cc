"""`pmc-curate evaluate`: the student's agreement with held-out teacher labels, beside the paper's.

    pmc-curate evaluate --workdir W [--model DIR] [--split validation|all]

Writes W/reports/classifier.md (Markdown, the figures beside Biomed-Enriched's), the plots it
links (confusion matrices, reliability diagrams, score scatter) and classifier_metrics.json. The model
and the report folder may be on an object store: the model is read through one local copy, the report
is built locally and each of its files written in one piece; other files in W/reports/ are left alone.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from classifiers.data import Example, label_arrays, load_examples, model_input, split_by_article
from classifiers.model import load_config
from classifiers.predict import Predictions, Predictor
from classifiers.train import evaluate_predictions
from pipeline import storage
from pipeline.errors import ConfigError
from pipeline.labels import HEADS
from pipeline.workdir import Workdir

log = logging.getLogger(__name__)

# Biomed-Enriched (arXiv 2506.20331), XLM-R student vs Llama-3.1-70B on 39,800 held-out paragraphs.
PAPER = {
    "educational_score": {"pearson_r": 0.876, "mae": 0.326},
    "domain": {"macro_f1": 0.954},
    "document_type": {"macro_f1": 0.925, "kappa": 0.821},
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """CLI flags of `pmc-curate evaluate`."""
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--model", default="", help="trained student directory (default: W/model)")
    parser.add_argument("--split", choices=["validation", "all"], default="validation",
                        help="validation: the articles held out at training (default); all: every annotation")
    parser.add_argument("--out", default="", help="report directory (default: W/reports)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--bins", type=int, default=10, help="confidence bins of the calibration plots")


def held_out(workdir: Workdir, model_dir: str | Path | storage.Location, split: str) -> tuple[list[Example], str]:
    """The annotations to evaluate on and the split's name: the training run's validation articles, or all.

    When training held out no article (all annotations from one article), every annotation is used
    and the split is named so in the report: those figures are optimistic (seen in training).
    """
    examples = load_examples(workdir)
    if split == "all":
        return examples, "all annotations"
    cfg = load_config(model_dir)
    _, val = split_by_article(examples, int(cfg.get("seed", 13)), float(cfg.get("validation_fraction", 0.1)))
    if not val:
        log.warning("training held out no article; evaluating on all annotations (optimistic: seen in training)")
        return examples, "all annotations: training held out no article, so these were SEEN in training"
    return val, "validation"


def _fmt(x: float | None) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def plot_report(examples: list[Example], pred: Predictions, metrics: dict[str, Any], out: Path) -> list[str]:
    """Write the PNG plots; return their file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    cls_heads = [h for h in HEADS if h.kind == "classification"]
    fig, axes = plt.subplots(1, len(cls_heads), figsize=(5.5 * len(cls_heads), 4.8))
    for ax, h in zip(np.atleast_1d(axes), cls_heads, strict=True):
        m = np.array(metrics[h.name]["confusion_matrix"])
        ax.imshow(m, cmap="Blues")
        ax.set_xticks(range(len(h.classes)), h.classes, rotation=30, ha="right")
        ax.set_yticks(range(len(h.classes)), h.classes)
        ax.set_xlabel("student")
        ax.set_ylabel("teacher")
        ax.set_title(f"{h.name} (macro-F1 {_fmt(metrics[h.name]['macro_f1'])})")
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                ax.text(j, i, str(m[i, j]), ha="center", va="center", color="black" if m[i, j] < m.max() / 2 else "white")
    fig.tight_layout()
    fig.savefig(out / "confusion.png", dpi=110)
    plt.close(fig)
    names.append("confusion.png")

    fig, axes = plt.subplots(1, len(cls_heads), figsize=(5 * len(cls_heads), 4.5))
    for ax, h in zip(np.atleast_1d(axes), cls_heads, strict=True):
        bins = metrics[h.name]["reliability"]
        centers = [(b["lo"] + b["hi"]) / 2 for b in bins if b["count"]]
        acc = [b["accuracy"] for b in bins if b["count"]]
        conf = [b["confidence"] for b in bins if b["count"]]
        counts = [b["count"] for b in bins if b["count"]]
        width = bins[0]["hi"] - bins[0]["lo"]
        ax.bar(centers, acc, width=width * 0.9, alpha=0.7, label="accuracy")
        ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
        ax.plot(conf, acc, "o", color="C3", label="mean confidence")
        for c, a, n in zip(centers, acc, counts, strict=True):
            ax.text(c, a + 0.02, str(n), ha="center", fontsize=7)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.08)
        ax.set_xlabel("confidence (top-class probability)")
        ax.set_ylabel("accuracy vs teacher")
        ax.set_title(f"{h.name}: ECE {_fmt(metrics[h.name]['ece'])}")
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "reliability.png", dpi=110)
    plt.close(fig)
    names.append("reliability.png")

    y = label_arrays(examples)["educational_score"]
    rng = np.random.default_rng(0)
    fig, ax = plt.subplots(figsize=(4.8, 4.5))
    ax.scatter(y + rng.uniform(-0.15, 0.15, len(y)), pred.educational_score, s=6, alpha=0.4)
    ax.plot([1, 5], [1, 5], "k--", lw=1)
    ax.set_xlabel("teacher score (jittered)")
    ax.set_ylabel("student score")
    r = metrics["educational_score"]
    ax.set_title(f"educational score: r {_fmt(r['pearson_r'])}, MAE {_fmt(r['mae'])}")
    fig.tight_layout()
    fig.savefig(out / "score.png", dpi=110)
    plt.close(fig)
    names.append("score.png")
    return names


def render_markdown(metrics: dict[str, Any], model_id: str, split: str, plots: list[str]) -> str:
    """The report page: our figures beside the paper's, then per-class detail and the plots."""
    t, d, s = metrics["document_type"], metrics["domain"], metrics["educational_score"]
    lines = [
        "# Student vs teacher agreement",
        "",
        f"Model `{model_id}`, evaluated on {metrics['n']} teacher-labelled paragraphs ({split}; the "
        f"validation split is held out by article). {metrics['truncated']} of them were truncated at the "
        "model's maximum length.",
        "",
        "| head | metric | this run | Biomed-Enriched (paper) |",
        "|---|---|---|---|",
        f"| educational_score | Pearson r | {_fmt(s['pearson_r'])} | {PAPER['educational_score']['pearson_r']} |",
        f"| educational_score | MAE | {_fmt(s['mae'])} | {PAPER['educational_score']['mae']} |",
        f"| domain | macro-F1 | {_fmt(d['macro_f1'])} | {PAPER['domain']['macro_f1']} |",
        f"| domain | accuracy | {_fmt(d['accuracy'])} | - |",
        f"| domain | Cohen's kappa | {_fmt(d['kappa'])} | - |",
        f"| document_type | macro-F1 | {_fmt(t['macro_f1'])} | {PAPER['document_type']['macro_f1']} |",
        f"| document_type | Cohen's kappa | {_fmt(t['kappa'])} | {PAPER['document_type']['kappa']} |",
        f"| document_type | accuracy | {_fmt(t['accuracy'])} | - |",
        f"| document_type | ECE | {_fmt(t['ece'])} | - |",
        f"| domain | ECE | {_fmt(d['ece'])} | - |",
        "",
        "The paper's figures are for XLM-RoBERTa-base against Llama-3.1-70B labels on 39,800 paragraphs; "
        "compare only runs with a comparable teacher and sample size.",
        "",
    ]
    for h in HEADS:
        if h.kind != "classification":
            continue
        m = metrics[h.name]["confusion_matrix"]
        lines += [f"## {h.name}: confusion matrix (rows teacher, columns student)", "",
                  "| teacher \\ student | " + " | ".join(h.classes) + " |",
                  "|---|" + "---|" * len(h.classes)]
        lines += [f"| {c} | " + " | ".join(str(x) for x in row) + " |" for c, row in zip(h.classes, m, strict=True)]
        lines.append("")
    lines += ["## Plots", ""] + [f"![{p}]({p})" for p in plots] + [""]
    return "\n".join(lines)


def evaluate(workdir: Workdir, model_dir: str | Path | storage.Location, out: str | Path | storage.Location,
             split: str = "validation", device: str = "auto", batch_size: int = 64, bins: int = 10) -> dict[str, Any]:
    """Predict the held-out annotations, write the report, return the metrics."""
    model_loc, out = storage.as_location(model_dir), storage.as_location(out)
    local_model = storage.local_copy(model_loc)  # the directory itself when local
    examples, split = held_out(workdir, local_model, split)
    predictor = Predictor.from_dir(local_model, device=device, batch_size=batch_size, name=model_loc.name)
    pred = predictor.predict([model_input(e.text, e.section_title) for e in examples])
    metrics = evaluate_predictions(examples, pred)
    if bins != 10:
        from classifiers.metrics import classification_report

        y = label_arrays(examples)
        for h in HEADS:
            if h.kind == "classification":
                metrics[h.name] = classification_report(y[h.name], pred.probs[h.name], h.classes, bins)
    doc = dict(metrics, model_id=predictor.model_id, split=split, paper=PAPER)
    with tempfile.TemporaryDirectory(prefix="pmc-curate-evaluate-") as tmp:
        plots = plot_report(examples, pred, metrics, Path(tmp))
        files = {p: (Path(tmp) / p).read_bytes() for p in plots}
    files["classifier_metrics.json"] = (json.dumps(doc, indent=2) + "\n").encode()
    files["classifier.md"] = render_markdown(metrics, predictor.model_id, split, plots).encode()
    out.mkdir()
    for name, data in files.items():  # only evaluate's own files: report's survive; the page goes last
        (out / name).write_bytes(data)
    return doc


def run(args: argparse.Namespace, beam_argv: list[str]) -> int:
    """Entry point of `pmc-curate evaluate`."""
    if beam_argv:
        raise ConfigError(f"unknown flags for evaluate: {' '.join(beam_argv)}")
    workdir = Workdir.of(args.workdir)
    model_dir = storage.as_location(args.model) if args.model else workdir.model
    out = storage.as_location(args.out) if args.out else workdir.reports
    storage.check_access(out.parent)  # an unreachable store fails now, before the predictions
    m = evaluate(workdir, model_dir, out, args.split, args.device, args.batch_size, args.bins)
    t, d, s = m["document_type"], m["domain"], m["educational_score"]
    print(f"{m['n']} held-out paragraphs: type F1 {_fmt(t['macro_f1'])} kappa {_fmt(t['kappa'])} "
          f"(paper 0.925/0.821); domain F1 {_fmt(d['macro_f1'])} (paper 0.954); "
          f"score r {_fmt(s['pearson_r'])} MAE {_fmt(s['mae'])} (paper 0.876/0.326)")
    print(f"report: {out / 'classifier.md'}")
    return 0
