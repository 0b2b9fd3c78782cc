"""The training run's steps: build the student, the optimizer and the losses, fit with early stopping,
calibrate. classifiers/train.py strings them together; nothing here reads or writes the work directory.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import AutoTokenizer, get_linear_schedule_with_warmup

from classifiers.calibration import calibrate
from classifiers.data import Example, label_arrays, model_input
from classifiers.encoding import N_LENGTH_FEATURES, full_lengths, length_features
from classifiers.metrics import evaluate_predictions, raw_figures
from classifiers.model import StudentModel
from classifiers.predict import Predictions, Predictor
from pipeline.core.labels import HEADS

log = logging.getLogger(__name__)

CLASS_WEIGHT_POWER = {"none": 0.0, "sqrt": 0.5, "balanced": 1.0}
# Decoupled weight decay does not apply to biases and norms (the usual BERT fine-tuning recipe).
NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")


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


@dataclass
class Best:
    """The best validation point so far."""

    loss: float = math.inf
    criterion: float = -math.inf
    step: int = 0
    metrics: dict[str, Any] | None = None
    state: dict[str, torch.Tensor] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


class Trainer:
    """One training run over train/validation examples, with the settings of a TrainConfig (`cfg`)."""

    def __init__(self, cfg: Any, base: str, device: torch.device, train_ex: Sequence[Example],
                 val_ex: Sequence[Example]) -> None:  # fmt: skip
        self.cfg, self.device, self.train_ex, self.val_ex = cfg, device, list(train_ex), list(val_ex)
        self.tokenizer = AutoTokenizer.from_pretrained(base)
        n_features = N_LENGTH_FEATURES if cfg.length_features else 0
        self.model = StudentModel.from_base(base, dropout=cfg.dropout, pooling=cfg.pooling,
                                            n_features=n_features).to(device)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        texts = [model_input(e.text, e.section_title) for e in self.train_ex]
        self.enc = self.tokenizer(texts, truncation=True, max_length=cfg.max_length, padding=False)["input_ids"]
        self.features = torch.as_tensor(length_features(full_lengths(self.tokenizer, texts, self.enc, cfg.max_length),
                                                        cfg.max_length)) if n_features else None
        self.labels = {k: torch.as_tensor(v) for k, v in label_arrays(self.train_ex).items()}
        init_heads_from_priors(self.model, self.labels)
        self.val_texts = [model_input(e.text, e.section_title) for e in self.val_ex]
        power = CLASS_WEIGHT_POWER[cfg.class_weighting]
        self.ce_weight = {h.name: class_weights(self.labels[h.name], len(h.classes), power) for h in HEADS
                          if h.kind == "classification"}  # fmt: skip
        # standardized: the score's MSE divided by the training labels' variance, so the losses share a scale.
        self.score_var = {h.name: (max(float(self.labels[h.name].float().var()), 1e-2) if len(self.train_ex) > 1 else 1.0)
                          if cfg.score_target == "standardized" else 1.0 for h in HEADS if h.kind == "regression"}  # fmt: skip
        self.amp_dtype: torch.dtype | None = None
        if device.type == "cuda" and cfg.precision != "fp32":
            bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and torch.cuda.is_bf16_supported())
            self.amp_dtype = torch.bfloat16 if bf16 else torch.float16
        # Loss scaling is only needed for fp16 (bf16 has fp32's exponent range).
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype is torch.float16)

    def optimizer(self, total_steps: int) -> tuple[torch.optim.Optimizer, Any]:
        """AdamW with the encoder at `lr` and the fresh heads at `head_lr`, and a linear warm-up schedule."""
        cfg = self.cfg
        groups = []
        for part, lr in ((self.model.encoder, cfg.lr), (self.model.heads, cfg.head_lr or cfg.lr)):
            named = list(part.named_parameters())
            groups += [
                {"params": [p for n, p in named if not n.endswith(NO_DECAY)], "weight_decay": cfg.weight_decay, "lr": lr},
                {"params": [p for n, p in named if n.endswith(NO_DECAY)], "weight_decay": 0.0, "lr": lr},
            ]
        optim = torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr)
        return optim, get_linear_schedule_with_warmup(optim, int(cfg.warmup_ratio * total_steps), total_steps)

    def loss(self, idx: list[int]) -> torch.Tensor:
        """The summed, weighted loss of one batch (cross-entropy per class head, MSE for the score)."""
        input_ids, mask = _batch_tensors([self.enc[i] for i in idx], self.pad_id)
        ctx = torch.autocast("cuda", dtype=self.amp_dtype) if self.amp_dtype else torch.autocast("cpu", enabled=False)
        with ctx:
            feats = None if self.features is None else self.features[idx].to(self.device)
            out = self.model(input_ids.to(self.device), mask.to(self.device), feats)
        loss = torch.zeros((), device=self.device)
        for h in HEADS:
            target = self.labels[h.name][idx].to(self.device)
            if h.kind == "classification":
                w = self.ce_weight[h.name]
                part = F.cross_entropy(out[h.name].float(), target, weight=None if w is None else w.to(self.device))
            else:
                part = F.mse_loss(out[h.name].float(), target.float()) / self.score_var[h.name]
            loss = loss + self.cfg.loss_weights.get(h.name, 1.0) * part
        return loss

    def predict_validation(self) -> Predictions:
        predictor = Predictor(self.model, self.tokenizer, max_length=self.cfg.max_length, device=str(self.device),
                              batch_size=max(32, self.cfg.batch_size), precision=self.cfg.precision)  # fmt: skip
        return predictor.predict(self.val_texts)

    def validate(self) -> tuple[float, dict[str, Any]]:
        """Validation loss and metrics of the model as it is now (then back to training mode)."""
        pred = self.predict_validation()
        self.model.train()
        return validation_loss(self.val_ex, pred, self.cfg.loss_weights), raw_figures(self.val_ex, pred)

    def fit(self, total_steps: int, progress: bool = True) -> tuple[Best, int, float]:
        """Train for up to `total_steps`, validating every `eval_every` steps (default: each epoch) and
        stopping after `patience` validations without improvement; the best weights are loaded back.
        Returns (the best point, the steps taken, seconds)."""
        cfg = self.cfg
        optim, sched = self.optimizer(total_steps)
        best = Best()
        bad_evals, step, stop, epoch = 0, 0, False, -1
        gen = torch.Generator().manual_seed(cfg.seed)
        eval_every = cfg.eval_every or math.ceil(len(self.train_ex) / cfg.batch_size)
        t0 = time.perf_counter()
        self.model.train()
        bar = tqdm(total=total_steps, desc="train", unit="step", disable=not progress)
        while step < total_steps and not stop:
            epoch += 1
            order = torch.randperm(len(self.train_ex), generator=gen).tolist()
            for b in range(0, len(order), cfg.batch_size):
                loss = self.loss(order[b : b + cfg.batch_size])
                optim.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()
                self.scaler.unscale_(optim)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
                self.scaler.step(optim)
                self.scaler.update()
                sched.step()
                step += 1
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{float(loss.detach()):.3f}")
                last = step >= total_steps
                if self.val_ex and (step % eval_every == 0 or last):
                    improved = self._checkpoint(best, step, epoch, float(loss.detach()))
                    bad_evals = 0 if improved else bad_evals + 1
                    if bad_evals >= cfg.patience:
                        log.info("early stopping at step %d: no validation improvement in %d evaluations", step, bad_evals)
                        stop = True
                if last or stop:
                    break
        bar.close()
        if best.state is not None:
            self.model.load_state_dict(best.state)
        return best, step, time.perf_counter() - t0

    def _checkpoint(self, best: Best, step: int, epoch: int, train_loss: float) -> bool:
        """Validate; keep the weights when the stopping criterion improved. Returns whether it did."""
        vloss, metrics = self.validate()
        task = task_score(metrics)
        crit = task if self.cfg.stop_on == "task" else -vloss
        best.history.append({"step": step, "epoch": epoch, "train_loss": train_loss, "val_loss": vloss, "val_task": task})
        log.info("step %d: validation loss %.4f, task %.4f", step, vloss, task)
        if crit <= best.criterion + 1e-4:
            return False
        best.loss, best.criterion, best.step, best.metrics = vloss, crit, step, metrics
        best.state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
        return True

    def calibrate(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Temperature scaling of the class heads on validation (saved with the heads, so every Predictor
        applies it); returns (calibration per head, validation metrics with calibrated probabilities)."""
        pred = self.predict_validation()
        y = label_arrays(self.val_ex)
        calibration: dict[str, Any] = {}
        for h in HEADS:
            if h.kind == "classification":
                c = calibrate(pred.probs[h.name], y[h.name])
                self.model.temperature[h.name] = c["temperature"]
                pred.probs[h.name] = c["probs"]
                calibration[h.name] = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in c.items()
                                       if k != "probs"}  # fmt: skip
        return calibration, evaluate_predictions(self.val_ex, pred)
