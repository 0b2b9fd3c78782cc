"""The student: one shared transformer encoder, one head per label of pipeline.labels.HEADS.

As in the paper (XLM-RoBERTa-base, CE heads for type and domain, MSE head for the score, losses
summed), with the loss weights configurable. Any `AutoModel` encoder works as the base.

On disk (`W/model/`) the directory is a standard Hugging Face model directory of the ENCODER
(`config.json`, `model.safetensors`, tokenizer files: `AutoModel.from_pretrained(W/model)` and
`AutoTokenizer.from_pretrained(W/model)` load it) plus:

- `heads.safetensors`   the head weights (`<head>.weight`, `<head>.bias`) and each classification
  head's calibration temperature (`<head>.temperature`)
- `label_schema.json`   head names, kinds, class order, score range (checked against pipeline.labels)
- `training_config.json` the training configuration, pooling, model_id
- `metrics.json`        validation figures written by `pmc-curate train`

`StudentModel.from_dir(W/model)` loads all of it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel

from pipeline.core import storage
from pipeline.core.errors import ConfigError
from pipeline.core.labels import HEADS, SCORE_MAX, SCORE_MIN, Head

HEADS_FILE = "heads.safetensors"
SCHEMA_FILE = "label_schema.json"
CONFIG_FILE = "training_config.json"
METRICS_FILE = "metrics.json"
TEMPERATURE_SUFFIX = ".temperature"


def label_schema() -> dict[str, Any]:
    """The label schema as stored beside a model (and compared on load)."""
    return {
        "heads": [
            {"name": h.name, "kind": h.kind, "classes": list(h.classes), "minimum": h.minimum, "maximum": h.maximum}
            for h in HEADS
        ]
    }


def _head_width(head: Head) -> int:
    return len(head.classes) if head.kind == "classification" else 1


class StudentModel(nn.Module):
    """Shared encoder + mean pooling + one linear head per label.

    forward() returns {head name: logits [B, n_classes]} for classification heads and
    {head name: score [B]} for the regression head (in label units, 1-5, unclipped).
    """

    def __init__(self, encoder: PreTrainedModel, dropout: float = 0.1, pooling: str = "mean",
                 n_features: int = 0) -> None:
        super().__init__()
        if pooling not in ("mean", "cls"):
            raise ConfigError(f"pooling must be 'mean' or 'cls', not {pooling!r}")
        self.encoder = encoder
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        hidden = encoder.config.hidden_size
        # n_features: extra inputs of every head beside the pooled vector (classifiers.encoding's length
        # features); 0 = the paper's heads
        self.n_features = int(n_features)
        self.heads = nn.ModuleDict({h.name: nn.Linear(hidden + self.n_features, _head_width(h)) for h in HEADS})
        # Temperature scaling of each classification head (classifiers.calibration, fit on validation
        # after training; 1 = raw softmax). Saved in heads.safetensors as `<head>.temperature`.
        self.temperature: dict[str, float] = {h.name: 1.0 for h in HEADS if h.kind == "classification"}
        # Start the regression head at the middle of the scale so early MSE gradients are sane.
        for h in HEADS:
            if h.kind == "regression":
                nn.init.zeros_(self.heads[h.name].weight)
                nn.init.constant_(self.heads[h.name].bias, (SCORE_MIN + SCORE_MAX) / 2)

    @classmethod
    def from_base(cls, base_model: str, dropout: float = 0.1, pooling: str = "mean", n_features: int = 0) -> StudentModel:
        """A fresh student on top of a pretrained encoder (hub id or local path)."""
        try:
            encoder = AutoModel.from_pretrained(base_model)
        except (OSError, ValueError) as e:
            raise ConfigError(f"cannot load base model {base_model!r}: {e}") from e
        return cls(encoder, dropout=dropout, pooling=pooling, n_features=n_features)

    @classmethod
    def from_config(cls, config: PretrainedConfig, pooling: str = "mean") -> StudentModel:
        """A randomly initialised student of a given encoder architecture (for speed benchmarks)."""
        return cls(AutoModel.from_config(config), pooling=pooling)

    @classmethod
    def from_dir(cls, path: str | Path | storage.Location) -> StudentModel:
        """Load a student saved by save() (local, or on an object store: one local copy per process and
        content version); ConfigError if it is missing or its label schema differs."""
        loc = storage.as_location(path)
        if loc.is_remote and not (loc / HEADS_FILE).is_file():
            raise ConfigError(f"{loc} is not a trained student (missing {HEADS_FILE}); run `pmc-curate train` first")
        path = storage.local_copy(loc)
        for name in ("config.json", HEADS_FILE, SCHEMA_FILE):
            if not (path / name).is_file():
                raise ConfigError(f"{path} is not a trained student (missing {name}); run `pmc-curate train` first")
        stored = json.loads((path / SCHEMA_FILE).read_text())
        if stored != label_schema():
            raise ConfigError(
                f"{path}/{SCHEMA_FILE} does not match pipeline.labels (model trained on another label schema); retrain"
            )
        cfg = json.loads((path / CONFIG_FILE).read_text()) if (path / CONFIG_FILE).is_file() else {}
        encoder = AutoModel.from_pretrained(path)
        model = cls(encoder, dropout=float(cfg.get("dropout", 0.1)), pooling=cfg.get("pooling", "mean"),
                    n_features=int(cfg.get("n_features", 0)))
        state = load_file(str(path / HEADS_FILE))
        for k in [k for k in state if k.endswith(TEMPERATURE_SUFFIX)]:
            model.temperature[k[: -len(TEMPERATURE_SUFFIX)]] = float(state.pop(k))
        model.heads.load_state_dict(state)
        return model

    def save(self, path: str | Path, tokenizer: Any, training_config: dict[str, Any]) -> None:
        """Write the encoder as a standard HF directory, the tokenizer, heads, schema and config."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.encoder.save_pretrained(path)
        tokenizer.save_pretrained(path)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.heads.state_dict().items()}
        tensors.update({f"{k}{TEMPERATURE_SUFFIX}": torch.tensor(float(t)) for k, t in self.temperature.items()})
        save_file(tensors, str(path / HEADS_FILE))
        (path / SCHEMA_FILE).write_text(json.dumps(label_schema(), indent=2) + "\n")
        cfg = dict(training_config, pooling=self.pooling, dropout=self.dropout.p, n_features=self.n_features)
        (path / CONFIG_FILE).write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")

    def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """One vector per sequence: masked mean of the last hidden states (or the first token)."""
        if self.pooling == "cls":
            return hidden[:, 0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                features: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
        pooled = self.dropout(self.pool(out.last_hidden_state, attention_mask))
        if self.n_features:
            if features is None or features.shape[-1] != self.n_features:
                raise ValueError(f"this student's heads read {self.n_features} features per paragraph")
            pooled = torch.cat([pooled, features.to(pooled.dtype)], dim=-1)
        result = {}
        for h in HEADS:
            y = self.heads[h.name](pooled)
            result[h.name] = y.squeeze(-1) if h.kind == "regression" else y
        return result


def load_config(path: str | Path | storage.Location) -> dict[str, Any]:
    """training_config.json of a saved student, local or on an object store ({} when absent)."""
    f = storage.as_location(path) / CONFIG_FILE
    return json.loads(f.read_text()) if f.is_file() else {}


def encoder_config(name_or_path: str) -> PretrainedConfig:
    """An encoder's configuration only (no weights), e.g. to build a random xlm-roberta-base-sized model."""
    return AutoConfig.from_pretrained(name_or_path)
