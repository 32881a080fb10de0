"""Synthetic sequence tasks: generated on the fly, deterministically from a seed, any length.

Each split has its own random stream (derived from ``seed`` and the split's name), so the splits are
independent and changing the size of one does not change the others.
"""

from __future__ import annotations

from abc import abstractmethod

import numpy as np
import torch
from torch.utils.data import TensorDataset

from torchseq.checks import check_positive_int
from torchseq.data.base import SplitDataModule, Splits

SPLIT_STREAMS = {"train": 0, "val": 1, "test": 2}


class SyntheticDataModule(SplitDataModule):
    """Train/val/test sets of the given sizes, made by :meth:`generate`."""

    def __init__(
        self, train_size: int, val_size: int, test_size: int, batch_size: int, num_workers: int, seed: int
    ) -> None:
        super().__init__(batch_size, num_workers, seed)
        self.sizes = {
            "train": check_positive_int("train_size", train_size),
            "val": check_positive_int("val_size", val_size),
            "test": check_positive_int("test_size", test_size),
        }

    @abstractmethod
    def generate(self, count: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``count`` examples ``(x, y)`` drawn from ``rng``."""

    def build_splits(self) -> Splits:
        return Splits(**{split: TensorDataset(*self.generate_split(split)) for split in SPLIT_STREAMS})

    def generate_split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        return self.generate(self.sizes[split], np.random.default_rng([self.seed, SPLIT_STREAMS[split]]))
