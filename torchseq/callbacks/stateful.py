"""``StatefulTraining``: Keras' ``stateful=True`` for a Lightning run, with explicit reset points.

With it, every torchseq layer of the task starts each batch from the state the previous batch ended in
(detached: backpropagation stops at the batch boundary, so this is truncated BPTT across batches). That
is only meaningful when batch i+1 *continues* the sequences of batch i, row by row: a long series cut
into consecutive windows, served in order (``shuffle=False``) with a fixed batch size.

States are forgotten (:meth:`RecurrentLayers.reset_states`) at the start of every epoch, optionally
every ``reset_every_n_batches`` batches, and around every evaluation, so validation neither sees the
training streams' state nor leaves its own behind (nor trips over a different batch size).
"""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import SequentialSampler

from torchseq.checks import check_positive_int
from torchseq.recurrent import RecurrentLayers


class StatefulTraining(L.Callback):
    """Carry recurrent state across consecutive training batches.

    Args:
        reset_every_n_batches: also forget the state before batches 0, N, 2N, … of each epoch (e.g. when
            every N windows a new set of series begins); None: only at epoch start.
        reset_on_epoch_start: forget the state when an epoch begins (the streams start over).
    """

    def __init__(self, reset_every_n_batches: int | None = None, reset_on_epoch_start: bool = True) -> None:
        check_positive_int("reset_every_n_batches", reset_every_n_batches, optional=True)
        self.reset_every_n_batches = reset_every_n_batches
        self.reset_on_epoch_start = reset_on_epoch_start
        self.resets = 0                     # how many times the states were forgotten during training
        self._layers: list[RecurrentLayers] = []
        self._previous: list[bool] = []

    # -- switching the layers on and off ----------------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._layers = [module for module in pl_module.modules() if isinstance(module, RecurrentLayers)]
        if not self._layers:
            raise ValueError(f"StatefulTraining: {type(pl_module).__name__} has no torchseq recurrent layer "
                             f"to make stateful")
        self._previous = [layer.stateful for layer in self._layers]
        for layer in self._layers:
            layer.stateful = True
        self.reset()

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.reset()
        for layer, stateful in zip(self._layers, self._previous, strict=True):
            layer.stateful = stateful

    def reset(self) -> None:
        for layer in self._layers:
            layer.reset_states()

    # -- reset points -----------------------------------------------------------------------------
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        loader = trainer.train_dataloader
        # Anything but an in-order sampler reorders the windows: DataLoader(shuffle=True)'s RandomSampler,
        # and the EpochShuffle with which every torchseq data module serves its training split.
        if not isinstance(getattr(loader, "sampler", None), SequentialSampler):
            rank_zero_warn("StatefulTraining: the training data loader shuffles, so a batch does not "
                           "continue the sequences of the one before it; carrying state across batches then "
                           "only adds noise. Serve consecutive windows in order (shuffle=False).")

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.reset_on_epoch_start:
            self._count_reset()

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        every = self.reset_every_n_batches
        if every is not None and batch_idx > 0 and batch_idx % every == 0:
            self._count_reset()

    def _count_reset(self) -> None:
        self.reset()
        self.resets += 1

    # Evaluation streams are separate from the training ones: start them from zero, and leave zero.
    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.reset()

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.reset()

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.reset()

    def on_predict_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.reset()
