"""Sequence lengths → a mask of the real timesteps of a padded batch."""

from __future__ import annotations

import torch
from torch import Tensor


def lengths_mask(lengths: Tensor, steps: int, device: torch.device | str | None = None) -> Tensor:
    """(B, T) boolean, True where timestep t lies inside sequence b (t < lengths[b]).

    On ``device`` (default: the lengths' own); transpose it for time-first (T, B) data.
    """
    device = lengths.device if device is None else device
    return torch.arange(steps, device=device).unsqueeze(0) < lengths.to(device).unsqueeze(1)
