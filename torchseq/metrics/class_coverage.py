"""Class coverage: how many classes a generator produces, judged by a classifier.

A generator that has collapsed onto a few modes can still fool a discriminator and reach a modest
Fréchet distance; counting the classes a classifier recognises in its samples exposes it directly.

A class counts as **covered** when its share of the samples is at least ``min_share_of_uniform`` times
the uniform share 1/C (by default half of it: 5 % of the samples for 10 digits). Coverage is the
fraction of the C classes covered: 1.0 for a balanced generator, 0.1 for one that draws a single digit.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric


class ClassCoverage(Metric):
    """Fraction of classes whose share of the predictions is ≥ ``min_share_of_uniform`` / ``num_classes``.

    ``update(logits)`` takes classifier logits (B, C) or predicted labels (B,).
    """

    full_state_update = False
    higher_is_better = True

    counts: Tensor

    def __init__(self, num_classes: int, min_share_of_uniform: float = 0.5) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes: expected at least 2 classes, got {num_classes!r}")
        if not 0.0 < min_share_of_uniform <= 1.0:
            raise ValueError(
                f"min_share_of_uniform: expected a value in (0, 1], got {min_share_of_uniform!r}"
            )
        self.num_classes, self.min_share_of_uniform = num_classes, min_share_of_uniform
        self.add_state("counts", torch.zeros(num_classes, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, predictions: Tensor) -> None:
        if predictions.dim() == 2:
            if predictions.shape[1] != self.num_classes:
                raise ValueError(
                    f"predictions: expected logits (B, {self.num_classes}), got {tuple(predictions.shape)}"
                )
            predictions = predictions.argmax(dim=1)
        if predictions.dim() != 1:
            raise ValueError(
                f"predictions: expected logits (B, C) or labels (B,), got {tuple(predictions.shape)}"
            )
        if len(predictions) and (predictions.min() < 0 or predictions.max() >= self.num_classes):
            raise ValueError(
                f"predictions: expected labels in 0..{self.num_classes - 1}, got "
                f"{int(predictions.min())}..{int(predictions.max())}"
            )
        self.counts += torch.bincount(predictions.long(), minlength=self.num_classes)

    def shares(self) -> Tensor:
        """Share of the predictions that fell in each class, (C,)."""
        return self.counts.double() / self.counts.sum().clamp(min=1)

    def compute(self) -> Tensor:
        threshold = self.min_share_of_uniform / self.num_classes
        return (self.shares() >= threshold).double().mean()
