"""Stateful training: consecutive batches continue each other's state exactly, until a reset point."""

from __future__ import annotations

import warnings

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

import torchseq
from torchseq.callbacks.stateful import StatefulTraining
from torchseq.data.base import EpochShuffle

STREAMS, WINDOW, WINDOWS, FEATURES, HIDDEN = 2, 3, 4, 2, 5


def series() -> Tensor:
    return torch.randn(STREAMS, WINDOW * WINDOWS, FEATURES, generator=torch.Generator().manual_seed(0))


def consecutive_windows(x: Tensor, shuffle: bool = False) -> DataLoader:
    """Batch i = window i of every stream: (STREAMS, WINDOW, F), so batch i+1 continues batch i."""
    windows = x.unflatten(1, (WINDOWS, WINDOW)).transpose(0, 1).flatten(0, 1)  # (WINDOWS·STREAMS, W, F)
    return DataLoader(TensorDataset(windows, torch.zeros(len(windows))), batch_size=STREAMS, shuffle=shuffle)


class Recorder(L.LightningModule):
    """An LSTM whose training outputs are kept; lr 0 keeps the weights fixed so outputs can be compared."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lstm = torchseq.LSTM(FEATURES, HIDDEN, batch_first=True)
        self.outputs: list[Tensor] = []

    def training_step(self, batch, batch_index: int) -> Tensor:
        output, _ = self.lstm(batch[0])
        self.outputs.append(output.detach())
        return F.mse_loss(output.mean(dim=(1, 2)), batch[1])

    def validation_step(self, batch, batch_index: int) -> None:
        self.lstm(batch[0])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def fit(callback: StatefulTraining, epochs: int = 1, validation: DataLoader | None = None, shuffle=False,
        loader: DataLoader | None = None):
    task = Recorder()
    trainer = L.Trainer(max_epochs=epochs, callbacks=[callback], logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
                        num_sanity_val_steps=0)
    trainer.fit(task, loader or consecutive_windows(series(), shuffle), validation)
    return task


def run_segments(task: Recorder, segment_windows: int) -> Tensor:
    """The LSTM run over the whole series in segments of ``segment_windows`` windows, each from zero."""
    pieces = series().split(segment_windows * WINDOW, dim=1)
    return torch.cat([task.lstm(piece)[0] for piece in pieces], dim=1).detach()


def test_consecutive_batches_equal_one_pass_over_the_whole_series() -> None:
    task = fit(StatefulTraining())
    torch.testing.assert_close(torch.cat(task.outputs, dim=1), run_segments(task, WINDOWS))


def test_reset_every_n_batches_restarts_the_state() -> None:
    callback = StatefulTraining(reset_every_n_batches=2)
    task = fit(callback)
    torch.testing.assert_close(torch.cat(task.outputs, dim=1), run_segments(task, 2))
    assert callback.resets == 2                      # epoch start, then before batch 2


def test_each_epoch_starts_from_zero_unless_told_otherwise() -> None:
    task = fit(StatefulTraining(), epochs=2)
    torch.testing.assert_close(torch.cat(task.outputs[WINDOWS:], dim=1), run_segments(task, WINDOWS))

    task = fit(StatefulTraining(reset_on_epoch_start=False), epochs=2)
    twice = torch.cat([series(), series()], dim=1)
    torch.testing.assert_close(torch.cat(task.outputs, dim=1), task.lstm(twice)[0].detach())


def test_validation_with_another_batch_size_neither_fails_nor_leaks_state() -> None:
    validation = DataLoader(TensorDataset(torch.randn(6, WINDOW, FEATURES), torch.zeros(6)), batch_size=3)
    task = fit(StatefulTraining(), epochs=2, validation=validation)
    torch.testing.assert_close(torch.cat(task.outputs[WINDOWS:], dim=1), run_segments(task, WINDOWS))


def test_the_layers_get_their_setting_back_after_the_run() -> None:
    task = fit(StatefulTraining())
    assert task.lstm.stateful is False
    output, _ = task.lstm(series()[:, :WINDOW])
    torch.testing.assert_close(output, task.outputs[0])  # no state left over from training


def test_a_shuffling_loader_is_warned_about() -> None:
    with pytest.warns(UserWarning, match="the training data loader shuffles"):
        fit(StatefulTraining(), shuffle=True)


def test_the_epoch_shuffle_of_torchseq_data_modules_is_warned_about_and_an_in_order_loader_is_not() -> None:
    in_order = consecutive_windows(series())
    windows = in_order.dataset
    shuffled = DataLoader(windows, batch_size=STREAMS, sampler=EpochShuffle(len(windows), seed=0))
    with pytest.warns(UserWarning, match="the training data loader shuffles"):
        fit(StatefulTraining(), loader=shuffled)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*the training data loader shuffles")
        fit(StatefulTraining(), loader=in_order)


def test_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="reset_every_n_batches: expected a positive int or None, got 0"):
        StatefulTraining(reset_every_n_batches=0)

    class NoRecurrence(Recorder):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = torch.nn.LSTM(FEATURES, HIDDEN, batch_first=True)

    trainer = L.Trainer(max_epochs=1, callbacks=[StatefulTraining()], logger=False, enable_progress_bar=False,
                        enable_checkpointing=False, enable_model_summary=False, accelerator="cpu")
    with pytest.raises(ValueError, match="StatefulTraining: NoRecurrence has no torchseq recurrent layer"):
        trainer.fit(NoRecurrence(), consecutive_windows(series()))
