"""``GradientFlowPlot``: watch ‖∂L/∂h_t‖ over t change as a recurrent model trains.

At initialisation the gradient reaching early steps is often vanishingly small; a gated model that
learns a long-range task opens its gates and the curve flattens. Every ``every_n_epochs`` epochs the
callback measures the curve (:func:`torchseq.diagnostics.gradient_flow`) on the epoch's first training
batch, in eval mode, and redraws ``<run>/gradient_flow.png``: one panel per recurrent cell, one curve
per measured epoch. It also logs ``grad_flow/log10_ratio`` (log₁₀ ‖∂L/∂h_1‖/‖∂L/∂h_T‖ of the first
cell), so the training curves show it too.

Works with any task that has ``forward(x, lengths)`` and ``loss(output, target)`` — torchseq's
sequence tasks (:class:`~torchseq.tasks.SupervisedSequenceTask`).
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
from torch import Tensor

from torchseq.callbacks.history import run_dir
from torchseq.checks import check_positive_int
from torchseq.diagnostics import decay_ratio, plot_gradient_flow, recording_states, state_gradient_norms
from torchseq.modes import evaluating
from torchseq.tasks.supervised import split_batch


class GradientFlowPlot(L.Callback):
    """Measure and plot the gradient flow through time during training (see the module docstring)."""

    file_name = "gradient_flow.png"

    def __init__(self, every_n_epochs: int = 1) -> None:
        check_positive_int("every_n_epochs", every_n_epochs)
        self.every_n_epochs = every_n_epochs
        self.curves: dict[int, dict[str, Tensor]] = {}   # epoch → {cell → (T,) norms}
        self._batch: Any = None

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if batch_idx == 0:
            self._batch = batch

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch
        if self._batch is None or (epoch + 1) % self.every_n_epochs:
            return
        norms = self.measure(pl_module, self._batch)
        self.curves[epoch] = norms
        first = next(iter(norms.values()))
        pl_module.log("grad_flow/log10_ratio", math.log10(max(decay_ratio(first), 1e-300)))
        if trainer.is_global_zero:
            panels = {cell: {f"epoch {e}": curves[cell] for e, curves in self.curves.items()}
                      for cell in norms}
            plot_gradient_flow(panels, run_dir(trainer) / self.file_name)

    @staticmethod
    def measure(pl_module: L.LightningModule, batch: Any) -> dict[str, Tensor]:
        """‖∂L/∂h_t‖ of every cell on ``batch``, in eval mode (no dropout), the module's mode after."""
        x, y, lengths = split_batch(batch)
        with evaluating(pl_module, gradients=True), recording_states(pl_module) as states:
            loss = pl_module.loss(pl_module(x, lengths), y)
            norms = state_gradient_norms(loss, states)
        return {name: curve.detach().cpu() for name, curve in norms.items()}
