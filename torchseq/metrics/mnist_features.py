"""torchseq's own MNIST-5k classifier, whose feature space replaces Inception-v3 for sample quality.

The FID needs a network that "knows" the images; for 28×28 digits a small convnet trained on the
MNIST-5k training split does, and unlike Inception it needs no download. Its penultimate layer
(``num_features`` = 64 units) gives the features for :class:`~torchseq.metrics.frechet.FeatureFrechetDistance`
and its logits the labels for :class:`~torchseq.metrics.class_coverage.ClassCoverage`.

:func:`load_or_train_feature_net` trains it once (6 epochs: about 80 s of CPU time, 95 % test accuracy) and
caches the weights and the test accuracy in ``runs/feature_net/mnist5k_convnet.pt``; later calls load
that file. Training runs inside ``torch.random.fork_rng`` so it leaves the caller's random stream as it
was.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from torchseq.checkpointing import atomic_save, load_checkpoint_file

DEFAULT_PATH = Path("runs/feature_net/mnist5k_convnet.pt")


class MNISTFeatureNet(nn.Module):
    """Conv(32) → pool → Conv(64) → pool → Dense(num_features) → Dense(num_classes), on (B, 1, 28, 28)."""

    def __init__(self, num_classes: int = 10, num_features: int = 64) -> None:
        super().__init__()
        self.num_features = num_features
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, 32, 14, 14)
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, 64, 7, 7)
            nn.Flatten(),
            nn.Linear(64 * 7 * 7, num_features), nn.ReLU(),  # (B, num_features)
        )  # fmt: skip
        self.head = nn.Linear(num_features, num_classes)

    def forward(self, images: Tensor) -> Tensor:
        """Class logits (B, num_classes)."""
        return self.head(self.features(images))


class FrozenFeatures(nn.Module):
    """The penultimate features of a trained :class:`MNISTFeatureNet`, always in eval mode, no gradients.

    Metrics hold it as a child module; pinning ``train()`` keeps a parent's ``.train()`` from switching
    it back to training mode.
    """

    def __init__(self, net: MNISTFeatureNet) -> None:
        super().__init__()
        self.net = net.requires_grad_(False).eval()
        self.num_features = net.num_features

    def train(self, mode: bool = True) -> FrozenFeatures:
        return super().train(False)

    def forward(self, images: Tensor) -> Tensor:
        return self.net.features(images)

    def logits(self, images: Tensor) -> Tensor:
        return self.net(images)


def accuracy(net: nn.Module, loader: DataLoader) -> float:
    net.eval()
    correct = total = 0
    with torch.no_grad():
        for images, labels in loader:
            correct += int((net(images).argmax(dim=1) == labels).sum())
            total += len(labels)
    return correct / total


def train_feature_net(epochs: int = 6, lr: float = 1e-3, seed: int = 0) -> tuple[MNISTFeatureNet, float]:
    """Train on the MNIST-5k training split (seeded split); return the net and its test accuracy.

    The caller's random state is left as it was: the net is trained on a GAN run's first use of a metric,
    and that run must draw the same numbers whether the net was cached already or not. Every draw,
    including the one each data-loader iteration takes from the global generator for its workers'
    seeds, happens inside ``fork_rng``.
    """
    from torchseq.data import MNIST5kDataModule  # the data layer is needed only to train

    data = MNIST5kDataModule(as_images=True, batch_size=64, seed=seed)
    data.setup("fit")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = MNISTFeatureNet()
        optimizer = torch.optim.Adam(net.parameters(), lr=lr)
        for _ in range(epochs):
            net.train()
            for images, labels in data.train_dataloader():
                optimizer.zero_grad()
                F.cross_entropy(net(images), labels).backward()
                optimizer.step()
        return net.eval(), accuracy(net, data.test_dataloader())


def load_or_train_feature_net(
    path: str | Path = DEFAULT_PATH, seed: int = 0
) -> tuple[MNISTFeatureNet, float]:
    """The cached feature net at ``path`` and its test accuracy, training and saving it first if missing."""
    path = Path(path)
    if path.is_file():
        saved = load_checkpoint_file(path, map_location="cpu", weights_only=True)
        net = MNISTFeatureNet(num_features=saved["num_features"])
        net.load_state_dict(saved["state_dict"])
        return net.eval(), float(saved["test_accuracy"])
    net, test_accuracy = train_feature_net(seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "state_dict": net.state_dict(),
        "test_accuracy": test_accuracy,
        "num_features": net.num_features,
    }
    atomic_save(payload, path)  # a run killed while caching must not leave a half-written file
    return net, test_accuracy

