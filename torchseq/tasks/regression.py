"""``RegressionTask``: one real number per sequence (the adding problem), mean squared error."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import MeanAbsoluteError, MeanSquaredError, MetricCollection

from torchseq.tasks.supervised import ModelFactory, SupervisedSequenceTask
from torchseq.tbptt import TruncatedBPTT


class RegressionTask(SupervisedSequenceTask):
    """Sequence regression: the model gives one output per sequence, trained with mean squared error.

    Logs ``{stage}/loss`` and ``{stage}/mse`` (the same number: the loss averaged per batch, the metric
    over the epoch's sequences) and ``{stage}/mae``. Targets are float32 (B,); ``predict`` returns (B,).

    Args:
        model: builds the network as ``model(input_size, 1)``.
        input_size: features per step (linked from the data module by the CLI).
        tbptt: train with truncated BPTT over chunks of ``tbptt.steps`` timesteps (None: full BPTT).
    """

    target_dtype = torch.float32

    def __init__(self, model: ModelFactory, input_size: int, tbptt: TruncatedBPTT | None = None) -> None:
        super().__init__(model, input_size, num_outputs=1, tbptt=tbptt)

    @property
    def num_classes(self) -> int:
        return 0  # the data modules' convention for a regression target

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        return super().forward(x, lengths).squeeze(-1)                   # (B, 1) → (B,)

    def make_metrics(self) -> MetricCollection:
        return MetricCollection({"mse": MeanSquaredError(), "mae": MeanAbsoluteError()})

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        return F.mse_loss(output, target)

    def predict(self, output: Tensor) -> Tensor:
        return output


#: The same class under its short name, which configs and checkpoints may still name.
Regression = RegressionTask
