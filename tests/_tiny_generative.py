"""Tiny, seeded, unshuffled data and trainer settings for the generative tests (seconds, not minutes).

- :class:`TinyImages`: ``(x (B, 1, S, S) in [0, 1], y (B,))`` — class c is a bright horizontal bar at row
  band c on faint noise, so the classes are linearly separable in pixel space.
- :class:`TinyWindows`: ``(x (B, T, 1), y (B,))`` — normal windows are faint noise, anomalous ones
  (label 1, val and test only) a loud burst: trivially separable by reconstruction error.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from _tiny_data import TinySplits
from torch.utils.data import TensorDataset

SPLITS = ("train", "val", "test")


class TinyImages(TinySplits):
    def __init__(self, size: int = 48, side: int = 28, num_classes: int = 4, batch_size: int = 16) -> None:
        super().__init__(batch_size)
        self.image_shape = (1, side, side)
        self.size, self.side, self.num_classes = size, side, num_classes

    def setup(self, stage: str | None = None) -> None:
        generator = torch.Generator().manual_seed(0)
        band = self.side // self.num_classes
        for index, name in enumerate(SPLITS):
            labels = (torch.arange(self.size) + index) % self.num_classes
            images = 0.1 * torch.rand(self.size, 1, self.side, self.side, generator=generator)
            for item, label in enumerate(labels.tolist()):
                images[item, 0, label * band : (label + 1) * band] = 0.9
            self.parts[name] = TensorDataset(images, labels)


class TinyWindows(TinySplits):
    input_size = 1

    def __init__(self, size: int = 32, window: int = 12, batch_size: int = 8) -> None:
        super().__init__(batch_size)
        self.size, self.window = size, window

    def setup(self, stage: str | None = None) -> None:
        generator = torch.Generator().manual_seed(0)
        for name in SPLITS:
            windows = 0.05 * torch.randn(self.size, self.window, 1, generator=generator)
            labels = torch.zeros(self.size, dtype=torch.long)
            if name != "train":
                labels[::4] = 1
                windows[::4] += 5.0 * torch.randn(self.size // 4, self.window, 1, generator=generator)
            self.parts[name] = TensorDataset(windows, labels)


def tiny_trainer(root: Any, **overrides: Any) -> L.Trainer:
    """CPU trainer without logger, progress bar or model summary; checkpoints off unless asked."""
    options: dict[str, Any] = {
        "accelerator": "cpu",
        "logger": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "enable_checkpointing": False,
        "default_root_dir": str(root),
        "num_sanity_val_steps": 0,
        "deterministic": True,
    }
    return L.Trainer(**(options | overrides))
