"""``NaNGuard``: stop training at the first NaN/inf loss (or gradient) and say exactly where it happened.

An exploding gradient usually shows up as a loss of ``inf`` then ``nan``, and one optimiser step with a
NaN gradient turns every weight into NaN: the rest of the run is wasted and the checkpoints after it
are useless. The guard checks the loss *before* the backward pass and, optionally, the gradients
*before* the optimiser step, so the weights stay those of the last finite step. It works under
automatic and manual optimisation (truncated BPTT) alike: Lightning calls the same hooks for both.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor
from torch.optim import Optimizer

from torchseq.checks import check_choice

ACTIONS = ("raise", "stop")
ADVICE = ("Usual causes: a learning rate too high, exploding gradients (clip them: "
          "trainer.gradient_clip_val, or TruncatedBPTT(gradient_clip_val=…)), or NaN/inf in the data.")


class NonFiniteLossError(RuntimeError):
    """Raised by :class:`NaNGuard` (``action="raise"``) when a loss or gradient is NaN or infinite."""


class NaNGuard(L.Callback):
    """Stop at the first non-finite training loss (and, with ``check_gradients``, gradient).

    Args:
        action: ``"raise"`` a :class:`NonFiniteLossError` (``fit`` ends with it), or ``"stop"``: warn,
            skip the optimiser step and let the trainer stop gracefully (``trainer.should_stop``).
        check_gradients: also check every gradient before each optimiser step, naming the parameters
            whose gradient is not finite (one device synchronisation per step).
    """

    def __init__(self, action: str = "raise", check_gradients: bool = True) -> None:
        self.action = check_choice("action", action, ACTIONS)
        self.check_gradients = check_gradients
        self.batch_index: int | None = None
        self.report: str | None = None       # the message of the last detection, for callers and tests
        self._skip_step = False

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self.batch_index = batch_idx

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: Tensor) -> None:
        if not bool(torch.isfinite(loss.detach()).all()):
            self._detect(trainer, f"training loss is {_format(loss)}")

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Optimizer
    ) -> None:
        if self.check_gradients and not self._skip_step:
            bad = [name for name, parameter in pl_module.named_parameters()
                   if parameter.grad is not None and not bool(torch.isfinite(parameter.grad).all())]
            if bad:
                listed = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
                self._detect(trainer, f"gradient of {listed} is not finite (the loss was finite)")
        if self._skip_step:
            # "stop": the step must not apply a NaN update; optimisers skip parameters without a grad.
            for group in optimizer.param_groups:
                for parameter in group["params"]:
                    parameter.grad = None

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._skip_step = False

    def _detect(self, trainer: L.Trainer, what: str) -> None:
        where = f"global step {trainer.global_step} (epoch {trainer.current_epoch}, batch {self.batch_index})"
        self.report = f"NaNGuard: {what} at {where}; the weights are those of the last finite step. {ADVICE}"
        if self.action == "raise":
            raise NonFiniteLossError(self.report)
        rank_zero_warn(self.report)
        trainer.should_stop = True
        self._skip_step = True


def _format(loss: Tensor) -> str:
    return str(float(loss.detach().float().mean()))  # "nan", "inf" or "-inf"
