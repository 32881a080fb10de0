"""The adding problem and the copy task: structure, targets, baselines, seeding."""

import math

import pytest
import torch
from torch.nn.functional import nll_loss

from torchseq.data import AddingProblemDataModule, CopyTaskDataModule


@pytest.fixture(scope="module")
def adding() -> AddingProblemDataModule:
    module = AddingProblemDataModule(
        sequence_length=31, train_size=200, val_size=50, test_size=50, batch_size=20
    )
    module.setup()
    return module


def test_adding_attributes_and_batch(adding):
    assert (adding.input_size, adding.num_classes, adding.sequence_length) == (2, 0, 31)
    x, y = next(iter(adding.train_dataloader()))
    assert x.shape == (20, 31, 2) and x.dtype == torch.float32
    assert y.shape == (20,) and y.dtype == torch.float32


def test_adding_markers_one_in_each_half(adding):
    x, _ = adding.splits.train.tensors
    values, markers = x[..., 0], x[..., 1]
    half = adding.sequence_length // 2
    assert ((values >= 0) & (values < 1)).all()
    assert set(markers.unique().tolist()) == {0.0, 1.0}
    assert (markers[:, :half].sum(dim=1) == 1).all()
    assert (markers[:, half:].sum(dim=1) == 1).all()


def test_adding_target_is_the_sum_of_the_marked_values(adding):
    x, y = adding.splits.test.tensors
    assert torch.allclose((x[..., 0] * x[..., 1]).sum(dim=1), y)


def test_adding_baseline_is_about_one_sixth():
    module = AddingProblemDataModule(sequence_length=10, train_size=20_000, val_size=1, test_size=1)
    module.setup()
    _, y = module.splits.train.tensors
    assert abs(float(((y - 1.0) ** 2).mean()) - 1 / 6) < 0.01  # predicting 1 always: the documented baseline


def test_synthetic_splits_are_seeded_and_independent():
    def make(seed):
        module = AddingProblemDataModule(
            sequence_length=8, train_size=30, val_size=30, test_size=30, seed=seed
        )
        module.setup()
        return module

    first, again, other = make(0), make(0), make(1)
    assert torch.equal(first.splits.train.tensors[0], again.splits.train.tensors[0])
    assert not torch.equal(first.splits.train.tensors[0], other.splits.train.tensors[0])
    assert not torch.equal(first.splits.train.tensors[0], first.splits.val.tensors[0])


def test_adding_needs_two_steps():
    with pytest.raises(ValueError, match="sequence_length: expected an integer ≥ 2, got 1"):
        AddingProblemDataModule(sequence_length=1)


@pytest.fixture(scope="module")
def copy_task() -> CopyTaskDataModule:
    module = CopyTaskDataModule(
        sequence_length=12,
        num_symbols=5,
        copy_length=4,
        train_size=64,
        val_size=8,
        test_size=8,
        batch_size=16,
    )
    module.setup()
    return module


def test_copy_attributes_and_batch(copy_task):
    gap, symbols, length = 12, 5, 4
    assert copy_task.input_size == symbols + 2 and copy_task.num_classes == symbols + 1
    assert copy_task.sequence_length == gap + 2 * length
    x, y = next(iter(copy_task.train_dataloader()))
    assert x.shape == (16, gap + 2 * length, symbols + 2) and x.dtype == torch.float32
    assert y.shape == (16, gap + 2 * length) and y.dtype == torch.int64


def test_copy_structure(copy_task):
    x, y = copy_task.splits.train.tensors
    gap, length, blank, delimiter = copy_task.gap, copy_task.copy_length, copy_task.blank, copy_task.delimiter
    assert (x.sum(dim=-1) == 1).all()  # one-hot
    inputs = x.argmax(dim=-1)
    data = inputs[:, :length]
    assert (data < copy_task.num_symbols).all()
    assert (inputs[:, length : length + gap - 1] == blank).all()
    assert (inputs[:, length + gap - 1] == delimiter).all()
    assert (inputs[:, length + gap :] == blank).all()
    assert (y[:, : gap + length] == blank).all()
    assert torch.equal(y[:, gap + length :], data)


def test_copy_baseline_is_the_memoryless_cross_entropy(copy_task):
    _, y = copy_task.splits.test.tensors
    steps, length, symbols = copy_task.sequence_length, copy_task.copy_length, copy_task.num_symbols
    # Blanks with certainty until the copy starts, then a uniform guess among the data symbols.
    log_probs = torch.full((*y.shape, copy_task.num_classes), -math.inf)
    log_probs[:, : steps - length, copy_task.blank] = 0.0
    log_probs[:, steps - length :, :symbols] = -math.log(symbols)
    loss = nll_loss(log_probs.reshape(-1, copy_task.num_classes), y.reshape(-1))
    assert math.isclose(float(loss), copy_task.baseline_cross_entropy, rel_tol=1e-6)
    assert math.isclose(copy_task.baseline_cross_entropy, length * math.log(symbols) / steps)
