"""`pmc-curate evaluate`: the student's agreement with held-out teacher labels, beside the paper's.

    pmc-curate evaluate --workdir W [--model DIR] [--split validation|all] [--learning-curve]

Writes W/reports/classifier.md, its plots and classifier_metrics.json (classifiers/evaluate.py).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from classifiers.evaluate import evaluate, fmt, run_learning_curve
from pipeline.core import storage
from pipeline.core.options import option
from pipeline.core.workdir import Workdir


@dataclass(frozen=True)
class Config:
    """`pmc-curate evaluate`: which model, which held-out labels, where the report goes."""

    workdir: str = option("", fixed=True, help="work directory with model/ and annotations/")
    model_dir: str = option("", deprecated=("--model",), help="trained student directory (default: W/model)")
    split: str = option("validation", choices=("validation", "all"),
                        help="validation: the articles held out at training; all: every annotation")
    report_dir: str = option("", deprecated=("--out",), help="report directory (default: W/reports)")
    device: str = option("auto", help="auto, cpu, cuda, cuda:1 ...")
    batch_size: int = option(64, help="paragraphs per forward pass")
    bins: int = option(10, help="confidence bins of the calibration plots")
    learning_curve: bool = option(False, help="also train students (and baselines) on 150/300/600/1200/all labels, "
                                              "score them on held-out articles and add the curve to the report")
    curve_sizes: str = option("150,300,600,1200,0", help="label counts of the learning curve (0: all)")


def run(config: Config, beam_argv: list[str]) -> int:
    """Entry point of `pmc-curate evaluate`."""
    workdir = Workdir.of(config.workdir)
    model_dir = storage.as_location(config.model_dir) if config.model_dir else workdir.model
    out = storage.as_location(config.report_dir) if config.report_dir else workdir.reports
    storage.check_access(out.parent)  # an unreachable store fails now, before the predictions
    curve = None
    if config.learning_curve:
        sizes = [int(x) for x in config.curve_sizes.split(",") if x.strip()]
        curve = run_learning_curve(workdir, model_dir, sizes, config.device)
    m = evaluate(workdir, model_dir, out, config.split, config.device, config.batch_size, config.bins, curve)
    t, d, s = m["document_type"], m["domain"], m["educational_score"]
    print(f"{m['n']} held-out paragraphs: type F1 {fmt(t['macro_f1'])} kappa {fmt(t['kappa'])} "
          f"(paper 0.925/0.821); domain F1 {fmt(d['macro_f1'])} (paper 0.954); "
          f"score r {fmt(s['pearson_r'])} MAE {fmt(s['mae'])} (paper 0.876/0.326)")
    print(f"report: {out / 'classifier.md'}")
    if m.get("caution"):  # last, where it is seen: the figures above may not mean much
        print(f"warning: {m['caution']}", file=sys.stderr)
    return 0
