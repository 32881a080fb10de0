"""At test time, score an encoder's features with a linear probe, next to the same probe on raw inputs.

The probe (:mod:`torchseq.metrics.linear_probe`) is fitted on the training split — codes from
``pl_module.encode`` with the encoder frozen, and the raw inputs flattened — and scored on the test split.
Logged: ``test/probe_acc_codes`` and ``test/probe_acc_inputs``.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import Tensor

from torchseq.callbacks.image_grids import require_methods
from torchseq.metrics.linear_probe import linear_probe_accuracy
from torchseq.modes import evaluating


class LinearProbe(L.Callback):
    """Logistic-regression probe on frozen codes vs raw inputs, run at the end of ``trainer.test``.

    The training split comes from ``trainer.datamodule.train_dataloader()``, so the datamodule must
    serve it during testing (torchseq's data modules build all three splits in ``setup``).

    Args:
        l2: L2 penalty of the logistic regression (the same for both probes).
    """

    def __init__(self, l2: float = 1e-3) -> None:
        self.l2 = l2
        self._test: list[tuple[Tensor, Tensor, Tensor]] = []

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        require_methods(pl_module, self, "encode")
        self._test = []

    def on_test_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        inputs, labels = batch[0], batch[1]
        self._test.append((pl_module.encode(inputs).cpu(), inputs.flatten(1).cpu(), labels.cpu()))

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.datamodule is None:
            raise RuntimeError(
                "LinearProbe needs a datamodule (trainer.test(..., datamodule=...)) for the train split"
            )
        train: list[tuple[Tensor, Tensor, Tensor]] = []
        with evaluating(pl_module):
            for inputs, labels, *_ in trainer.datamodule.train_dataloader():
                codes = pl_module.encode(inputs.to(pl_module.device)).cpu()
                train.append((codes, inputs.flatten(1), labels))
        train_codes, train_inputs, train_labels = (torch.cat(part) for part in zip(*train, strict=True))
        test_codes, test_inputs, test_labels = (torch.cat(part) for part in zip(*self._test, strict=True))
        accuracies = {
            "test/probe_acc_codes": linear_probe_accuracy(
                train_codes, train_labels, test_codes, test_labels, self.l2
            ),
            "test/probe_acc_inputs": linear_probe_accuracy(
                train_inputs, train_labels, test_inputs, test_labels, self.l2
            ),
        }
        pl_module.log_dict(accuracies)
