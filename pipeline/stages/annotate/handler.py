"""The Beam adapter for the teacher: a ModelHandler whose "model" is a TeacherClient.

RunInference batches sampled paragraphs; each batch is annotated concurrently inside the client
(bounded by its semaphore), so one worker keeps `concurrency` requests in flight. The handler holds
only the configuration (no API key: the client reads it from the environment on the worker).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from pipeline.teacher.client import TeacherClient
from pipeline.teacher.config import Outcome, TeacherConfig
from pipeline.teacher.prompt import load_prompt


class TeacherModelHandler(ModelHandler[dict, PredictionResult, TeacherClient]):
    """load_model -> a TeacherClient (HTTP client + cache + budget); run_inference -> one Outcome per paragraph."""

    def __init__(self, config: TeacherConfig, batch_size: int | None = None) -> None:
        super().__init__()
        self._config = config
        # Batches several times the concurrency keep every slot busy while stragglers finish.
        self._batch_size = batch_size or max(64, 4 * config.concurrency)

    def load_model(self) -> TeacherClient:
        """One client per worker process (Beam shares it across the DoFn's threads)."""
        return TeacherClient(self._config, load_prompt(self._config.prompt_version))

    def run_inference(
        self, batch: Sequence[dict[str, Any]], model: TeacherClient, inference_args: dict[str, Any] | None = None
    ) -> Iterable[PredictionResult]:
        """Annotate a batch; the model id travels on every result, so every annotation names its teacher."""
        outcomes: list[Outcome] = model.annotate_many(list(batch))
        if len(batch) < self._batch_size:
            # A short batch ends its bundle: checkpoint now, a worker may be torn down before the timer.
            model.checkpoint()
        return [PredictionResult(example, o, model_id=self._config.model) for example, o in zip(batch, outcomes, strict=True)]

    def batch_elements_kwargs(self) -> dict[str, Any]:
        # Fixed size: adaptive batching would start at 1 and leave the concurrency slots idle; the last
        # batch of a bundle is flushed whatever its size.
        return {"min_batch_size": self._batch_size, "max_batch_size": self._batch_size}

    def get_metrics_namespace(self) -> str:
        return "pmc_curate_teacher"

    def get_num_bytes(self, batch: Sequence[dict[str, Any]]) -> int:
        return sum(len(x.get("text") or "") for x in batch)
