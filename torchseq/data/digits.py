"""scikit-learn's 8×8 handwritten digits (1,797 images), read from the file scikit-learn ships."""

from __future__ import annotations

from torchseq.data.images import PixelTableDataModule


class DigitsDataModule(PixelTableDataModule):
    """``sklearn/datasets/data/digits.csv.gz``: 8×8 digits with pixel counts 0–16, scaled to [0, 1].

    Each row holds 64 pixel values, row by row, then the label (no header). Stratified, seeded
    train/val/test split (70/10/20 by default).

    Batches: ``as_images=False`` gives ``(x (B, 8, 8), y (B,))`` — 8 timesteps of 8 features;
    ``as_images=True`` gives ``(x (B, 1, 8, 8), y (B,))``.

    ``data_dir``: a folder holding ``digits.csv.gz`` to use instead of scikit-learn's copy.
    """

    package = "sklearn"
    package_folder = ("datasets", "data")
    file_name = "digits.csv.gz"
    side = 8
    max_pixel = 16.0
