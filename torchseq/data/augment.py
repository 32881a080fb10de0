"""Training-set augmentation: a transform applied to each input as it is drawn, never to val or test.

The transform is any callable from tensor to tensor, typically a torchvision ``transforms.v2`` object
given in a config::

    data:
      class_path: torchseq.data.MNIST5kDataModule
      init_args:
        train_transform:
          class_path: torchvision.transforms.v2.RandomAffine
          init_args: {degrees: 10, translate: [0.1, 0.1], scale: [0.9, 1.1]}

Random transforms draw from torch's global generator, which ``seed_everything`` seeds and the
:class:`~torchseq.callbacks.RNGState` callback checkpoints, so augmented runs repeat and resume exactly
(with ``num_workers=0``; worker processes draw from their own seeds).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn
from torch.utils.data import Dataset

#: What the datasets apply: any callable from tensor to tensor.
Transform = Callable[[Tensor], Tensor]
#: What data modules take from a config: torchvision's v2 transforms are modules, which lets
#: LightningCLI build one from ``class_path``/``init_args`` (in Python any tensor → tensor callable works).
ImageTransform = nn.Module


def check_transform(name: str, transform: object) -> Transform | None:
    if transform is not None and not callable(transform):
        kind = type(transform).__name__
        raise TypeError(f"{name}: expected a callable that maps a tensor to a tensor, got {kind}")
    return transform


class TransformedInputs(Dataset):
    """``dataset``'s items with their first element (the input x) through ``transform`` on every read."""

    def __init__(self, dataset: Dataset, transform: Transform) -> None:
        self.dataset = dataset
        self.transform = transform

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple:
        x, *rest = self.dataset[index]
        return (self.transform(x), *rest)


class AsImage:
    """Runs an image transform on an input stored in another layout (e.g. an S×S image as S rows of S pixels).

    The input is viewed as ``image_shape`` (C, H, W) for the transform and returned in its own shape, so
    the same augmentation serves a digit read as an image and read row by row.
    """

    def __init__(self, transform: Transform, image_shape: tuple[int, ...]) -> None:
        self.transform = transform
        self.image_shape = tuple(image_shape)

    def __call__(self, x: Tensor) -> Tensor:
        image = self.transform(x.reshape(self.image_shape))
        if tuple(image.shape) != self.image_shape:
            raise ValueError(
                f"train_transform: expected it to keep the image shape {self.image_shape}, "
                f"got {tuple(image.shape)} (crop or resize back to the original size)"
            )
        return image.reshape(x.shape)

    def __repr__(self) -> str:
        return f"AsImage({self.transform!r}, image_shape={self.image_shape})"
