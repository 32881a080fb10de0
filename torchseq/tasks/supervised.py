"""``SupervisedSequenceTask``: the training logic that sequence classification and regression share.

A batch is ``(x, y)`` or, for padded variable-length data, ``(x, y, lengths)``. Every step is the same
few lines — forward, loss, metrics, log — and a subclass supplies only what differs: how many outputs
the model has, the loss, the metrics and what a prediction is.

The model is built here, not handed in: ``model`` is a factory called as ``model(input_size,
num_outputs)``, so the sizes can come from the data (the CLI links them) while the config chooses the
architecture (``class_path: torchseq.models.RecurrentClassifier`` plus its other arguments).

Logged names: ``{train,val,test}/loss`` and ``{stage}/{metric}`` (e.g. ``val/acc``). ``test_step``
returns ``{"loss", "output", "target"}`` so callbacks (the confusion matrix) can use the outputs
without a second forward pass.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import lightning as L
import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric, MetricCollection

from torchseq.checks import check_data_sizes
from torchseq.tbptt import TruncatedBPTT

ModelFactory = Callable[[int, int], nn.Module]
Batch = tuple[Tensor, Tensor] | tuple[Tensor, Tensor, Tensor]
STAGES = ("train", "val", "test")


def split_batch(batch: Batch) -> tuple[Tensor, Tensor, Tensor | None]:
    """``(x, y)`` or ``(x, y, lengths)`` → ``(x, y, lengths or None)``."""
    if not isinstance(batch, tuple | list) or len(batch) not in (2, 3):
        kind = f"a {type(batch).__name__} of {len(batch)}" if isinstance(batch, tuple | list) else \
            type(batch).__name__
        raise ValueError(f"batch: expected (x, y) or (x, y, lengths), got {kind}")
    x, y, *rest = batch
    return x, y, (rest[0] if rest else None)


class SupervisedSequenceTask(L.LightningModule, ABC):
    """Sequences in, one target per sequence out. Subclasses set the loss, metrics and predictions.

    Outside the CLI the optimiser is Adam with lr 1e-3; a config's ``optimizer:`` / ``lr_scheduler:``
    replace it (LightningCLI's own mechanism).
    """

    #: dtype a batch's targets must have (checked once per step: a wrong task for the data fails at once)
    target_dtype: ClassVar[torch.dtype]

    def __init__(
        self, model: ModelFactory, input_size: int, num_outputs: int, tbptt: TruncatedBPTT | None = None
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.input_size, self.num_outputs = input_size, num_outputs
        self.model = model(input_size, num_outputs)
        self.train_metrics, self.val_metrics, self.test_metrics = (
            self.make_metrics().clone(prefix=f"{stage}/") for stage in STAGES
        )
        # Evaluation losses as torchmetrics means, summed across DDP processes: exact for uneven shards,
        # where Lightning's sync_dist mean floors the halved sample count (gloo).
        self.val_loss, self.test_loss = MeanMetric(), MeanMetric()
        # Truncated BPTT steps the optimiser once per chunk itself (see torchseq.tbptt).
        self.tbptt = tbptt
        self.automatic_optimization = tbptt is None

    # -- what a subclass decides -----------------------------------------------------------------
    @property
    @abstractmethod
    def num_classes(self) -> int:
        """Classes the task predicts (0 for regression); compared with the data module's at setup."""

    @abstractmethod
    def make_metrics(self) -> MetricCollection:
        """Fresh metrics, updated as ``metrics(output, y)``; cloned once per stage."""

    @abstractmethod
    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        """Scalar loss of a batch's outputs."""

    @abstractmethod
    def predict(self, output: Tensor) -> Tensor:
        """What ``predict`` returns for a batch's outputs (class indices, values)."""

    # -- the model ---------------------------------------------------------------------------------
    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """x (B, T, F), lengths (B,) or None → the model's outputs (B, num_outputs)."""
        return self.model(x, lengths)

    def setup(self, stage: str) -> None:
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        sizes = {"input_size": self.input_size, "num_classes": self.num_classes}
        check_data_sizes(f"{type(self).__name__} was built", sizes, datamodule)

    # -- steps -------------------------------------------------------------------------------------
    def training_step(self, batch: Batch, batch_index: int) -> dict[str, Tensor]:
        if self.tbptt is not None:
            return self.truncated_training_step(batch)
        return self.shared_step(batch, "train")

    def validation_step(self, batch: Batch, batch_index: int) -> dict[str, Tensor]:
        return self.shared_step(batch, "val")

    def test_step(self, batch: Batch, batch_index: int) -> dict[str, Tensor]:
        return self.shared_step(batch, "test")

    def predict_step(self, batch: Batch, batch_index: int) -> Tensor:
        x, _, lengths = split_batch(batch)
        return self.predict(self(x, lengths))

    def shared_step(self, batch: Batch, stage: str) -> dict[str, Tensor]:
        x, y, lengths = split_batch(batch)
        self.check_targets(y)
        output = self(x, lengths)
        return self.record(stage, self.loss(output, y), output, y)

    def truncated_training_step(self, batch: Batch) -> dict[str, Tensor]:
        """A training step as truncated BPTT (``tbptt``): chunks of ``tbptt.steps`` timesteps."""
        x, y, lengths = split_batch(batch)
        if lengths is not None:
            raise ValueError("tbptt: truncated BPTT needs fixed-length batches (x, y), got (x, y, lengths)")
        self.check_targets(y)
        loss, output = self.tbptt.training_step(self, x, y, self.loss)
        return self.record("train", loss, output, y)

    def check_targets(self, y: Tensor) -> None:
        if y.dtype != self.target_dtype:
            raise TypeError(
                f"batch: {type(self).__name__} expects targets of dtype {self.target_dtype}, got {y.dtype}"
            )

    def record(self, stage: str, loss: Tensor, output: Tensor, y: Tensor) -> dict[str, Tensor]:
        """Update and log the stage's loss and metrics; the step's outputs for callbacks."""
        metrics: MetricCollection = getattr(self, f"{stage}_metrics")
        metrics(output.detach(), y)
        training, batch_size = stage == "train", len(y)
        if training:
            self.log(f"{stage}/loss", loss, on_step=True, on_epoch=True, prog_bar=True, sync_dist=True,
                     batch_size=batch_size)
        else:
            mean_loss: MeanMetric = getattr(self, f"{stage}_loss")
            mean_loss.update(loss.detach(), weight=batch_size)
            self.log(f"{stage}/loss", mean_loss, on_step=False, on_epoch=True, prog_bar=True)
        self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=not training, batch_size=batch_size)
        return {"loss": loss, "output": output.detach(), "target": y}

    def configure_optimizers(self) -> Any:
        return torch.optim.Adam(self.parameters(), lr=1e-3)
