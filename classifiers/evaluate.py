"""The student's agreement with held-out teacher labels, beside the paper's.

Writes W/reports/classifier.md (Markdown, the figures beside Biomed-Enriched's), the plots it
links (confusion matrices, reliability diagrams, score scatter) and classifier_metrics.json. The model
and the report folder may be on an object store: the model is read through one local copy, the report
is built locally and each of its files written in one piece; other files in W/reports/ are left alone.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from classifiers.data import Example, label_arrays, load_examples, model_input, split_by_article
from classifiers.metrics import evaluate_predictions, too_small
from classifiers.model import METRICS_FILE, load_config
from classifiers.predict import Predictions, Predictor
from pipeline.core import agreement, provenance, storage
from pipeline.core.labels import HEADS
from pipeline.core.tables import describe_teachers, teacher_models
from pipeline.core.workdir import Workdir

log = logging.getLogger(__name__)
CURVE_FILE = "learning_curve.json"

# Biomed-Enriched (arXiv 2506.20331), XLM-R student vs Llama-3.1-70B on 39,800 held-out paragraphs.
PAPER = {
    "educational_score": {"pearson_r": 0.876, "mae": 0.326},
    "domain": {"macro_f1": 0.954},
    "document_type": {"macro_f1": 0.925, "kappa": 0.821},
}


def held_out(workdir: Workdir, model_dir: str | Path | storage.Location, split: str) -> tuple[list[Example], str]:
    """The annotations to evaluate on and the split's name: the training run's validation articles, or all.

    When training held out no article (all annotations from one article), every annotation is used
    and the split is named so in the report: those figures are optimistic (seen in training).
    """
    examples = load_examples(workdir)
    if split == "all":
        return examples, "all annotations"
    cfg = load_config(model_dir)
    _, val = split_by_article(examples, int(cfg.get("seed", 13)), float(cfg.get("validation_fraction", 0.1)),
                              int(cfg.get("min_validation", 0)))
    if not val:
        log.warning("training held out no article; evaluating on all annotations (optimistic: seen in training)")
        return examples, "all annotations: training held out no article, so these were SEEN in training"
    return val, "validation"


def fmt(x: float | str | None) -> str:
    """A figure, or "n/a (reason)" (pipeline.core.agreement)."""
    return agreement.fmt(x)


def fmt_ci(m: dict[str, Any], key: str) -> str:
    """A head's figure with its 95% bootstrap interval when it has one."""
    return agreement.fmt_ci(m.get(key), (m.get("ci95") or {}).get(key))


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
        ax.set_title(f"{h.name} (n={metrics['n']}, macro-F1 {fmt(metrics[h.name]['macro_f1'])})", fontsize=9)
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
        ax.bar(centers, acc, width=width * 0.9, alpha=0.7, color="#0072B2", label="accuracy")
        ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
        ax.plot(conf, acc, "o", color="#D55E00", label="mean confidence")
        for c, a, n in zip(centers, acc, counts, strict=True):
            ax.text(c, a + 0.02, str(n), ha="center", fontsize=7)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.08)
        ax.set_xlabel("confidence (top-class probability)")
        ax.set_ylabel("accuracy vs teacher")
        ax.set_title(f"{h.name}: ECE {fmt(metrics[h.name]['ece'])}", fontsize=9)
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "reliability.png", dpi=110)
    plt.close(fig)
    names.append("reliability.png")

    y = label_arrays(examples)["educational_score"]
    rng = np.random.default_rng(0)
    fig, ax = plt.subplots(figsize=(4.8, 4.5))
    ax.scatter(y + rng.uniform(-0.15, 0.15, len(y)), pred.educational_score, s=6, alpha=0.4, color="#0072B2")
    ax.plot([1, 5], [1, 5], "k--", lw=1)
    ax.set_xlim(0.5, 5.5)  # the full 1-5 score range, whatever this sample spans
    ax.set_ylim(0.5, 5.5)
    ax.set_xticks(range(1, 6))
    ax.set_yticks(range(1, 6))
    ax.set_xlabel("teacher score (jittered)")
    ax.set_ylabel("student score")
    r = metrics["educational_score"]
    ax.set_title(f"educational score (n={metrics['n']}): r {fmt(r['pearson_r'])}, MAE {fmt(r['mae'])}", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "score.png", dpi=110)
    plt.close(fig)
    names.append("score.png")
    return names


def _baseline_lines(training: dict[str, Any]) -> list[str]:
    """The student beside the baselines fit on its own split (from W/model/metrics.json)."""
    from classifiers.baselines import BASELINES

    v, base = training.get("validation"), training.get("baselines") or {}
    if not v or not base:
        return []
    rows = [("document_type", "macro_f1", "macro-F1"), ("document_type", "kappa", "Cohen's kappa"),
            ("domain", "macro_f1", "macro-F1"), ("educational_score", "pearson_r", "Pearson r"),
            ("educational_score", "mae", "MAE")]
    names = [b for b in BASELINES if b in base]
    lines = ["## The student beside cheaper models (same split)", "",
             f"Fit on the student's training articles, scored on its {v['n']} validation paragraphs "
             "(the training run's split, so the student column is from W/model/metrics.json). majority: "
             "the most frequent class / the mean score; tfidf: TF-IDF + logistic regression / ridge; "
             "frozen_encoder: the untouched base encoder, mean-pooled, with linear heads (the FineWeb-Edu recipe).",
             "", "| head | metric | student | " + " | ".join(names) + " | paper |",
             "|---|---|---|" + "---|" * len(names) + "---|"]
    for head, key, label in rows:
        paper = PAPER.get(head, {}).get(key, "-")
        lines.append(f"| {head} | {label} | {fmt(v[head][key])} | "
                     + " | ".join(fmt(base[b][head][key]) for b in names) + f" | {paper} |")
    lines.append("")
    for head, row in (training.get("gaps") or {}).items():
        lines.append(f"- **{head}**: {_gap_sentence(row)}.")
    return lines + [""]


def _gap_sentence(row: dict[str, float | None]) -> str:
    """'student minus baseline: +0.120 vs tfidf, ...' and a verdict; says so when no gap is defined."""
    parts = [f"{'+' if g >= 0 else ''}{g:.3f} vs {b}" for b, g in row.items() if g is not None]
    if not parts:
        return ("student minus baseline: n/a (the figure is undefined for the student or every baseline on "
                "this split: too few paragraphs, one class, or constant scores)")
    worst = min(((g, b) for b, g in row.items() if g is not None and b != "majority"), default=None)
    verdict = "" if worst is None else (f" — {worst[1]} does as well or better here" if worst[0] <= 0
                                        else " — the student is ahead of every cheaper model")
    return f"student minus baseline: {', '.join(parts)}{verdict}"


def _calibration_lines(training: dict[str, Any], metrics: dict[str, Any]) -> list[str]:
    cal = training.get("calibration") or {}
    if not cal:
        return []
    lines = ["## Calibration (temperature scaling, fit on validation)", "",
             "| head | temperature | ECE before | ECE after (validation) | ECE in this report |", "|---|---|---|---|---|"]
    for head, c in cal.items():
        lines.append(f"| {head} | {c['temperature']:.3f} | {fmt(c['ece_before'])} | {fmt(c['ece_after'])} | "
                     f"{fmt(metrics[head]['ece'])} |")
    return lines + ["", "The temperatures are stored with the heads: evaluate, propagate and uncertainty sampling "
                    "all read calibrated probabilities. On the validation split the 'after' ECE is in-sample "
                    "(the temperature was fit there).", ""]


def render_markdown(metrics: dict[str, Any], model_id: str, split: str, plots: list[str],
                    training: dict[str, Any] | None = None, curve: dict[str, Any] | None = None,
                    provenance_lines: list[str] | tuple[str, ...] = (),
                    teachers: dict[str, int] | None = None) -> str:
    """The report page: our figures beside the paper's, baselines, calibration, the plots, detail."""
    t, d, s = metrics["document_type"], metrics["domain"], metrics["educational_score"]
    warning = too_small(metrics, split)
    lines = [
        "# Student vs teacher agreement",
        "",
        *provenance_lines,
        *([f"> **Caution:** {warning}", ""] if warning else []),
        f"Model `{model_id}`, evaluated on {metrics['n']} teacher-labelled paragraphs ({split}; the "
        f"validation split is held out by article). {metrics['truncated']} of them were truncated at the "
        "model's maximum length." + (f" Teacher: {describe_teachers(teachers)}." if teachers else ""),
        "",
        "| head | metric | this run [95% bootstrap interval] | Biomed-Enriched (paper) |",
        "|---|---|---|---|",
        f"| educational_score | Pearson r | {fmt_ci(s, 'pearson_r')} | {PAPER['educational_score']['pearson_r']} |",
        f"| educational_score | MAE | {fmt_ci(s, 'mae')} | {PAPER['educational_score']['mae']} |",
        f"| domain | macro-F1 | {fmt_ci(d, 'macro_f1')} | {PAPER['domain']['macro_f1']} |",
        f"| domain | accuracy | {fmt_ci(d, 'accuracy')} | - |",
        f"| domain | Cohen's kappa | {fmt_ci(d, 'kappa')} | - |",
        f"| document_type | macro-F1 | {fmt_ci(t, 'macro_f1')} | {PAPER['document_type']['macro_f1']} |",
        f"| document_type | Cohen's kappa | {fmt_ci(t, 'kappa')} | {PAPER['document_type']['kappa']} |",
        f"| document_type | accuracy | {fmt_ci(t, 'accuracy')} | - |",
        f"| document_type | ECE | {fmt(t['ece'])} | - |",
        f"| domain | ECE | {fmt(d['ece'])} | - |",
        "",
        f"A figure the data cannot support reads n/a with its reason: macro-F1, kappa, Pearson r and ECE "
        f"need at least {agreement.MIN_N} paragraphs and more than one class (or score) in the teacher labels.",
        "",
        "The paper's figures are for XLM-RoBERTa-base against Llama-3.1-70B labels on 39,800 paragraphs; "
        "compare only runs with a comparable teacher and sample size.",
        "",
        "## Figures beside the paper's", "",
        "| this run | Biomed-Enriched (paper) |", "|---|---|",
    ]
    paper_of = {
        "confusion.png": f"type macro-F1 {PAPER['document_type']['macro_f1']}, kappa {PAPER['document_type']['kappa']}; "
                         f"domain macro-F1 {PAPER['domain']['macro_f1']}",
        "reliability.png": "calibration not reported",
        "score.png": f"score Pearson r {PAPER['educational_score']['pearson_r']}, MAE {PAPER['educational_score']['mae']}",
        "learning_curve.png": "one point: ~400K teacher labels, 39,800 held-out paragraphs",
    }
    lines += [f"| ![{p}]({p}) | {paper_of.get(p, '')} |" for p in plots]
    lines.append("")
    lines += _baseline_lines(training or {})
    lines += _calibration_lines(training or {}, metrics)
    if curve:
        from classifiers.learning_curve import markdown_table

        lines += ["## Learning curve", "",
                  f"Held-out test: {curve['n_test']} paragraphs of {curve['n_test_articles']} articles never "
                  "trained on; each size is the first N other annotations in hash order.", ""]
        lines += markdown_table(curve) + [""]
    for h in HEADS:
        if h.kind != "classification":
            continue
        m = metrics[h.name]["confusion_matrix"]
        lines += [f"## {h.name}: confusion matrix (rows teacher, columns student)", "",
                  "| teacher \\ student | " + " | ".join(h.classes) + " |",
                  "|---|" + "---|" * len(h.classes)]
        lines += [f"| {c} | " + " | ".join(str(x) for x in row) + " |" for c, row in zip(h.classes, m, strict=True)]
        lines.append("")
    return "\n".join(lines)


def evaluate(workdir: Workdir, model_dir: str | Path | storage.Location, out: str | Path | storage.Location,
             split: str = "validation", device: str = "auto", batch_size: int = 64, bins: int = 10,
             curve: dict[str, Any] | None = None) -> dict[str, Any]:
    """Predict the held-out annotations, write the report, return the metrics (`curve`: a learning
    curve to include; else the one an earlier run left in the report folder, if any)."""
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
    mfile = local_model / METRICS_FILE
    training = json.loads(mfile.read_text()) if mfile.is_file() else {}
    prov = provenance.collect(workdir, "annotations", student_model_id=predictor.model_id)
    doc = dict({"warning": prov["stand_in"]} if prov["stand_in"] else {}, provenance=prov, **metrics,
               model_id=predictor.model_id, split=split, paper=PAPER,
               baselines=training.get("baselines") or {}, gaps=training.get("gaps") or {},
               calibration=training.get("calibration") or {}, caution=too_small(metrics, split))
    with tempfile.TemporaryDirectory(prefix="pmc-curate-evaluate-") as tmp:
        plots = plot_report(examples, pred, metrics, Path(tmp))
        if curve is None and (out / CURVE_FILE).is_file():  # from an earlier `evaluate --learning-curve`
            curve = json.loads((out / CURVE_FILE).read_text())
        if curve:
            from classifiers.learning_curve import plot_curve

            plot_curve(curve, Path(tmp) / "learning_curve.png")
            plots.append("learning_curve.png")
            doc["learning_curve"] = curve
        files = {p: (Path(tmp) / p).read_bytes() for p in plots}
    if curve:
        files[CURVE_FILE] = (json.dumps(curve, indent=2) + "\n").encode()
    files["classifier_metrics.json"] = (json.dumps(doc, indent=2) + "\n").encode()
    files["classifier.md"] = render_markdown(metrics, predictor.model_id, split, plots, training, curve,
                                              provenance.header_lines(prov), teacher_models(workdir)).encode()
    out.mkdir()
    for name, data in files.items():  # only evaluate's own files: report's survive; the page goes last
        (out / name).write_bytes(data)
    return doc


def run_learning_curve(workdir: Workdir, model_dir: storage.Location, sizes: list[int], device: str) -> dict[str, Any]:
    """The learning curve over W's annotations with the trained model's settings (defaults without one)."""
    from dataclasses import fields

    from classifiers.learning_curve import learning_curve
    from classifiers.train import TrainConfig

    cfg = load_config(model_dir) if (model_dir / "training_config.json").is_file() else {}
    names = {f.name for f in fields(TrainConfig)} - {"max_steps"}
    tc = TrainConfig(**{k: v for k, v in cfg.items() if k in names})
    tc.device = device
    return learning_curve(load_examples(workdir), tc, sizes)
