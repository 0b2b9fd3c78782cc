"""`pmc-curate train`: fine-tune the student on the teacher's annotations.

    pmc-curate train --workdir W [--base-model PATH_OR_HUB_ID] [--max-length L] [--epochs N]
                     [--batch-size B] [--lr LR] [--seed S] [--loss-weights document_type=1,domain=1,educational_score=1]

The training itself is classifiers/train.py (no Beam); this module is the stage: its flags (every
TrainConfig field, plus where the model goes) and the summary it prints.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, fields

from classifiers.metrics import too_small
from classifiers.train import TrainConfig, train
from pipeline.core import storage
from pipeline.core.agreement import fmt
from pipeline.core.options import option
from pipeline.core.workdir import Workdir

log = logging.getLogger(__name__)


@dataclass
class Config(TrainConfig):
    """`pmc-curate train`: the training settings, and where the model is read from and written to."""

    workdir: str = option("", fixed=True, help="work directory with annotations/ and paragraphs/")
    model_dir: str = option("", deprecated=("--out",), help="model directory, local or s3:// / gs:// (default: W/model)")

    def training(self) -> TrainConfig:
        """The training settings alone (what W/model/training_config.json records)."""
        return TrainConfig(**{f.name: getattr(self, f.name) for f in fields(TrainConfig)})


def run(config: Config, beam_argv: list[str]) -> int:
    """Entry point of `pmc-curate train`."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    cfg = config.training()
    cfg.check()
    workdir = Workdir.of(config.workdir)
    out = storage.as_location(config.model_dir) if config.model_dir else workdir.model
    storage.check_access(out.parent)  # an unreachable store fails now, not after the training run
    metrics = train(workdir, cfg, out)
    v = metrics["validation"]
    print(f"saved {metrics['model_id']} to {out} after {metrics['steps']} steps ({metrics['train_seconds']} s)")
    if v:
        print(f"validation ({v['n']} paragraphs): type macro-F1 {fmt(v['document_type']['macro_f1'])} "
              f"kappa {fmt(v['document_type']['kappa'])}; domain macro-F1 {fmt(v['domain']['macro_f1'])}; "
              f"score r {fmt(v['educational_score']['pearson_r'])} MAE {fmt(v['educational_score']['mae'])}")
    else:
        print("no validation articles (too few annotated articles): nothing to early-stop on")
    for head, w in metrics.get("baseline_wins", {}).items():
        advice = (f"propagate with --tfidf-heads {head} (or --tfidf-heads auto) to label it with the TF-IDF head"
                  if w["usable"] else "more labels or a larger --max-length may close the gap")
        log.warning("the %s baseline beats the student on %s (%s %.3f vs %.3f on validation): %s",
                    w["baseline"], head, w["metric"], w["baseline_value"], w["student"], advice)
    warning = too_small(v)
    if warning:  # last, where it is seen
        print(f"warning: {warning}", file=sys.stderr)
    return 0
