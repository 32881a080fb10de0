"""Truncated BPTT: exactly full BPTT when a chunk is the whole sequence; otherwise exactly BPTT with the
state detached at every chunk boundary, and one optimiser step per chunk that has a loss."""

from __future__ import annotations

import copy
import math
from functools import partial

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

import torchseq
from torchseq.data import AddingProblemDataModule, CopyTaskDataModule, DigitsDataModule
from torchseq.models import RecurrentClassifier
from torchseq.models.tagger import RecurrentTagger
from torchseq.tasks import ClassificationTask, RegressionTask
from torchseq.tasks.step_classification import StepClassificationTask
from torchseq.tbptt import TruncatedBPTT, carrying_state

STEPS, BATCH, FEATURES, HIDDEN, CLASSES = 12, 3, 2, 5, 4


class LastStep(nn.Module):
    """Many-to-one: one value per sequence, read from the last step."""

    def __init__(self, layers: nn.Module) -> None:
        super().__init__()
        self.layers, self.head = layers, nn.Linear(HIDDEN, 1, dtype=torch.float64)

    def forward(self, x: Tensor, hx=None) -> Tensor:
        output, _ = self.layers(x, hx)
        return self.head(output[:, -1]).squeeze(-1)                      # (B,)


class EveryStep(LastStep):
    """Many-to-many: class logits at every step."""

    def __init__(self, layers: nn.Module) -> None:
        super().__init__(layers)
        self.head = nn.Linear(HIDDEN, CLASSES, dtype=torch.float64)

    def forward(self, x: Tensor, hx=None) -> Tensor:
        output, _ = self.layers(x, hx)
        return self.head(output)                                         # (B, T, C)


def step_loss(output: Tensor, target: Tensor) -> Tensor:
    return F.cross_entropy(output.flatten(0, 1), target.flatten())


def make(kind: str, cell=torchseq.LSTM, seed: int = 0):
    """A model, a batch and its loss for ``kind`` = "sequence" (many-to-one) or "step" (many-to-many)."""
    torch.manual_seed(seed)
    layers = cell(FEATURES, HIDDEN, batch_first=True, dtype=torch.float64)
    x = torch.randn(BATCH, STEPS, FEATURES, dtype=torch.float64)
    if kind == "sequence":
        return LastStep(layers), x, torch.randn(BATCH, dtype=torch.float64), F.mse_loss
    return EveryStep(layers), x, torch.randint(0, CLASSES, (BATCH, STEPS)), step_loss


def recorder(model: nn.Module) -> tuple[list[tuple[Tensor, ...]], callable]:
    """An ``optimise`` that records the gradients of each chunk and changes nothing."""
    gradients: list[tuple[Tensor, ...]] = []
    return gradients, lambda loss: gradients.append(torch.autograd.grad(loss, list(model.parameters())))


def sgd_step(model: nn.Module, lr: float = 0.1):
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)

    def optimise(loss: Tensor) -> None:
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return optimise


@pytest.mark.parametrize("cell", [torchseq.RNN, torchseq.LSTM, torchseq.GRU], ids=lambda c: c.__name__)
@pytest.mark.parametrize("kind", ["sequence", "step"])
@pytest.mark.parametrize("steps", [STEPS, STEPS + 5])
def test_a_chunk_as_long_as_the_sequence_is_one_step_of_full_bptt(kind: str, cell, steps: int) -> None:
    model, x, y, loss_fn = make(kind, cell)
    reference = copy.deepcopy(model)
    sgd_step(reference)(loss_fn(reference(x), y))

    loss, output = TruncatedBPTT(steps).run(model, x, y, loss_fn, sgd_step(model))

    for ours, theirs in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(ours, theirs)
    assert output.shape == reference(x).shape and loss.shape == ()


def test_shorter_chunks_cut_the_gradient_at_each_boundary_and_nowhere_else() -> None:
    model, x, y, loss_fn = make("sequence")
    gradients, optimise = recorder(model)
    TruncatedBPTT(5).run(model, x, y, loss_fn, optimise)
    assert len(gradients) == 1                     # one target per sequence: only the last chunk has a loss

    # The same forward pass with the state detached at steps 5 and 10, by hand.
    state = None
    for start in (0, 5):
        _, state = model.layers(x[:, start:start + 5], state)
        state = tuple(part.detach() for part in state)
    truncated = torch.autograd.grad(loss_fn(model(x[:, 10:], state), y), list(model.parameters()))
    full = torch.autograd.grad(loss_fn(model(x), y), list(model.parameters()))

    for ours, expected in zip(gradients[0], truncated, strict=True):
        torch.testing.assert_close(ours, expected)
    recurrent = 1                                  # weight_hh: its gradient depends on the cut
    assert not torch.allclose(gradients[0][recurrent], full[recurrent])


def test_per_step_targets_give_one_update_per_chunk_each_through_its_own_chunk_only() -> None:
    model, x, y, loss_fn = make("step", torchseq.GRU)
    gradients, optimise = recorder(model)
    loss, output = TruncatedBPTT(5).run(model, x, y, loss_fn, optimise)
    assert len(gradients) == math.ceil(STEPS / 5)

    # Detaching changes no value: with the parameters unchanged the outputs are the full forward's.
    torch.testing.assert_close(output, model(x))
    state, chunk_losses = None, []
    for index, start in enumerate(range(0, STEPS, 5)):
        chunk = x[:, start:start + 5]
        chunk_loss = loss_fn(model(chunk, state), y[:, start:start + 5])
        expected = torch.autograd.grad(chunk_loss, list(model.parameters()))
        for ours, theirs in zip(gradients[index], expected, strict=True):
            torch.testing.assert_close(ours, theirs)
        chunk_losses.append(chunk_loss.detach())
        state = model.layers(chunk, state)[1].detach()
    torch.testing.assert_close(loss, torch.stack(chunk_losses).mean())


def test_every_chunk_with_a_loss_steps_the_optimiser() -> None:
    model, x, y, loss_fn = make("step")
    before = copy.deepcopy(model)
    calls = []

    def optimise(loss: Tensor) -> None:
        calls.append(loss)
        sgd_step(model)(loss)

    TruncatedBPTT(4).run(model, x, y, loss_fn, optimise)
    assert len(calls) == 3
    assert not torch.equal(model.head.weight, before.head.weight)


def test_carrying_state_restores_the_layers() -> None:
    layers = torchseq.LSTM(FEATURES, HIDDEN, batch_first=True)
    with carrying_state(nn.Sequential(layers)) as found:
        assert found == [layers] and layers.stateful
        layers(torch.randn(2, 3, FEATURES))
        first, _ = layers(torch.zeros(2, 1, FEATURES))
        fresh, _ = torchseq.LSTM.from_torch(layers.to_torch())(torch.zeros(2, 1, FEATURES))
        assert not torch.allclose(first, fresh)   # the second call started from the carried state
    assert not layers.stateful
    again, _ = layers(torch.zeros(2, 1, FEATURES))
    torch.testing.assert_close(again, fresh)


def test_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="steps: expected a positive int"):
        TruncatedBPTT(0)
    with pytest.raises(ValueError, match="gradient_clip_val: expected a positive number"):
        TruncatedBPTT(5, gradient_clip_val=-1.0)
    with pytest.raises(ValueError, match=r"gradient_clip_algorithm: expected one of \('norm', 'value'\)"):
        TruncatedBPTT(5, gradient_clip_algorithm="max")
    with pytest.raises(ValueError, match="model: expected a module containing torchseq recurrent layers"):
        TruncatedBPTT(5).run(nn.Linear(2, 1), torch.randn(2, 6, 2), torch.randn(2), F.mse_loss, print)
    bidirectional = torchseq.GRU(2, 3, batch_first=True, bidirectional=True)
    with pytest.raises(ValueError, match="truncated BPTT needs unidirectional layers"), \
            carrying_state(bidirectional):
        pass
    with pytest.raises(ValueError, match=r"x: expected a batch-first sequence \(B, T, …\), got shape \(4,\)"):
        TruncatedBPTT(5).chunks(torch.randn(4), torch.randn(4))


# -- inside Lightning --------------------------------------------------------------------------------
class Regressor(L.LightningModule):
    """A LastStep model trained by Lightning, with or without truncated BPTT."""

    def __init__(self, tbptt: TruncatedBPTT | None, lr: float = 0.1, scheduler: bool = False) -> None:
        super().__init__()
        self.model, _, _, _ = make("sequence")
        self.tbptt, self.lr, self.scheduler = tbptt, lr, scheduler
        self.automatic_optimization = tbptt is None

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def training_step(self, batch, batch_index: int):
        x, y = batch
        if self.tbptt is None:
            return F.mse_loss(self(x), y)
        loss, _ = self.tbptt.training_step(self, x, y, F.mse_loss)
        return loss

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=self.lr)
        if not self.scheduler:
            return optimizer
        return [optimizer], [torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)]


def fit(task: L.LightningModule, epochs: int = 1) -> L.LightningModule:
    _, x, y, _ = make("sequence")
    trainer = L.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    trainer.fit(task, DataLoader(TensorDataset(x, y), batch_size=BATCH))
    return task


def test_in_lightning_a_whole_sequence_chunk_equals_automatic_optimisation() -> None:
    truncated, automatic = fit(Regressor(TruncatedBPTT(STEPS))), fit(Regressor(None))
    for ours, theirs in zip(truncated.parameters(), automatic.parameters(), strict=True):
        torch.testing.assert_close(ours, theirs)


@pytest.mark.parametrize("algorithm", ["norm", "value"])
def test_in_lightning_gradients_are_clipped_before_each_step(algorithm: str) -> None:
    clip, lr = 1e-3, 1.0
    initial = Regressor(None)
    tbptt = TruncatedBPTT(STEPS, gradient_clip_val=clip, gradient_clip_algorithm=algorithm)
    task = fit(Regressor(tbptt, lr=lr))
    pairs = zip(task.parameters(), initial.parameters(), strict=True)
    change = torch.cat([(new - old).flatten() for new, old in pairs])
    assert change.abs().max() > 0
    bound = change.norm() if algorithm == "norm" else change.abs().max()
    assert bound <= lr * clip * (1 + 1e-6)


def test_in_lightning_schedulers_still_step() -> None:
    task = fit(Regressor(TruncatedBPTT(5), lr=0.1, scheduler=True), epochs=2)
    assert task.optimizers().param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**2)


def test_in_lightning_automatic_optimisation_is_refused() -> None:
    task = Regressor(None)
    task.tbptt = TruncatedBPTT(5)
    with pytest.raises(RuntimeError, match="set automatic_optimization = False"):
        fit(task)


# -- the option on torchseq's sequence tasks ----------------------------------------------------------
def task_pair(task_class, data, **options):
    """The same seeded task twice: with full BPTT and with ``TruncatedBPTT(**options)``."""
    model = RecurrentTagger if task_class.__name__ == "StepClassificationTask" else RecurrentClassifier
    sizes = {"input_size": data.input_size} | ({"num_classes": data.num_classes} if data.num_classes else {})
    tasks = []
    for tbptt in (None, TruncatedBPTT(**options)):
        torch.manual_seed(0)
        tasks.append(task_class(partial(model, cell="gru", hidden_size=4), **sizes, tbptt=tbptt))
    return tasks


def fit_steps(task: L.LightningModule, data, steps: int) -> None:
    trainer = L.Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", limit_val_batches=0)
    trainer.fit(task, datamodule=data)


def small_data(task_name: str):
    """A few small batches for each sequence task."""
    if task_name == "ClassificationTask":
        return DigitsDataModule(batch_size=64, val_fraction=0.05, test_fraction=0.9)  # 8 rows of 8 pixels
    data_class = AddingProblemDataModule if task_name == "RegressionTask" else CopyTaskDataModule
    return data_class(sequence_length=8, train_size=16, val_size=8, test_size=8, batch_size=8)


TASKS = {task.__name__: task for task in (ClassificationTask, RegressionTask, StepClassificationTask)}


@pytest.mark.parametrize("task_name", TASKS)
def test_the_tasks_tbptt_option_with_whole_sequence_chunks_equals_full_bptt(task_name: str) -> None:
    task_class, data = TASKS[task_name], small_data(task_name)
    full, truncated = task_pair(task_class, data, steps=data.sequence_length)
    fit_steps(full, data, 2)
    fit_steps(truncated, data, 2)
    for ours, theirs in zip(truncated.parameters(), full.parameters(), strict=True):
        torch.testing.assert_close(ours, theirs)


def test_the_tasks_tbptt_option_steps_per_chunk_and_logs() -> None:
    data = CopyTaskDataModule(sequence_length=8, copy_length=2, train_size=16, val_size=8, test_size=8,
                              batch_size=8)                           # 12 steps: 3 chunks of 4
    _, truncated = task_pair(StepClassificationTask, data, steps=4)
    trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", limit_val_batches=0)
    trainer.fit(truncated, datamodule=data)
    assert trainer.global_step == 2 * 3                               # 2 batches × 3 chunks
    assert {"train/loss_epoch", "train/acc"} <= set(trainer.callback_metrics)


def test_classification_with_tbptt_steps_once_per_batch_through_the_last_chunk_only() -> None:
    """One label per sequence: only the last chunk has a loss, so one optimiser step a batch, and the
    gradient stops at the chunk boundary (the result differs from full BPTT's)."""
    data = small_data("ClassificationTask")
    full, truncated = task_pair(ClassificationTask, data, steps=3)  # 8 rows: chunks of 3, 3, 2
    fit_steps(full, data, 2)
    trainer = L.Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", limit_val_batches=0)
    trainer.fit(truncated, datamodule=data)
    assert trainer.global_step == 2 and trainer.fit_loop.epoch_loop.batch_progress.current.completed == 2
    assert not all(torch.allclose(ours, theirs) for ours, theirs in
                   zip(truncated.parameters(), full.parameters(), strict=True))


def test_the_tasks_tbptt_option_refuses_variable_lengths() -> None:
    task = RegressionTask(partial(RecurrentClassifier, hidden_size=4), input_size=2, tbptt=TruncatedBPTT(4))
    batch = (torch.randn(2, 6, 2), torch.randn(2), torch.tensor([6, 3]))
    with pytest.raises(ValueError, match=r"tbptt: truncated BPTT needs fixed-length batches"):
        task.training_step(batch, 0)
