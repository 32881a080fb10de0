"""A callback for the DDP test: each process writes which test samples it evaluated."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import lightning as L


class RecordTestSamples(L.Callback):
    """Write ``<folder>/test_samples_rank<r>.json``: a digest of every test sequence process r saw."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)
        self.digests: list[str] = []

    def on_test_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                            batch_idx: int, dataloader_idx: int = 0) -> None:
        inputs = batch[0].detach().cpu().contiguous()
        self.digests += [hashlib.sha1(row.numpy().tobytes()).hexdigest() for row in inputs]

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"test_samples_rank{trainer.global_rank}.json"
        path.write_text(json.dumps(self.digests))
