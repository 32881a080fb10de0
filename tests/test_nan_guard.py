"""NaNGuard: the first non-finite loss or gradient stops training with its step, batch and value, before
the optimiser can spread NaN into the weights."""

from __future__ import annotations

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from torchseq.callbacks.nan_guard import NaNGuard, NonFiniteLossError


class Linear(L.LightningModule):
    """Regression with one linear layer; ``manual=True`` steps the optimiser itself (as TBPTT does)."""

    def __init__(self, manual: bool = False, nan_gradient_at: int | None = None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.layer = nn.Linear(3, 1)
        self.automatic_optimization = not manual
        self.nan_gradient_at = nan_gradient_at

    def training_step(self, batch, batch_index: int) -> Tensor:
        x, y = batch
        loss = F.mse_loss(self.layer(x).squeeze(-1), y)
        if batch_index == self.nan_gradient_at:
            loss = loss + torch.sqrt(0 * self.layer.weight.sum())  # value 0, gradient 0·∞ = NaN
        if not self.automatic_optimization:
            optimizer = self.optimizers()
            optimizer.zero_grad()
            self.manual_backward(loss)
            optimizer.step()
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def loader(nan_batch: int | None = None, value: float = float("nan")) -> DataLoader:
    x, y = torch.randn(20, 3), torch.randn(20)
    if nan_batch is not None:
        x[4 * nan_batch + 1, 0] = value
    return DataLoader(TensorDataset(x, y), batch_size=4)


def fit(task: L.LightningModule, guard: NaNGuard, data: DataLoader, epochs: int = 1) -> L.Trainer:
    trainer = L.Trainer(max_epochs=epochs, callbacks=[guard], logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    trainer.fit(task, data)
    return trainer


def weights_finite(task: L.LightningModule) -> bool:
    return all(bool(torch.isfinite(parameter).all()) for parameter in task.parameters())


@pytest.mark.parametrize("manual", [False, True], ids=["automatic", "manual"])
@pytest.mark.parametrize(("value", "shown"), [(float("nan"), "nan"), (float("inf"), "inf")])
def test_a_non_finite_loss_raises_naming_step_batch_and_value(manual: bool, value: float, shown: str) -> None:
    task = Linear(manual)
    with pytest.raises(NonFiniteLossError, match=rf"training loss is {shown} at global step 2 \(epoch 0, "
                                                 rf"batch 2\); the weights are those of the last finite"):
        fit(task, NaNGuard(), loader(nan_batch=2, value=value))
    assert weights_finite(task)


def test_stop_ends_training_gracefully_with_finite_weights() -> None:
    task, guard = Linear(), NaNGuard(action="stop")
    with pytest.warns(UserWarning, match=r"training loss is nan at global step 1 \(epoch 0, batch 1\)"):
        trainer = fit(task, guard, loader(nan_batch=1), epochs=3)
    assert trainer.should_stop and trainer.global_step == 2   # of 3 epochs × 5 batches: stopped in batch 1
    assert "batch 1" in guard.report
    assert weights_finite(task)


@pytest.mark.parametrize("manual", [False, True], ids=["automatic", "manual"])
def test_a_non_finite_gradient_under_a_finite_loss_is_caught(manual: bool) -> None:
    task = Linear(manual, nan_gradient_at=3)
    expected = (r"gradient of layer.weight is not finite \(the loss was finite\) "
                r"at global step 3 \(epoch 0, batch 3\)")
    with pytest.raises(NonFiniteLossError, match=expected):
        fit(task, NaNGuard(), loader())
    assert weights_finite(task)


def test_finite_training_is_left_alone() -> None:
    guard = NaNGuard()
    trainer = fit(Linear(), guard, loader(), epochs=2)
    assert guard.report is None and trainer.global_step == 10


def test_errors_are_clear() -> None:
    with pytest.raises(ValueError, match=r"action: expected one of \('raise', 'stop'\), got 'ignore'"):
        NaNGuard(action="ignore")
