"""DiffAugment: whole-pixel shifts with the border shifted in, a filled square, gradients through both."""

from __future__ import annotations

import pytest
import torch

from torchseq.models.diff_augment import DiffAugment


def test_translation_shifts_each_image_by_whole_pixels_within_the_limit() -> None:
    torch.manual_seed(0)
    images = torch.zeros(64, 1, 16, 16)
    images[:, :, 8, 8] = 1.0  # one bright pixel, far from the border
    shifted = DiffAugment(translation=0.125, cutout=0.0)(images)
    rows, cols = (shifted[:, 0] == 1).nonzero()[:, 1:].T
    assert len(rows) == 64  # every image keeps its pixel, moved by at most 2 = 0.125 · 16
    assert (rows - 8).abs().max() == 2 and (cols - 8).abs().max() == 2
    assert len(set(zip(rows.tolist(), cols.tolist(), strict=True))) > 10  # shifts differ per image


def test_translation_brings_in_the_border_value() -> None:
    torch.manual_seed(0)
    images = torch.full((32, 1, 8, 8), -1.0)
    images[:, :, 2:6, 2:6] = 1.0
    shifted = DiffAugment(translation=0.25, cutout=0.0)(images)
    assert set(shifted.unique().tolist()) == {-1.0, 1.0}
    assert (shifted == 1).sum(dim=(1, 2, 3)).eq(16).all()  # the square moves whole, never off the image


def test_cutout_fills_one_square_per_image() -> None:
    torch.manual_seed(0)
    images = torch.ones(50, 2, 10, 10)
    cut = DiffAugment(translation=0.0, cutout=0.4, fill=-1.0)(images)
    filled = (cut == -1).all(dim=1)  # both channels alike
    counts = filled.sum(dim=(1, 2))
    assert counts.max() == 16 and counts.min() >= 1  # a 4×4 square, clipped where it crosses the edge
    assert ((cut == -1) | (cut == 1)).all()


def test_gradients_flow_to_the_kept_pixels_only() -> None:
    torch.manual_seed(0)
    images = torch.randn(4, 1, 8, 8, dtype=torch.float64, requires_grad=True)
    augment = DiffAugment(translation=0.25, cutout=0.5)
    torch.manual_seed(1)
    out = augment(images)
    out.sum().backward()
    assert images.grad.sum().item() == pytest.approx(((out != augment.fill).double()).sum().item())

    def fixed_draw(x: torch.Tensor) -> torch.Tensor:
        torch.manual_seed(1)
        return augment(x)

    assert torch.autograd.gradcheck(fixed_draw, (images.detach().requires_grad_(),))


@pytest.mark.parametrize(
    ("argument", "value"), [("translation", 0.5), ("translation", -0.1), ("cutout", 1.0)]
)
def test_out_of_range_fractions_are_refused(argument: str, value: float) -> None:
    with pytest.raises(ValueError, match=rf"{argument}: expected a fraction in \[0, .*\), got {value}"):
        DiffAugment(**{argument: value})
