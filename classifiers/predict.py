"""Fast batch inference with a trained student: the one code path propagate, evaluate and sample use.

What makes it fast (bench/bench_propagate.py measures it against transformers' pipeline):
- the whole batch is tokenized in one call of the Rust tokenizer, without padding;
- paragraphs are sorted by token length and cut into sub-batches, each padded only to its own
  longest member, so almost no compute goes to padding;
- torch.inference_mode(); fp16 (or bf16) autocast on CUDA;
- on CPU, `precision` int8 / onnx / onnx-int8 select a faster runtime (classifiers.cpu_runtime): the
  labels' model_id then ends in `+<precision>`; with `fallback_margin`, the rows an int8 path cannot call
  (a head's top two probabilities closer than the margin) are run again in fp32 (`+fp32-below-<margin>`).
Truncation at the maximum length is detected per paragraph (and reported, never silent).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoTokenizer

from classifiers.cpu_runtime import OnnxRunner, quantize_int8
from classifiers.encoding import full_lengths, length_features
from classifiers.model import StudentModel, load_config
from pipeline.core import storage
from pipeline.core.errors import ConfigError
from pipeline.core.labels import HEADS, SCORE_MAX, SCORE_MIN
from pipeline.core.precision import CPU_PRECISIONS, check_fallback_margin

log = logging.getLogger(__name__)

# Transformers warns once per process when a text is longer than the model maximum; we tokenize such
# texts on purpose (to count truncation), so that warning is noise here.
logging.getLogger("transformers.tokenization_utils_base").setLevel(logging.ERROR)


@dataclass
class Predictions:
    """Column arrays, one row per input text, in input order."""

    probs: dict[str, np.ndarray]  # classification head -> [N, n_classes] float32, rows sum to 1
    educational_score: np.ndarray  # [N] float32, clipped to [SCORE_MIN, SCORE_MAX]
    truncated: np.ndarray  # [N] bool: the text had more tokens than max_length
    n_tokens: np.ndarray  # [N] int: tokens fed to the model (after truncation)

    def __len__(self) -> int:
        return len(self.truncated)


def resolve_device(device: str | None) -> torch.device:
    """'auto'/None -> cuda when available, else cpu; ConfigError for an unavailable cuda."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda requested but torch sees no CUDA device (this torch build is CPU-only?)")
    return torch.device(device)


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype for a device: fp16 on CUDA by default (as the paper), none on CPU."""
    if precision in ("fp32", *CPU_PRECISIONS):
        return None
    if device.type != "cuda":
        return None if precision == "auto" else {"bf16": torch.bfloat16, "fp16": None}.get(precision)
    if precision == "bf16":
        return torch.bfloat16
    return torch.float16


class Predictor:
    """A loaded student + tokenizer on one device."""

    def __init__(
        self,
        model: StudentModel,
        tokenizer: Any,
        *,
        max_length: int,
        device: str | None = "cpu",
        batch_size: int = 64,
        precision: str = "auto",
        model_id: str = "student",
        model_dir: str | Path | None = None,
        max_tokens: int | None = None,
        tfidf: Any = None,
        tfidf_heads: Sequence[str] = (),
        fallback_margin: float = 0.0,
    ) -> None:
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.precision = precision
        self.runner: OnnxRunner | None = None
        check_fallback_margin(fallback_margin, precision)
        # the fp32 student for the fallback (the ONNX paths leave self.model in fp32; int8 replaces it)
        self.fp32_model = self.model if fallback_margin else None
        self.fallback_margin = float(fallback_margin)
        self.fallbacks = 0  # rows run again in fp32 so far
        if precision in CPU_PRECISIONS:
            if self.device.type != "cpu":
                raise ConfigError(f"--precision {precision} is a CPU path; on {self.device} use auto, fp16, bf16 or fp32")
            if precision == "int8":
                self.model = quantize_int8(self.model)
            else:
                if model.n_features:
                    raise ConfigError(f"--precision {precision}: this student's heads read length features, which the "
                                      "ONNX graph does not take yet; use int8 or fp32")
                if model_dir is None:
                    raise ConfigError(f"--precision {precision} needs the model directory (Predictor.from_dir)")
                self.runner = OnnxRunner(self.model, Path(model_dir), precision)
            model_id = f"{model_id}+{precision}"
            if fallback_margin:
                model_id += f"+fp32-below-{fallback_margin:g}"
        self.tokenizer = tokenizer
        self.batch_size = int(batch_size)
        # GPU: a sub-batch also closes at this many (padded) tokens, so long and short ones fill the device alike
        self.max_tokens = int(max_tokens) if max_tokens else None
        limit = _model_limit(model, tokenizer)
        if max_length > limit:
            log.warning("max_length %d exceeds the model's %d positions; using %d", max_length, limit, limit)
        self.max_length = min(int(max_length), limit)
        self.amp_dtype = autocast_dtype(self.device, precision)
        # heads taken from the TF-IDF heads saved beside the student (classifiers.tfidf_heads) instead
        self.tfidf, self.tfidf_heads = tfidf, list(tfidf_heads)
        self.model_id = model_id
        # calibrated probabilities: the temperatures fit on validation at training (1 = raw softmax)
        self.temperature = dict(getattr(model, "temperature", {}))
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    @classmethod
    def from_dir(
        cls,
        model_dir: str | Path | storage.Location,
        *,
        device: str | None = "cpu",
        batch_size: int = 64,
        max_length: int | None = None,
        precision: str = "auto",
        name: str | None = None,
        max_tokens: int | None = None,
        tfidf_heads: Sequence[str] = (),
        fallback_margin: float = 0.0,
    ) -> Predictor:
        """Load W/model (see classifiers.model); max_length defaults to the one the model was trained with.

        `model_dir` may be on an object store (one local copy per process and content version). `name`
        is the model directory's own name when `model_dir` is a local copy of it: a model without a
        recorded model_id is named after its directory, never after a temporary folder. `tfidf_heads`:
        heads to take from the TF-IDF heads saved beside the student (`auto`: those train recommended);
        the model id then names both models, e.g. `pmc-curate-student-1a2b+educational_score=tfidf-3c4d`.
        """
        loc = storage.as_location(model_dir)
        name = name or loc.name
        model = StudentModel.from_dir(loc)  # checks the directory first
        local = storage.local_copy(loc)  # the same folder StudentModel read (memoised per content version)
        tokenizer = AutoTokenizer.from_pretrained(str(local))
        cfg = load_config(local)
        model_id = str(cfg.get("model_id") or name)
        tfidf, heads = None, []
        if tfidf_heads:
            from classifiers.tfidf_heads import TfidfHeads, heads_id, recommended_heads, resolve_heads

            heads = resolve_heads(tfidf_heads, recommended_heads(local))
            if heads:
                tfidf, tfidf_id = TfidfHeads.load(local), heads_id(local)
                model_id += "".join(f"+{h}={tfidf_id}" for h in heads)
        return cls(
            model,
            tokenizer,
            max_length=int(max_length or cfg.get("max_length", 512)),
            device=device,
            batch_size=batch_size,
            precision=precision,
            model_id=model_id,
            model_dir=local,
            max_tokens=max_tokens,
            tfidf=tfidf,
            tfidf_heads=heads,
            fallback_margin=fallback_margin,
        )

    def tokenize(self, texts: Sequence[str]) -> tuple[list[list[int]], np.ndarray]:
        """Token ids cut at max_length (special tokens kept), and which texts were cut."""
        ids, lengths = self.tokenize_counted(texts)
        return ids, lengths > self.max_length

    def tokenize_counted(self, texts: Sequence[str]) -> tuple[list[list[int]], np.ndarray]:
        """Token ids cut at max_length, and each text's token count before the cut."""
        ids: list[list[int]] = self.tokenizer(list(texts), truncation=True, max_length=self.max_length,
                                              padding=False)["input_ids"]
        return ids, full_lengths(self.tokenizer, texts, ids, self.max_length)

    def batches(self, ids: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """Index arrays of sub-batches, longest first, each of similar lengths (minimal padding)."""
        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
        order = np.argsort(-lengths, kind="stable")
        if not self.max_tokens:
            return [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        out, start = [], 0
        while start < len(order):  # longest first: the first member sets the width of its sub-batch
            n = max(1, min(self.batch_size, self.max_tokens // max(1, int(lengths[order[start]]))))
            out.append(order[start : start + n])
            start += n
        return out

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def predict(self, texts: Sequence[str]) -> Predictions:
        """Probabilities per classification head, the score, and truncation flags, in input order."""
        n = len(texts)
        ids, lengths = self.tokenize_counted(texts)
        truncated = lengths > self.max_length
        feats = length_features(lengths, self.max_length) if self.model.n_features else None
        probs = {h.name: np.zeros((n, len(h.classes)), dtype=np.float32) for h in HEADS if h.kind == "classification"}
        score = np.zeros(n, dtype=np.float32)
        n_tokens = np.fromiter((len(x) for x in ids), dtype=np.int64, count=n)
        with torch.inference_mode(), self._autocast():
            self._fill(ids, np.arange(n), n_tokens, feats, probs, score, self._forward)
            if self.fp32_model is not None and n:
                # labels the int8 path cannot call: a head's top two classes closer than the margin
                close = np.zeros(n, dtype=bool)
                for p in probs.values():  # every classification head has at least two classes
                    top2 = np.partition(p, -2, axis=1)[:, -2:]
                    close |= (top2[:, 1] - top2[:, 0]) < self.fallback_margin
                rows = np.flatnonzero(close)
                if rows.size:
                    self.fallbacks += int(rows.size)
                    self._fill(ids, rows, n_tokens, feats, probs, score, self._forward_fp32)
        np.clip(score, SCORE_MIN, SCORE_MAX, out=score)
        if self.tfidf_heads:
            t_probs, t_score = self.tfidf.predict(texts)
            for h in self.tfidf_heads:
                if h in probs:
                    probs[h] = t_probs[h]
                else:
                    score = t_score
        return Predictions(probs=probs, educational_score=score, truncated=truncated, n_tokens=n_tokens)


    def _fill(self, ids: Sequence[Sequence[int]], rows: np.ndarray, n_tokens: np.ndarray, feats: np.ndarray | None,
              probs: dict[str, np.ndarray], score: np.ndarray, forward: Any) -> None:  # fmt: skip
        """Run `rows` of the batch through `forward` in length-sorted sub-batches; write their outputs in place."""
        for sub in self.batches([ids[i] for i in rows]):
            idx = rows[sub]
            width = int(n_tokens[idx].max())
            input_ids = np.full((len(idx), width), self.pad_id, dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for row, i in enumerate(idx):
                x = ids[i]
                input_ids[row, : len(x)] = x
                mask[row, : len(x)] = 1
            out = forward(input_ids, mask, None if feats is None else feats[idx])
            for name, p in probs.items():
                p[idx] = _softmax(out[name] / self.temperature.get(name, 1.0))
            score[idx] = out["educational_score"].reshape(-1)

    def _forward_fp32(self, input_ids: np.ndarray, mask: np.ndarray, feats: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """The fallback: the fp32 student in PyTorch (CPU)."""
        out = self.fp32_model(torch.from_numpy(input_ids), torch.from_numpy(mask),
                              None if feats is None else torch.from_numpy(feats))  # fmt: skip
        return {k: v.float().numpy() for k, v in out.items()}

    def _forward(self, input_ids: np.ndarray, mask: np.ndarray, feats: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """One padded sub-batch through the model (PyTorch or ONNX Runtime): float32 arrays per head."""
        if self.runner is not None:
            return self.runner(input_ids, mask)
        nb = self.device.type == "cuda"
        out = self.model(torch.from_numpy(input_ids).to(self.device, non_blocking=nb),
                         torch.from_numpy(mask).to(self.device, non_blocking=nb),
                         None if feats is None else torch.from_numpy(feats).to(self.device))  # fmt: skip
        return {k: v.float().cpu().numpy() for k, v in out.items()}


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _model_limit(model: StudentModel, tokenizer: Any) -> int:
    """Longest input the encoder accepts, in tokens."""
    cfg = model.encoder.config
    positions = getattr(cfg, "max_position_embeddings", 512)
    # RoBERTa-family models reserve padding_idx + 1 positions (514 positions -> 512 tokens).
    if getattr(cfg, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
        positions -= 2
    tmax = getattr(tokenizer, "model_max_length", None)
    if isinstance(tmax, int) and 0 < tmax < 100_000:
        positions = min(positions, tmax)
    return int(positions)


def entropy(probs: np.ndarray) -> np.ndarray:
    """Entropy of each row normalised by log(n_classes): 0 = certain, 1 = uniform."""
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0)
    return (-(p * np.log(p)).sum(axis=1) / np.log(p.shape[1])).astype(np.float32)
