"""Per-step classification (the copy task): the tagger's shapes, the step accuracy, and a CLI fit."""

from __future__ import annotations

from functools import partial

import pytest
import torch
import yaml

from torchseq.cli import TorchseqCLI
from torchseq.models.tagger import RecurrentTagger
from torchseq.tasks.step_classification import StepAccuracy, StepClassificationTask


def test_the_tagger_gives_logits_at_every_step_that_depend_only_on_the_past() -> None:
    torch.manual_seed(0)
    tagger = RecurrentTagger(3, 5, hidden_size=4, cell="gru")
    x = torch.randn(2, 7, 3)
    output = tagger(x)
    assert output.shape == (2, 7, 5)
    changed = x.clone()
    changed[:, 4:] += 1.0                           # the future must not change the first four outputs
    torch.testing.assert_close(tagger(changed)[:, :4], output[:, :4])


def test_step_accuracy_counts_all_steps_or_the_last_k() -> None:
    target = torch.tensor([[0, 1, 2, 2], [1, 1, 0, 2]])
    output = torch.nn.functional.one_hot(torch.tensor([[0, 1, 0, 2], [1, 0, 0, 0]]), 3).float()
    everywhere, answer = StepAccuracy(), StepAccuracy(last=2)
    everywhere.update(output, target)
    answer.update(output, target)
    assert everywhere.compute() == pytest.approx(5 / 8)
    assert answer.compute() == pytest.approx(2 / 4)


def test_the_loss_is_the_mean_cross_entropy_per_step() -> None:
    task = StepClassificationTask(partial(RecurrentTagger, hidden_size=4), input_size=3, num_classes=4)
    output, target = torch.randn(2, 5, 4), torch.randint(0, 4, (2, 5))
    expected = torch.stack([torch.nn.functional.cross_entropy(output[:, t], target[:, t]) for t in range(5)])
    torch.testing.assert_close(task.loss(output, target), expected.mean())


def test_the_copy_task_trains_from_a_config(tmp_path) -> None:
    config = {
        "seed_everything": 0, "trainer": {"max_epochs": 1, "enable_progress_bar": False,
                                          "default_root_dir": str(tmp_path), "logger": False},
        "checkpoint": {"dirpath": str(tmp_path / "checkpoints")},
        "model": {"class_path": "torchseq.tasks.StepClassificationTask",
                  "init_args": {"answer_steps": 3, "model": {
                      "class_path": "torchseq.models.tagger.RecurrentTagger",
                      "init_args": {"cell": "lstm", "hidden_size": 4}}}},
        "data": {"class_path": "torchseq.data.CopyTaskDataModule",
                 "init_args": {"sequence_length": 5, "copy_length": 3, "train_size": 16, "val_size": 8,
                               "test_size": 8, "batch_size": 8}},
    }
    path = tmp_path / "copy.yaml"
    path.write_text(yaml.safe_dump(config))
    cli = TorchseqCLI(args=["fit", "--config", str(path)])
    assert cli.model.num_classes == 9 and cli.model.input_size == 10      # linked from the data: K + 1, K + 2
    assert {"val/loss", "val/acc", "val/answer_acc"} <= set(cli.trainer.callback_metrics)


def test_errors_are_clear() -> None:
    factory = partial(RecurrentTagger, hidden_size=4)
    with pytest.raises(ValueError, match="num_classes: per-step classification needs at least 2 classes"):
        StepClassificationTask(factory, input_size=3, num_classes=1)
    with pytest.raises(ValueError, match="answer_steps: expected a positive int or None, got 0"):
        StepClassificationTask(factory, input_size=3, num_classes=4, answer_steps=0)
    with pytest.raises(ValueError, match=r"cell: expected one of \('rnn', 'lstm', 'gru'\), got 'tcn'"):
        RecurrentTagger(3, 4, cell="tcn")
