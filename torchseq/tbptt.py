"""Truncated backpropagation through time (TBPTT), for Lightning 2 and for plain PyTorch loops.

Lightning 1.x had ``truncated_bptt_steps``; 2.0 removed it. This is the same algorithm as a small
helper: a batch of long sequences (B, T, ·) is cut along time into chunks of ``steps`` steps; the
recurrent state is carried from one chunk to the next but *detached*, so each backward pass runs
through at most ``steps`` steps; the optimiser steps once per chunk that has a loss.

Which chunks have a loss depends on the targets:

- per-step targets (y of shape (B, T, …), e.g. the copy task): every chunk has its slice of y;
- one target per sequence (y of shape (B,) or (B, C), e.g. the adding problem): only the last chunk
  does; the earlier chunks only advance the state (without building a graph: it would be cut anyway).

The carrying is done by torchseq's own ``stateful`` layers (each call starts from the previous call's
final state, detached), so any model built from torchseq layers works unchanged: ``model(x_chunk)``.
With ``steps ≥ T`` the result is exactly one step of full BPTT.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from lightning.pytorch import LightningModule
from torch import Tensor, nn

from torchseq.checks import check_choice, check_positive_int
from torchseq.recurrent import RecurrentLayers

CLIP_ALGORITHMS = ("norm", "value")


@contextmanager
def carrying_state(model: nn.Module) -> Iterator[list[RecurrentLayers]]:
    """Within the block, every torchseq layer of ``model`` carries its (detached) final state into
    its next call; states start at zero and the layers' own ``stateful`` settings come back after."""
    layers = [module for module in model.modules() if isinstance(module, RecurrentLayers)]
    if not layers:
        raise ValueError(f"model: expected a module containing torchseq recurrent layers, got "
                         f"{type(model).__name__}")
    bidirectional = [type(layer).__name__ for layer in layers if layer.bidirectional]
    if bidirectional:
        raise ValueError(f"model: truncated BPTT needs unidirectional layers (a backward direction reads the "
                         f"future, which later chunks hold), got bidirectional {', '.join(bidirectional)}")
    previous = [layer.stateful for layer in layers]
    for layer in layers:
        layer.stateful = True
        layer.reset_states()
    try:
        yield layers
    finally:
        for layer, stateful in zip(layers, previous, strict=True):
            layer.reset_states()
            layer.stateful = stateful


@dataclass
class TruncatedBPTT:
    """Truncated BPTT over chunks of ``steps`` timesteps, with optional gradient clipping per chunk.

    Args:
        steps: chunk length k (timesteps per backward pass).
        gradient_clip_val: clip threshold applied before every optimiser step (None: no clipping).
            Lightning refuses ``Trainer(gradient_clip_val=…)`` under manual optimisation, which this
            uses, so the clipping settings live here.
        gradient_clip_algorithm: ``"norm"`` (rescale the global L2 norm) or ``"value"`` (clamp each entry).
    """

    steps: int
    gradient_clip_val: float | None = None
    gradient_clip_algorithm: str = "norm"

    def __post_init__(self) -> None:
        check_positive_int("steps", self.steps)
        if self.gradient_clip_val is not None and not self.gradient_clip_val > 0:
            raise ValueError(f"gradient_clip_val: expected a positive number or None, got "
                             f"{self.gradient_clip_val!r}")
        check_choice("gradient_clip_algorithm", self.gradient_clip_algorithm, CLIP_ALGORITHMS)

    def chunks(self, x: Tensor, y: Tensor) -> list[tuple[Tensor, Tensor | None]]:
        """Split a batch-first (x, y) in time; a chunk's target is None when it has no loss."""
        if x.dim() < 2:
            raise ValueError(f"x: expected a batch-first sequence (B, T, …), got shape {tuple(x.shape)}")
        x_chunks = x.split(self.steps, dim=1)
        if self.has_step_targets(x, y):
            return list(zip(x_chunks, y.split(self.steps, dim=1), strict=True))
        return [(chunk, None) for chunk in x_chunks[:-1]] + [(x_chunks[-1], y)]

    @staticmethod
    def has_step_targets(x: Tensor, y: Tensor) -> bool:
        """Whether ``y`` holds one target per timestep (B, T, …) rather than one per sequence."""
        return y.dim() >= 2 and y.shape[:2] == x.shape[:2]

    def run(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        loss_fn: Callable[[Tensor, Tensor], Tensor],
        optimise: Callable[[Tensor], None],
    ) -> tuple[Tensor, Tensor]:
        """One batch of TBPTT: ``optimise(loss)`` (backward + step) is called once per chunk with a loss.

        Returns the mean of the chunk losses and the outputs the targets were compared with (every
        chunk's, joined in time, for per-step targets; the last chunk's otherwise), both detached.
        """
        losses, outputs = [], []
        with carrying_state(model):
            for x_chunk, y_chunk in self.chunks(x, y):
                if y_chunk is None:
                    with torch.no_grad():
                        model(x_chunk)  # advances the carried state only
                    continue
                output = model(x_chunk)
                loss = loss_fn(output, y_chunk)
                optimise(loss)
                losses.append(loss.detach())
                outputs.append(output.detach())
        return torch.stack(losses).mean(), torch.cat(outputs, dim=1) if len(outputs) > 1 else outputs[0]

    def training_step(
        self, task: LightningModule, x: Tensor, y: Tensor, loss_fn: Callable[[Tensor, Tensor], Tensor],
        model: nn.Module | None = None,
    ) -> tuple[Tensor, Tensor]:
        """:meth:`run` inside a LightningModule with ``automatic_optimization = False``.

        Uses ``task.optimizers()``, ``manual_backward`` (so precision plugins and strategies apply) and
        ``clip_gradients``, and steps the learning-rate schedulers as Lightning would (per batch or
        per epoch, as each is configured). ``model`` defaults to ``task`` itself.
        """
        if task.automatic_optimization:
            raise RuntimeError(f"{type(task).__name__}: truncated BPTT steps the optimiser itself; set "
                               f"automatic_optimization = False in the task's __init__")
        optimizer = task.optimizers()

        def optimise(loss: Tensor) -> None:
            optimizer.zero_grad()
            task.manual_backward(loss)
            if self.gradient_clip_val is not None:
                task.clip_gradients(optimizer, gradient_clip_val=self.gradient_clip_val,
                                    gradient_clip_algorithm=self.gradient_clip_algorithm)
            optimizer.step()

        result = self.run(task if model is None else model, x, y, loss_fn, optimise)
        step_schedulers(task)
        return result


def step_schedulers(task: LightningModule) -> None:
    """Under manual optimisation Lightning leaves the schedulers alone: step those that are due.

    A per-step scheduler steps once per batch (however many chunks it had), a per-epoch one after the
    epoch's last batch, every ``frequency`` epochs.
    """
    trainer = task.trainer
    for config in trainer.lr_scheduler_configs:
        if config.reduce_on_plateau:
            raise ValueError("lr_scheduler: ReduceLROnPlateau is not supported with truncated BPTT (it needs "
                             "a validation metric that manual optimisation does not hand over)")
        if config.interval == "step":
            if config.frequency != 1:
                raise ValueError(f"lr_scheduler: with truncated BPTT a per-step scheduler steps every batch; "
                                 f"expected frequency 1, got {config.frequency}")
            config.scheduler.step()
        elif trainer.is_last_batch and (trainer.current_epoch + 1) % config.frequency == 0:
            config.scheduler.step()
