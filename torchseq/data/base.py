"""The parts every torchseq data module shares: three splits, seeded loaders, shape attributes.

A subclass sets ``input_size``, ``num_classes`` (0 for regression) and ``sequence_length`` (the longest
T) in its ``__init__`` — before any data is read when it can — so a CLI can link them into a model at
instantiation, and implements :meth:`SplitDataModule.build_splits`, which ``setup`` calls once.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, replace

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader, Dataset, Sampler

from torchseq.checks import check_positive_int
from torchseq.data.augment import Transform, TransformedInputs
from torchseq.data.distributed import evaluation_sampler
from torchseq.data.variable_length import pad_collate


@dataclass(frozen=True)
class Splits:
    train: Dataset
    val: Dataset
    test: Dataset


class EpochShuffle(Sampler[int]):
    """A fresh random order every epoch, drawn from ``(seed, epoch)`` alone.

    Lightning calls :meth:`set_epoch` before each epoch, so a run resumed from a checkpoint sees exactly
    the batches an uninterrupted run would (a generator advanced epoch after epoch would restart).
    """

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[int]:
        state = np.random.SeedSequence([self.seed, self.epoch]).generate_state(1)[0]  # mixes both numbers
        order = torch.randperm(self.size, generator=torch.Generator().manual_seed(int(state)))
        return iter(order.tolist())


class SplitDataModule(L.LightningDataModule, ABC):
    """Train/val/test loaders over the datasets that :meth:`build_splits` returns.

    Fixed-length batches are ``(x, y)``; when ``variable_length`` is True they are
    ``(x, y, lengths)`` (see :mod:`torchseq.data.variable_length`). The training loader shuffles with its
    own :class:`EpochShuffle` seeded by ``seed``, so the batch order is reproducible whatever else uses the
    RNG, and a resumed run continues with the order an uninterrupted one would have used.
    """

    input_size: int
    num_classes: int
    sequence_length: int
    variable_length: bool = False
    #: Applied to every training input as it is drawn (augmentation; see :mod:`torchseq.data.augment`).
    train_transform: Transform | None = None

    def __init__(self, batch_size: int, num_workers: int, seed: int) -> None:
        super().__init__()
        # The concrete class's own arguments, so that type(self)(**self.hparams) rebuilds it (as loading a
        # checkpoint does); intermediate bases receive derived values (e.g. ``side``) that must not appear.
        # A transform object stays out: checkpoints hold plain values (the run's config.yaml records it).
        arguments = [name for name in inspect.signature(type(self)).parameters if name != "train_transform"]
        self.save_hyperparameters(*arguments)
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.num_workers = check_positive_int("num_workers", num_workers, minimum=0)
        self.seed = seed
        self._splits: Splits | None = None

    @abstractmethod
    def build_splits(self) -> Splits:
        """Read or generate the data and cut it into train/val/test datasets (called once)."""

    def setup(self, stage: str | None = None) -> None:
        if self._splits is None:
            splits = self.build_splits()
            if self.train_transform is not None:
                splits = replace(splits, train=TransformedInputs(splits.train, self.train_transform))
            self._splits = splits
            rank_zero_info(self.describe())

    @property
    def splits(self) -> Splits:
        if self._splits is None:
            raise RuntimeError(f"{type(self).__name__}: call setup() before asking for the splits")
        return self._splits

    def describe(self) -> str:
        sizes = ", ".join(f"{name} {len(getattr(self.splits, name))}" for name in ("train", "val", "test"))
        return (
            f"{type(self).__name__}: {sizes}; input_size={self.input_size}, "
            f"sequence_length={self.sequence_length}, num_classes={self.num_classes}"
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.splits.train, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.splits.val, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.splits.test, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.splits.test, shuffle=False)

    def _loader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=EpochShuffle(len(dataset), self.seed) if shuffle else evaluation_sampler(dataset),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=pad_collate if self.variable_length else None,
        )
