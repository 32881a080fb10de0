"""Classification and regression tasks: they learn, log what they say, and fail early on mismatches."""

from __future__ import annotations

from functools import partial

import lightning as L
import pytest
import torch
from _tiny_data import TinySequenceData

from torchseq import tasks
from torchseq.models import LSTMFCN, RecurrentClassifier
from torchseq.tasks import ClassificationTask, RegressionTask

SMALL_LSTM = partial(RecurrentClassifier, hidden_size=8)


def trainer(tmp_path, **options) -> L.Trainer:
    defaults = {"max_epochs": 1, "logger": False, "enable_checkpointing": False, "enable_progress_bar": False,
                "enable_model_summary": False, "default_root_dir": tmp_path}
    return L.Trainer(**(defaults | options))


def macro_f1(predicted: torch.Tensor, target: torch.Tensor, num_classes: int) -> float:
    scores = []
    for label in range(num_classes):
        true_positive = ((predicted == label) & (target == label)).sum().item()
        predicted_count, actual_count = (predicted == label).sum().item(), (target == label).sum().item()
        scores.append(0.0 if true_positive == 0 else 2 * true_positive / (predicted_count + actual_count))
    return sum(scores) / num_classes


@pytest.mark.parametrize("variable_length", [False, True], ids=["fixed", "variable_length"])
def test_classification_learns_and_logs_its_metrics(tmp_path, variable_length: bool) -> None:
    L.seed_everything(0)
    data = TinySequenceData(size=240, variable_length=variable_length)
    task = ClassificationTask(SMALL_LSTM, input_size=data.input_size, num_classes=data.num_classes)
    fit = trainer(tmp_path, max_epochs=8)
    fit.fit(task, datamodule=data)
    logged = fit.callback_metrics
    for name in ("train/loss_epoch", "train/acc", "train/f1", "val/loss", "val/acc", "val/f1"):
        assert name in logged, name
    assert logged["val/acc"] >= 0.85  # chance is 0.5; the offsets make the classes nearly separable

    (results,) = fit.test(task, datamodule=data, verbose=False)
    predicted = torch.cat(fit.predict(task, datamodule=data))
    target = torch.cat([batch[1] for batch in data.test_dataloader()])
    assert results["test/acc"] == pytest.approx((predicted == target).float().mean().item(), abs=1e-6)
    assert results["test/f1"] == pytest.approx(macro_f1(predicted, target, 2), abs=1e-6)


def test_lstm_fcn_classifies_variable_length_batches(tmp_path) -> None:
    L.seed_everything(0)
    data = TinySequenceData(size=240, variable_length=True)
    model = partial(LSTMFCN, hidden_size=8, channels=(16, 16, 16), dropout=0.2)
    task = ClassificationTask(model, input_size=data.input_size, num_classes=data.num_classes)
    fit = trainer(tmp_path, max_epochs=8)
    fit.fit(task, datamodule=data)
    assert fit.callback_metrics["val/acc"] >= 0.85


def test_regression_logs_the_mse_of_its_predictions(tmp_path) -> None:
    L.seed_everything(0)
    data = TinySequenceData(regression=True)
    task = RegressionTask(partial(RecurrentClassifier, hidden_size=8, cell="gru"), input_size=data.input_size)
    fit = trainer(tmp_path, max_epochs=2)
    fit.fit(task, datamodule=data)
    assert {"train/loss_epoch", "train/mse", "val/mse", "val/mae"} <= set(fit.callback_metrics)
    (results,) = fit.test(task, datamodule=data, verbose=False)
    predicted = torch.cat(fit.predict(task, datamodule=data))
    target = torch.cat([batch[1] for batch in data.test_dataloader()])
    assert predicted.shape == target.shape
    assert results["test/mse"] == pytest.approx(((predicted - target) ** 2).mean().item(), rel=1e-5)


def test_task_without_optimizer_config_uses_adam_at_1e_3() -> None:
    task = ClassificationTask(SMALL_LSTM, input_size=2, num_classes=3)
    optimizer = task.configure_optimizers()
    assert isinstance(optimizer, torch.optim.Adam)
    assert optimizer.param_groups[0]["lr"] == 1e-3


@pytest.mark.parametrize(
    ("task", "data", "match"),
    [
        (lambda: ClassificationTask(SMALL_LSTM, input_size=5, num_classes=2), TinySequenceData(input_size=3),
         "input_size: ClassificationTask was built for input_size=5, but the data module TinySequenceData "
         "provides input_size=3"),
        (lambda: ClassificationTask(SMALL_LSTM, input_size=2, num_classes=4), TinySequenceData(),
         "num_classes: ClassificationTask was built for num_classes=4, but .* provides num_classes=2"),
        (lambda: RegressionTask(SMALL_LSTM, input_size=2), TinySequenceData(),
         "num_classes: RegressionTask was built for num_classes=0, but .* provides num_classes=2"),
    ],
    ids=["input_size", "num_classes", "regression_on_classes"],
)
def test_task_and_data_that_disagree_fail_before_training(tmp_path, task, data, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        trainer(tmp_path).fit(task(), datamodule=data)


def test_classification_needs_classes() -> None:
    with pytest.raises(ValueError, match=r"num_classes: classification needs at least 2 classes, got 0"):
        ClassificationTask(SMALL_LSTM, input_size=2, num_classes=0)


def test_batches_must_be_pairs_or_triples_with_the_right_target_dtype() -> None:
    task = ClassificationTask(SMALL_LSTM, input_size=2, num_classes=2)
    x = torch.randn(4, 3, 2)
    with pytest.raises(ValueError, match=r"batch: expected \(x, y\) or \(x, y, lengths\), got a tuple of 4"):
        task.training_step((x, x, x, x), 0)
    with pytest.raises(TypeError, match=r"batch: ClassificationTask expects targets of dtype torch.int64"):
        task.training_step((x, torch.zeros(4)), 0)


def test_the_short_task_names_still_resolve_for_old_configs() -> None:
    # Configs and checkpoints written with the short names must keep building the same classes.
    assert tasks.Classification is ClassificationTask
    assert tasks.Regression is RegressionTask
    assert tasks.StepClassification is tasks.StepClassificationTask
    task = tasks.Classification(SMALL_LSTM, input_size=2, num_classes=3)
    assert type(task).__name__ == "ClassificationTask"

