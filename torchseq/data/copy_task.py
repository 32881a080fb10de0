"""The copy memory task (Hochreiter & Schmidhuber 1997; as set in Arjovsky et al. 2016)."""

from __future__ import annotations

import numpy as np
import torch
from torch.nn.functional import one_hot

from torchseq.checks import check_positive_int
from torchseq.data.synthetic import SyntheticDataModule


class CopyTaskDataModule(SyntheticDataModule):
    """Remember S symbols across a gap of T steps, then write them out.

    Symbols: ``0..K-1`` are data, ``K`` is the blank and ``K+1`` the delimiter. With ``T =
    sequence_length`` (the gap, as the paper's T), ``K = num_symbols`` and ``S = copy_length``:

    - input, T + 2S steps: S data symbols drawn uniformly, T - 1 blanks, the delimiter, S blanks; given
      one-hot as ``x`` (B, T + 2S, K + 2) float32;
    - target ``y`` (B, T + 2S) int64, one class a step: T + S blanks, then the S data symbols.

    So ``input_size = K + 2`` and ``num_classes = K + 1`` (the delimiter is never a target), and the
    attribute ``sequence_length`` is the number of steps T + 2S, while ``gap`` keeps T.

    Baseline: a memoryless model that writes blanks for T + S steps and then guesses uniformly among the K
    symbols scores a mean cross-entropy per step of S·log(K) / (T + 2S); learning the task means going
    below it.
    """

    def __init__(
        self,
        sequence_length: int = 100,
        num_symbols: int = 8,
        copy_length: int = 10,
        train_size: int = 10_000,
        val_size: int = 1_000,
        test_size: int = 1_000,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(train_size, val_size, test_size, batch_size, num_workers, seed)
        self.gap = check_positive_int("sequence_length", sequence_length)
        self.num_symbols = check_positive_int("num_symbols", num_symbols, minimum=2)
        self.copy_length = check_positive_int("copy_length", copy_length)
        self.blank, self.delimiter = num_symbols, num_symbols + 1
        self.input_size = num_symbols + 2
        self.num_classes = num_symbols + 1
        self.sequence_length = self.gap + 2 * self.copy_length

    @property
    def baseline_cross_entropy(self) -> float:
        """S·log(K) / (T + 2S): the score of the best memoryless strategy."""
        return self.copy_length * float(np.log(self.num_symbols)) / self.sequence_length

    def generate(self, count: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        steps, length = self.sequence_length, self.copy_length
        symbols = rng.integers(0, self.num_symbols, (count, length))         # (B, S)
        inputs = np.full((count, steps), self.blank)                          # (B, T + 2S)
        inputs[:, :length] = symbols
        inputs[:, length + self.gap - 1] = self.delimiter
        targets = np.full((count, steps), self.blank)                         # (B, T + 2S)
        targets[:, steps - length :] = symbols
        x = one_hot(torch.from_numpy(inputs), self.input_size).to(torch.float32)  # (B, T + 2S, K + 2)
        return x, torch.from_numpy(targets).to(torch.int64)
