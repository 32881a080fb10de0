"""MetricsSummary finds the epoch the checkpoint callback selected, whatever name the monitor has."""

import pytest

from torchseq.callbacks import MetricsSummary

HISTORY = [
    {"epoch": 0, "step": 2, "train/loss": 0.9, "val/loss": 0.5, "val/acc": 0.6},
    {"epoch": 1, "step": 4, "train/loss": 0.2, "val/loss": 0.7, "val/acc": 0.8},
    {"epoch": 2, "step": 6, "train/loss": 0.4, "val/loss": 0.6, "val/acc": 0.7},
]


@pytest.mark.parametrize(
    ("monitor", "mode", "epoch"),
    [("val/loss", "min", 0), ("val/acc", "max", 1), (None, "min", 2),
     # logged per step and per epoch: Lightning calls the epoch value "train/loss_epoch"
     ("train/loss_epoch", "min", 1)],
)
def test_the_selected_epoch_is_found(monitor, mode, epoch) -> None:
    summary = MetricsSummary()
    summary.history = HISTORY
    assert summary._best_row(monitor, mode)["epoch"] == epoch


def test_a_monitor_never_logged_selects_nothing() -> None:
    summary = MetricsSummary()
    summary.history = HISTORY
    assert summary._best_row("val/auroc", "max") is None
