r"""Differentiable augmentation for GAN discriminators (Zhao et al. 2020, "DiffAugment").

With few training images the discriminator memorises them, its feedback to the generator stops being
informative, and training degrades. DiffAugment applies the *same kind* of random augmentation to real
and generated images every time the discriminator sees them — in its own step and in the generator's —
and, because the augmentation is differentiable, the generator learns through it. The generator is
never asked to produce augmented images: D sees T(x) and T(G(z)) with T random.

Two augmentations, each drawn per image:

- **translation** by up to ``translation``·size pixels in each direction (integer shifts); pixels shifted
  in come from the image's border, which on MNIST is background;
- **cutout**: a square of side ``cutout``·size at a random place set to ``fill`` (the background value
  in the generator's range).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class DiffAugment(nn.Module):
    """Random translation and cutout of (B, C, H, W) images, differentiable with respect to the images.

    Args:
        translation: largest shift as a fraction of the image size, in [0, 0.5).
        cutout: side of the cut-out square as a fraction of the image size, in [0, 1).
        fill: value written into the cut-out square (the background, e.g. −1 for tanh images).
    """

    def __init__(self, translation: float = 0.125, cutout: float = 0.5, fill: float = -1.0) -> None:
        super().__init__()
        if not 0.0 <= translation < 0.5:
            raise ValueError(f"translation: expected a fraction in [0, 0.5), got {translation!r}")
        if not 0.0 <= cutout < 1.0:
            raise ValueError(f"cutout: expected a fraction in [0, 1), got {cutout!r}")
        self.translation, self.cutout, self.fill = float(translation), float(cutout), float(fill)

    def forward(self, images: Tensor) -> Tensor:
        if images.dim() != 4:
            raise ValueError(f"images: expected (B, C, H, W), got shape {tuple(images.shape)}")
        if self.translation > 0:
            images = self.translate(images)
        if self.cutout > 0:
            images = self.cut_out(images)
        return images

    def translate(self, images: Tensor) -> Tensor:
        """Each image shifted by whole pixels, up to ``translation``·size, the border value shifted in."""
        batch, _, height, width = images.shape
        rows = _shifted_indices(batch, height, int(height * self.translation + 0.5), images.device)  # (B, H)
        cols = _shifted_indices(batch, width, int(width * self.translation + 0.5), images.device)  # (B, W)
        gathered_rows = images.gather(2, rows[:, None, :, None].expand(-1, images.shape[1], -1, width))
        return gathered_rows.gather(3, cols[:, None, None, :].expand(-1, images.shape[1], height, -1))

    def cut_out(self, images: Tensor) -> Tensor:
        """Each image with a square of side ``cutout``·size (centre anywhere in the image) set to ``fill``."""
        batch, _, height, width = images.shape
        side_h, side_w = int(height * self.cutout + 0.5), int(width * self.cutout + 0.5)
        top = torch.randint(0, height, (batch, 1, 1), device=images.device) - side_h // 2
        left = torch.randint(0, width, (batch, 1, 1), device=images.device) - side_w // 2
        row = torch.arange(height, device=images.device)[None, :, None]
        col = torch.arange(width, device=images.device)[None, None, :]
        inside = (row >= top) & (row < top + side_h) & (col >= left) & (col < left + side_w)  # (B, H, W)
        return images.masked_fill(inside[:, None], self.fill)

    def extra_repr(self) -> str:
        return f"translation={self.translation}, cutout={self.cutout}, fill={self.fill}"


def _shifted_indices(batch: int, size: int, largest: int, device: torch.device) -> Tensor:
    """Source index of every output pixel for a random shift in [−largest, largest], clamped at the edges."""
    shift = torch.randint(-largest, largest + 1, (batch, 1), device=device)
    return (torch.arange(size, device=device)[None, :] - shift).clamp_(0, size - 1)
