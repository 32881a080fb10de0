"""Reduce a padded (B, T, C) sequence to (B, C) features, looking only at each sequence's real steps.

Padding after a sequence's end is never averaged in: a batch of padded sequences gives exactly the
features each sequence would give alone.
"""

from __future__ import annotations

import torch
from torch import Tensor

from torchseq.masks import lengths_mask


def valid_steps(lengths: Tensor | None, batch_size: int, steps: int, device: torch.device) -> Tensor:
    """(B, T) boolean mask, True where step t lies inside sequence b (all True when lengths is None)."""
    if lengths is None:
        return torch.ones(batch_size, steps, dtype=torch.bool, device=device)
    return lengths_mask(lengths, steps, device)


def masked_mean(values: Tensor, lengths: Tensor | None) -> Tensor:
    """Mean over time of ``values`` (B, T, C), counting the first ``lengths[b]`` steps of sequence b."""
    if lengths is None:
        return values.mean(dim=1)
    mask = valid_steps(lengths, values.shape[0], values.shape[1], values.device).unsqueeze(-1)  # (B, T, 1)
    total = values.masked_fill(~mask, 0.0).sum(dim=1)                                           # (B, C)
    return total / lengths.to(values.device, values.dtype).unsqueeze(1)
