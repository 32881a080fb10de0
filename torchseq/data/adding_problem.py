"""The adding problem (Hochreiter & Schmidhuber 1997; as set in Arjovsky et al. 2016)."""

from __future__ import annotations

import numpy as np
import torch

from torchseq.checks import check_positive_int
from torchseq.data.synthetic import SyntheticDataModule


class AddingProblemDataModule(SyntheticDataModule):
    """Add the two marked numbers of a long sequence: a test of memory over ``sequence_length`` steps.

    Input ``x`` (B, T, 2) float32: channel 0 holds values drawn from U[0, 1]; channel 1 is a marker with
    exactly two 1s (all else 0), one at a uniform position in the first half ``[0, T//2)`` and one in the
    second half ``[T//2, T)``. Target ``y`` (B,) float32: the sum of the two marked values.

    Baseline: always predicting 1 (the mean of the sum) gives a mean squared error equal to the variance
    of a sum of two independent U[0, 1] variables, 2 · 1/12 = 1/6 ≈ 0.167; a model must beat it to have
    learned anything. A regression task: ``num_classes = 0``.
    """

    input_size = 2
    num_classes = 0

    def __init__(
        self,
        sequence_length: int = 100,
        train_size: int = 10_000,
        val_size: int = 1_000,
        test_size: int = 1_000,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(train_size, val_size, test_size, batch_size, num_workers, seed)
        self.sequence_length = check_positive_int("sequence_length", sequence_length, minimum=2)

    def generate(self, count: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        steps, half = self.sequence_length, self.sequence_length // 2
        values = rng.random((count, steps))                                   # (B, T)
        first = rng.integers(0, half, count)                                  # (B,)
        second = rng.integers(half, steps, count)                             # (B,)
        rows = np.arange(count)
        markers = np.zeros((count, steps))
        markers[rows, first] = 1.0
        markers[rows, second] = 1.0
        x = np.stack([values, markers], axis=-1)                              # (B, T, 2)
        y = values[rows, first] + values[rows, second]                        # (B,)
        return torch.from_numpy(x).to(torch.float32), torch.from_numpy(y).to(torch.float32)
