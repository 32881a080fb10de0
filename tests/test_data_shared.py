"""The shared data pieces: seeded stratified splits, variable-length batches, package files, the base."""

import numpy as np
import pytest
import torch

from torchseq.data import (
    AddingProblemDataModule,
    AnomalyDataModule,
    CopyTaskDataModule,
    DigitsDataModule,
    MNIST5kDataModule,
    UCRDataModule,
    VariableLengthDataset,
    find_package_file,
    pad_collate,
)
from torchseq.data.split import check_fractions, fold_indices, split_indices


def assert_stratified(
    parts: list[np.ndarray], labels: np.ndarray, shares: tuple[float, ...], slack: float = 1.0
) -> None:
    """Each part holds each class in its share, to within the ``slack`` items that rounding can move."""
    for part, share in zip(parts, shares, strict=True):
        for label in np.unique(labels):
            class_size = int((labels == label).sum())
            assert abs(int((labels[part] == label).sum()) - share * class_size) <= slack


@pytest.fixture
def unbalanced_labels() -> np.ndarray:
    rng = np.random.default_rng(123)
    return rng.permutation(np.repeat([0, 1, 2, 3], [50, 23, 7, 120]))


def test_split_is_a_partition(unbalanced_labels):
    parts = split_indices(len(unbalanced_labels), (0.7, 0.1, 0.2), seed=0, labels=unbalanced_labels)
    joined = np.concatenate(parts)
    assert sorted(joined.tolist()) == list(range(len(unbalanced_labels)))
    assert sum(len(part) for part in parts) == len(set(joined.tolist()))


def test_split_sizes_follow_the_shares(unbalanced_labels):
    size = len(unbalanced_labels)
    parts = split_indices(size, (0.7, 0.1, 0.2), seed=0, labels=unbalanced_labels)
    for part, share in zip(parts, (0.7, 0.1, 0.2), strict=True):
        assert abs(len(part) - share * size) < 1


def test_split_is_stratified(unbalanced_labels):
    shares = (0.6, 0.15, 0.25)
    parts = split_indices(len(unbalanced_labels), shares, seed=3, labels=unbalanced_labels)
    assert_stratified(parts, unbalanced_labels, shares)


def test_small_classes_still_fill_a_small_split():
    labels = np.repeat(np.arange(10), 5)  # 10 classes of 5: a 10% split is 5 items, half a class each
    parts = split_indices(len(labels), (0.9, 0.1), seed=0, labels=labels)
    assert len(parts[1]) == round(0.1 * len(labels))
    assert_stratified(parts, labels, (0.9, 0.1))


def test_split_is_deterministic_for_a_seed_and_changes_with_it(unbalanced_labels):
    first = split_indices(len(unbalanced_labels), (0.8, 0.2), seed=7, labels=unbalanced_labels)
    again = split_indices(len(unbalanced_labels), (0.8, 0.2), seed=7, labels=unbalanced_labels)
    other = split_indices(len(unbalanced_labels), (0.8, 0.2), seed=8, labels=unbalanced_labels)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[1], other[1])


def test_split_without_labels_is_random_but_sized():
    parts = split_indices(10, (0.5, 0.5), seed=0)
    assert [len(part) for part in parts] == [5, 5]
    assert not np.array_equal(parts[0], np.arange(5))  # shuffled, not cut in order


@pytest.mark.parametrize("folds", [2, 4, 7])
def test_folds_hold_out_every_item_exactly_once(unbalanced_labels, folds):
    size = len(unbalanced_labels)
    held_out_parts = []
    for fold in range(folds):
        fit, held_out = fold_indices(size, folds, fold, seed=3, labels=unbalanced_labels)
        assert sorted(np.concatenate([fit, held_out]).tolist()) == list(range(size))  # fit = the rest
        assert abs(len(held_out) - size / folds) <= 1
        held_out_parts.append(held_out)
    assert sorted(np.concatenate(held_out_parts).tolist()) == list(range(size))  # disjoint, covering
    # Many equal parts: keeping every fold's size exact can cost a class up to two items in one fold.
    assert_stratified(held_out_parts, unbalanced_labels, (1 / folds,) * folds, slack=2.0)


def test_folds_follow_the_seed(unbalanced_labels):
    size = len(unbalanced_labels)
    first, again, other = (fold_indices(size, 4, 1, seed, unbalanced_labels)[1] for seed in (0, 0, 1))
    assert np.array_equal(first, again) and not np.array_equal(first, other)


@pytest.mark.parametrize(
    ("folds", "fold", "message"),
    [(1, 0, r"folds: expected an integer ≥ 2, got 1"), (4, 4, r"fold: expected an integer in \[0, 3\]"),
     (4, -1, r"fold: expected .* got -1"), (2.0, 0, "folds: expected an integer")],
)
def test_fold_arguments_are_checked(folds, fold, message):
    with pytest.raises(ValueError, match=message):
        fold_indices(10, folds, fold, seed=0)


def test_split_refuses_an_empty_part():
    with pytest.raises(ValueError, match="too few items"):
        split_indices(3, (0.9, 0.1), seed=0)


def test_split_refuses_bad_shares():
    with pytest.raises(ValueError, match="sum to 1"):
        split_indices(10, (0.5, 0.4), seed=0)


@pytest.mark.parametrize(
    ("fractions", "message"),
    [
        ({"val_fraction": 0.0}, "val_fraction: expected a fraction in"),
        ({"val_fraction": 0.6, "test_fraction": 0.4}, "sum below 1"),
    ],
)
def test_check_fractions(fractions, message):
    with pytest.raises(ValueError, match=message):
        check_fractions(**fractions)


def test_pad_collate_keeps_true_lengths():
    sequences = [torch.ones(3, 2), torch.ones(5, 2), torch.ones(1, 2)]
    dataset = VariableLengthDataset(sequences, torch.tensor([0, 1, 2]))
    x, y, lengths = pad_collate([dataset[i] for i in range(3)])
    assert x.shape == (3, 5, 2)
    assert lengths.dtype == torch.int64 and lengths.device.type == "cpu"
    assert lengths.tolist() == [3, 5, 1]
    assert y.tolist() == [0, 1, 2]
    steps = torch.arange(5)[None, :, None]
    assert torch.equal(x, (steps < lengths[:, None, None]).float().expand_as(x))  # ones inside, zeros after


def test_variable_length_dataset_checks_targets():
    with pytest.raises(ValueError, match="targets: expected 2"):
        VariableLengthDataset([torch.ones(3, 1), torch.ones(2, 1)], torch.tensor([0]))


def test_find_package_file_locates_a_shipped_file():
    path = find_package_file("torchseq", "data", "base.py")
    assert path.is_file() and path.parts[-2:] == ("data", "base.py")


def test_find_package_file_names_the_missing_package_and_the_install_command():
    with pytest.raises(FileNotFoundError, match=r"not installed.*pip install torchseq_no_such_package"):
        find_package_file("torchseq_no_such_package", "data", "x.csv")


def test_find_package_file_names_the_missing_file():
    with pytest.raises(FileNotFoundError, match=r"torchseq.*no_such_file\.csv.*is missing.*pip install"):
        find_package_file("torchseq", "data", "no_such_file.csv")


def test_find_package_file_refuses_submodules():
    with pytest.raises(ValueError, match="top-level package"):
        find_package_file("sktime.datasets", "data")


ALL_MODULES = [
    lambda: MNIST5kDataModule(batch_size=8, as_images=True),
    lambda: DigitsDataModule(seed=3),
    lambda: UCRDataModule("GunPoint", val_fraction=0.3),
    lambda: AddingProblemDataModule(sequence_length=7, train_size=10, val_size=5, test_size=5),
    lambda: CopyTaskDataModule(sequence_length=9, copy_length=3, train_size=10, val_size=5, test_size=5),
    lambda: AnomalyDataModule("yahoo", window=32, stride=16),
]


@pytest.mark.parametrize("make", ALL_MODULES)
def test_hyperparameters_rebuild_the_module(make):
    module = make()
    again = type(module)(**module.hparams)  # what loading a checkpoint does
    assert dict(again.hparams) == dict(module.hparams)
    assert (again.input_size, again.num_classes, again.sequence_length) == (
        module.input_size,
        module.num_classes,
        module.sequence_length,
    )


def test_training_order_is_seeded():
    def first_batch(seed):
        module = AddingProblemDataModule(sequence_length=4, train_size=50, val_size=5, test_size=5, seed=seed)
        module.setup()
        return next(iter(module.train_dataloader()))[1]

    assert torch.equal(first_batch(0), first_batch(0))
    assert not torch.equal(first_batch(0), first_batch(1))


def test_splits_need_setup():
    with pytest.raises(RuntimeError, match="call setup"):
        DigitsDataModule().train_dataloader()
