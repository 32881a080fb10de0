"""What a run has logged so far, as plain numbers: the source the curves and the summary both read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L


def run_dir(trainer: L.Trainer) -> Path:
    """The run's output folder: the logger's ``runs/<experiment>/<version>``, else ``default_root_dir``.

    Not ``trainer.log_dir``: under DDP that is a broadcast every process must join, and the callbacks
    write their files from rank 0 alone.
    """
    directory = getattr(trainer.logger, "log_dir", None) or getattr(trainer.logger, "save_dir", None)
    return Path(directory or trainer.default_root_dir)


def epoch_metrics(trainer: L.Trainer) -> dict[str, float]:
    """Epoch-level scalars Lightning holds now, e.g. ``{"train/loss": 0.3, "val/acc": 0.9}``.

    Per-step values (``*_step``) are left out and the ``_epoch`` suffix Lightning adds to a value logged
    both per step and per epoch is dropped, so train and val metrics share their names after the prefix.
    """
    metrics = {}
    for name, value in trainer.callback_metrics.items():
        if name.endswith("_step") or value.numel() != 1:
            continue
        metrics[name.removesuffix("_epoch")] = float(value)
    return metrics


class EpochHistory(L.Callback):
    """Records ``{"epoch", "step", **epoch_metrics}`` after every training epoch in ``self.history``.

    The history travels in checkpoints. Lightning restores callback state whenever it loads one, also
    to test a checkpoint, so the restored state is adopted only when training starts (a resumed fit) and
    ignored otherwise: testing the best checkpoint must not truncate the history to the best epoch.
    """

    def __init__(self) -> None:
        self.history: list[dict[str, float]] = []
        self._checkpointed: dict[str, Any] | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._checkpointed is not None:
            self.resume(self._checkpointed)
            self._checkpointed = None

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        row = {"epoch": trainer.current_epoch, "step": trainer.global_step}
        self.history.append(row | epoch_metrics(trainer))

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._checkpointed = dict(state_dict)

    def resume(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint's :meth:`state_dict` (subclasses extend both)."""
        self.history = list(state["history"])
