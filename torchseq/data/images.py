"""Square grayscale digit images, served either as images or as sequences of pixel rows.

As a sequence an S×S image is S timesteps of S features: row t is the input at step t (the book's
"RNN with MNIST": 28 steps × 28 features). Pixels are scaled to [0, 1].

- ``as_images=False``: batches ``(x (B, S, S) float32, y (B,) int64)``;
- ``as_images=True``:  batches ``(x (B, 1, S, S) float32, y (B,) int64)``.

``train_transform`` augments the training images (either layout): an image transform, e.g. torchvision's
``v2.RandomAffine``, that sees each training digit as a (1, S, S) image every time it is drawn.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import TensorDataset

from torchseq.data.augment import AsImage, ImageTransform, check_transform
from torchseq.data.base import SplitDataModule, Splits
from torchseq.data.files import locate_data_file
from torchseq.data.split import check_fractions, split_indices
from torchseq.data.tables import DataFileError, read_numeric_csv


class DigitImagesDataModule(SplitDataModule):
    """Ten classes of ``side``×``side`` images; subclasses provide the pixels."""

    num_classes = 10

    def __init__(
        self,
        side: int,
        as_images: bool,
        batch_size: int,
        num_workers: int,
        seed: int,
        train_transform: ImageTransform | None = None,
    ) -> None:
        super().__init__(batch_size, num_workers, seed)
        self.as_images = as_images
        self.input_size = side
        self.sequence_length = side
        self.image_shape = (1, side, side)
        if check_transform("train_transform", train_transform) is not None:
            self.train_transform = AsImage(train_transform, self.image_shape)

    def to_dataset(self, pixels: torch.Tensor, labels: torch.Tensor) -> TensorDataset:
        """``pixels`` (N, side, side) or (N, side·side) float in [0, 1]; ``labels`` (N,) int64."""
        shape = self.image_shape if self.as_images else self.image_shape[1:]
        return TensorDataset(pixels.to(torch.float32).reshape(-1, *shape), labels.to(torch.int64))


class PixelTableDataModule(DigitImagesDataModule):
    """A labelled pixel table shipped in a package (one image a row: side² pixels, then the label).

    The rows are split once into train/val/test, stratified by label and seeded, so every split keeps the
    class balance even though the file is sorted by label. Subclasses name the file and its pixel scale.
    ``data_dir``: a folder holding a file of the same name to read instead of the package's.
    """

    package: str
    package_folder: tuple[str, ...]
    file_name: str
    side: int
    max_pixel: float

    def __init__(
        self,
        as_images: bool = False,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        data_dir: str | None = None,
        train_transform: ImageTransform | None = None,
    ) -> None:
        super().__init__(self.side, as_images, batch_size, num_workers, seed, train_transform)
        check_fractions(val_fraction=val_fraction, test_fraction=test_fraction)
        self.fractions = (1.0 - val_fraction - test_fraction, val_fraction, test_fraction)
        self.path = locate_data_file(data_dir, self.package, self.package_folder, self.file_name)

    def build_splits(self) -> Splits:
        pixels, labels = self.read_table()
        parts = split_indices(len(labels), self.fractions, self.seed, labels=labels.numpy())
        return Splits(*(self.to_dataset(pixels[part], labels[part]) for part in parts))

    def read_table(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Pixels (N, side²) float32 in [0, 1] and labels (N,) int64, after checking every value."""
        table = read_numeric_csv(self.path, columns=self.side * self.side + 1, integers=True)
        pixels, labels = table[:, :-1], table[:, -1]
        bad_rows = np.flatnonzero(((pixels < 0) | (pixels > self.max_pixel)).any(axis=1))
        if len(bad_rows):
            raise DataFileError(
                f"{self.path}, data row {bad_rows[0] + 1}: expected pixel values in [0, {self.max_pixel:g}], "
                f"got {pixels[bad_rows[0]].min()}..{pixels[bad_rows[0]].max()}"
            )
        bad_rows = np.flatnonzero((labels < 0) | (labels >= self.num_classes))
        if len(bad_rows):
            raise DataFileError(
                f"{self.path}, data row {bad_rows[0] + 1}: expected a label in 0..{self.num_classes - 1} "
                f"(the last column), got {labels[bad_rows[0]]}"
            )
        return (
            torch.from_numpy(pixels / self.max_pixel).to(torch.float32),
            torch.from_numpy(labels).to(torch.int64),
        )
