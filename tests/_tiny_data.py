"""A tiny, learnable, seeded sequence data module for task, CLI, resume and DDP tests.

Each sequence (T, F) is Gaussian noise plus a per-sequence offset: the class is whether the offset is
positive, the regression target is the offset itself. ``variable_length=True`` gives each sequence a
random length and ``(x, y, lengths)`` batches, padded with zeros.
"""

from __future__ import annotations

import lightning as L
import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, Dataset


class SequenceList(Dataset):
    def __init__(self, sequences: list[torch.Tensor], targets: torch.Tensor) -> None:
        self.sequences, self.targets = sequences, targets

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.sequences[index], self.targets[index]


def pad(batch: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    sequences, targets = zip(*batch, strict=True)
    lengths = torch.tensor([len(sequence) for sequence in sequences])
    return pad_sequence(list(sequences), batch_first=True), torch.stack(targets), lengths


class TinySplits(L.LightningDataModule):
    """Three fixed splits in ``self.parts`` served in order (no shuffling: runs are exactly repeatable)."""

    def __init__(self, batch_size: int) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.parts: dict[str, Dataset] = {}

    def loader(self, name: str) -> DataLoader:
        return DataLoader(self.parts[name], batch_size=self.batch_size)

    def train_dataloader(self) -> DataLoader:
        return self.loader("train")

    def val_dataloader(self) -> DataLoader:
        return self.loader("val")

    def test_dataloader(self) -> DataLoader:
        return self.loader("test")


class TinySequenceData(TinySplits):
    def __init__(
        self,
        size: int = 96,
        sequence_length: int = 6,
        input_size: int = 2,
        variable_length: bool = False,
        regression: bool = False,
        batch_size: int = 16,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size)
        self.input_size, self.sequence_length = input_size, sequence_length
        self.num_classes = 0 if regression else 2
        self.size, self.variable_length, self.regression = size, variable_length, regression
        self.seed = seed

    def setup(self, stage: str | None = None) -> None:
        generator = torch.Generator().manual_seed(self.seed)
        offsets = torch.randn(self.size, generator=generator)
        lengths = (
            torch.randint(1, self.sequence_length + 1, (self.size,), generator=generator)
            if self.variable_length else torch.full((self.size,), self.sequence_length)
        )
        sequences = [
            0.3 * torch.randn(int(length), self.input_size, generator=generator) + offset
            for offset, length in zip(offsets, lengths, strict=True)
        ]
        targets = offsets if self.regression else (offsets > 0).long()
        third = self.size // 3
        self.parts = {
            name: SequenceList(sequences[start : start + third], targets[start : start + third])
            for name, start in (("train", 0), ("val", third), ("test", 2 * third))
        }

    def loader(self, name: str) -> DataLoader:
        collate = pad if self.variable_length else None
        return DataLoader(self.parts[name], batch_size=self.batch_size, collate_fn=collate)

    def predict_dataloader(self) -> DataLoader:
        return self.loader("test")
