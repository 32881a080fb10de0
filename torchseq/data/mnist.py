"""Full MNIST (60,000 + 10,000 images) from local IDX files, read by torchvision; download on request."""

from __future__ import annotations

from pathlib import Path

from torchseq.data.augment import ImageTransform
from torchseq.data.base import Splits
from torchseq.data.images import DigitImagesDataModule
from torchseq.data.split import check_fractions, split_indices

IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


class MNISTDataModule(DigitImagesDataModule):
    """MNIST through ``torchvision.datasets.MNIST``: read from ``root``, downloaded only when asked.

    ``root`` follows torchvision's layout: the four uncompressed IDX files in ``<root>/MNIST/raw/``.
    With ``download=True`` missing files are fetched by torchvision (its ``MNIST.mirrors``, checked
    against its MD5 sums) in :meth:`prepare_data`, i.e. once, on one process; with the default
    ``download=False`` nothing is fetched and missing files fail at construction.
    The official 10,000 test images are the test split; the validation split is carved from the 60,000
    training images (stratified by label, seeded). Pixels are scaled to [0, 1].

    Batches: ``as_images=False`` gives ``(x (B, 28, 28), y (B,))`` — 28 timesteps of 28 features;
    ``as_images=True`` gives ``(x (B, 1, 28, 28), y (B,))``.
    """

    def __init__(
        self,
        root: str,
        as_images: bool = False,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
        val_fraction: float = 0.1,
        train_transform: ImageTransform | None = None,
        download: bool = False,
    ) -> None:
        super().__init__(28, as_images, batch_size, num_workers, seed, train_transform)
        check_fractions(val_fraction=val_fraction)
        self.root = root
        self.val_fraction = val_fraction
        self.download = download
        if not download:
            check_idx_files(Path(root))

    def prepare_data(self) -> None:
        """Fetch the IDX files into ``<root>/MNIST/raw/`` when ``download=True`` and they are missing."""
        if self.download:
            from torchvision.datasets import MNIST

            for train in (True, False):
                MNIST(self.root, train=train, download=True)

    def build_splits(self) -> Splits:
        from torchvision.datasets import MNIST  # imported here: only this module needs torchvision

        self.prepare_data()  # a no-op unless download=True and the files are still missing
        check_idx_files(Path(self.root))
        train = MNIST(self.root, train=True, download=False)
        test = MNIST(self.root, train=False, download=False)
        shares = (1 - self.val_fraction, self.val_fraction)
        fit, val = split_indices(len(train.targets), shares, self.seed, labels=train.targets.numpy())
        scale = 1.0 / 255.0
        return Splits(
            train=self.to_dataset(train.data[fit] * scale, train.targets[fit]),
            val=self.to_dataset(train.data[val] * scale, train.targets[val]),
            test=self.to_dataset(test.data * scale, test.targets),
        )


def check_idx_files(root: Path) -> None:
    """Fail early, naming the folder and the files torchvision will look for."""
    raw = root / "MNIST" / "raw"
    missing = [name for name in IDX_FILES if not (raw / name).is_file()]
    if not missing:
        return
    hint = ""
    if all((raw / f"{name}.gz").is_file() for name in missing):
        hint = " (only their .gz archives are there: decompress them with gunzip)"
    raise FileNotFoundError(
        f"root: MNIST IDX files not found in {raw}: missing {', '.join(missing)}{hint}. Expected the "
        f"uncompressed files {', '.join(IDX_FILES)} in <root>/MNIST/raw/ (torchvision's layout), or "
        "download=True to fetch them"
    )
