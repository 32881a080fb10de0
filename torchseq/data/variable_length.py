"""Variable-length sequences: a dataset of (T_i, F) tensors and the collate that pads them.

The true lengths always travel with the padded batch, so a model can mask or pack; nothing is padded
silently.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import Dataset


class VariableLengthDataset(Dataset):
    """Items ``(sequence (T_i, F), target)``; batch them with :func:`pad_collate`."""

    def __init__(self, sequences: Sequence[Tensor], targets: Tensor) -> None:
        if len(sequences) != len(targets):
            raise ValueError(f"targets: expected {len(sequences)} (one per sequence), got {len(targets)}")
        self.sequences = list(sequences)
        self.targets = targets

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.sequences[index], self.targets[index]

    @property
    def lengths(self) -> Tensor:
        return torch.tensor([len(sequence) for sequence in self.sequences], dtype=torch.int64)


def pad_collate(batch: Sequence[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor, Tensor]:
    """``(x (B, T_max, F) zero-padded, y (B, ...), lengths int64 (B,) on the CPU)``."""
    sequences, targets = zip(*batch, strict=True)
    lengths = torch.tensor([len(sequence) for sequence in sequences], dtype=torch.int64)
    return pad_sequence(list(sequences), batch_first=True), torch.stack(targets), lengths
