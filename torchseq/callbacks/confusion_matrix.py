"""``ConfusionMatrixPlot``: the test split's confusion matrix as a PNG, computed and drawn by torchmetrics."""

from __future__ import annotations

import json
import warnings
from typing import Any

import lightning as L
from lightning.pytorch.utilities import rank_zero_warn
from matplotlib.figure import Figure
from torchmetrics.classification import MulticlassConfusionMatrix

from torchseq.callbacks.history import run_dir


class ConfusionMatrixPlot(L.Callback):
    """Write ``<run>/confusion_matrix.png`` (rows: true class, columns: predicted) after testing, and the
    numbers it shows to ``<run>/confusion_matrix.json`` (``{"labels": …, "matrix": rows}``).

    Needs ``pl_module.num_classes`` and a ``test_step`` that returns ``{"output": logits, "target": y}``
    (as :class:`torchseq.tasks.ClassificationTask` does). Class names come from the data module's
    ``class_names`` when it has them. Under DDP every process counts its share and rank 0 draws the sum.
    """

    file_name = "confusion_matrix.png"
    numbers_file_name = "confusion_matrix.json"

    def __init__(self, normalize: str | None = None) -> None:
        self.normalize = normalize  # None (counts), "true", "pred" or "all", as torchmetrics
        self.matrix: MulticlassConfusionMatrix | None = None

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        num_classes = getattr(pl_module, "num_classes", 0)
        if num_classes < 2:
            rank_zero_warn(f"ConfusionMatrixPlot: {type(pl_module).__name__} has no num_classes ≥ 2; skipped")
            self.matrix = None
            return
        self.matrix = MulticlassConfusionMatrix(num_classes, normalize=self.normalize).to(pl_module.device)

    def on_test_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self.matrix is not None:
            self.matrix.update(outputs["output"], outputs["target"])

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.matrix is None:
            return
        counts = self.matrix.compute()  # a collective under DDP: every rank must call it
        if trainer.is_global_zero:
            names = getattr(trainer.datamodule, "class_names", None)
            labels = [str(name) for name in names] if names is not None else None
            size = max(4.0, 0.45 * len(counts) + 2.0)
            figure = Figure(figsize=(size, size), layout="constrained")
            axis = figure.subplots()
            with warnings.catch_warnings():
                # torchmetrics hands matplotlib the tensor itself; numpy 2 notes the old __array__ protocol
                warnings.filterwarnings("ignore", ".*__array__ implementation doesn't accept a copy")
                self.matrix.plot(counts.cpu(), ax=axis, labels=labels)
            axis.set_title("test confusion matrix")
            path = run_dir(trainer) / self.file_name
            path.parent.mkdir(parents=True, exist_ok=True)
            figure.savefig(path, dpi=110)
            numbers = {"labels": labels, "matrix": counts.cpu().tolist()}
            path.with_name(self.numbers_file_name).write_text(json.dumps(numbers))
        self.matrix = None
