"""Anomaly scores over a series: per-point scores, labelled stretches, the PNG, AUROC with both classes."""

from __future__ import annotations

from functools import partial

import lightning as L
import numpy as np
import pytest
from PIL import Image

from tests._tiny_generative import tiny_trainer
from torchseq.callbacks.anomaly_scores import AnomalyScorePlot, labelled_runs, point_scores
from torchseq.data import AnomalyDataModule
from torchseq.models.sequence_autoencoder import SequenceAutoencoder
from torchseq.tasks.autoencoding import AnomalyAutoencoderTask


def test_point_scores_average_the_covering_windows() -> None:
    scores = point_scores(np.array([1.0, 3.0]), starts=np.array([0, 2]), window=4, length=7)
    expected = [1.0, 1.0, 2.0, 2.0, 3.0, 3.0, np.nan]  # points 2, 3 lie in both windows; 6 in none
    np.testing.assert_array_equal(scores, expected)


def test_labelled_runs_are_half_open_stretches() -> None:
    labels = np.array([0, 1, 1, 0, 0, 1, 0, 1], dtype=bool)
    assert labelled_runs(labels) == [(1, 3), (5, 6), (7, 8)]
    assert labelled_runs(np.zeros(4, dtype=bool)) == []


def write_series(folder, length: int = 240, anomalous: tuple[int, int] = (200, 215)) -> None:
    """A sine with a loud burst inside the labelled stretch, laid out like sktime's yahoo folder."""
    steps = np.arange(length)
    values = np.sin(steps / 4.0)
    labels = (steps >= anomalous[0]) & (steps < anomalous[1])
    values[labels] += 4.0 * np.cos(steps[labels])
    (folder / "yahoo").mkdir()
    rows = [f"{value:.6f},{int(label)}" for value, label in zip(values, labels, strict=True)]
    (folder / "yahoo" / "yahoo.csv").write_text("\n".join(["data,label", *rows]) + "\n")


def test_time_split_run_logs_test_auroc_only_and_draws_the_plot(tmp_path) -> None:
    write_series(tmp_path)
    data = AnomalyDataModule("yahoo", window=16, stride=4, split="time", batch_size=8, data_dir=str(tmp_path))
    L.seed_everything(0)
    task = AnomalyAutoencoderTask(partial(SequenceAutoencoder, hidden_size=8, latent_dim=4), input_size=1)
    plot = AnomalyScorePlot()
    trainer = tiny_trainer(tmp_path, max_epochs=2, callbacks=[plot])
    trainer.fit(task, data)
    assert "val/loss" in trainer.callback_metrics
    assert "val/auroc" not in trainer.callback_metrics  # the val stretch [144, 192) is all normal
    results = trainer.test(task, datamodule=data, verbose=False)[0]
    assert 0.0 <= results["test/auroc"] <= 1.0
    assert plot.path == tmp_path / "anomaly_scores_test.png"
    width, height = Image.open(plot.path).size
    assert (width, height) == (1000, 500)


def test_plot_needs_an_anomaly_scoring_module(tmp_path) -> None:
    class NoScore(L.LightningModule):
        pass

    with pytest.raises(TypeError, match="AnomalyScorePlot needs a LightningModule with anomaly_score"):
        AnomalyScorePlot().on_test_end(tiny_trainer(tmp_path), NoScore())
