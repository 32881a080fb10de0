"""Keras masks in torchseq: a mask (B, T) marks the real timesteps of a padded batch.

Keras lets a mask skip any step; torchseq runs a mask as sequence lengths, which covers the usual case
of trailing padding (True for each sequence's first steps, then False) and keeps the fast paths.
"""

from __future__ import annotations

import torch
from torch import Tensor

from torchseq.checks import check_shape
from torchseq.masks import lengths_mask


# -- masks ---------------------------------------------------------------------------------------------
def padding_mask(inputs: Tensor, mask_value: float = 0.0) -> Tensor:
    """Keras ``Masking(mask_value)``'s mask: (B, T) True where a timestep has any feature ≠ mask_value."""
    return (inputs != mask_value).any(dim=-1)


def lengths_from_mask(mask: Tensor, inputs: Tensor) -> Tensor:
    """The sequence lengths (B,) that a trailing-padding mask (B, T) describes."""
    if not isinstance(mask, Tensor):
        raise TypeError(f"mask: expected a torch.Tensor, got {type(mask).__name__}")
    check_shape("mask", mask, tuple(inputs.shape[:2]))
    mask = mask.to(torch.bool)
    lengths = mask.sum(dim=1)                                                       # (B,)
    irregular = (mask != lengths_mask(lengths, mask.shape[1])).any(dim=1).nonzero().flatten()
    if irregular.numel():
        raise ValueError(
            f"mask: expected each row True for its first steps and False after (trailing padding), "
            f"got another pattern in row(s) {irregular.tolist()}"
        )
    if int(lengths.min()) == 0:
        empty = (lengths == 0).nonzero().flatten().tolist()
        raise ValueError(f"mask: expected at least one True step per row, got none in row(s) {empty}")
    return lengths.cpu()


def carry_last_output(output: Tensor, valid: Tensor) -> Tensor:
    """Keras' rule for a masked step: repeat the previous output (zeros before any valid step).

    output (B, T, H) in processing order, valid (B, T) bool in the same order.
    """
    steps = torch.arange(output.shape[1], device=output.device)
    last_valid = torch.where(valid, steps, -1).cummax(dim=1).values                 # (B, T)
    index = last_valid.clamp(min=0).unsqueeze(-1).expand_as(output)                 # (B, T, H)
    return output.gather(1, index).masked_fill((last_valid < 0).unsqueeze(-1), 0.0)
