"""Autoencoder tasks: image reconstruction, the linear probe, and anomaly scoring with AUROC."""

from __future__ import annotations

from functools import partial

import lightning as L
import pytest
import torch

from tests._tiny_generative import TinyImages, TinyWindows, tiny_trainer
from torchseq.callbacks.linear_probe import LinearProbe
from torchseq.metrics.linear_probe import linear_probe_accuracy
from torchseq.models.autoencoder import Autoencoder
from torchseq.models.sequence_autoencoder import SequenceAutoencoder
from torchseq.tasks.autoencoding import AnomalyAutoencoderTask, AutoencoderTask, window_labels


@pytest.mark.parametrize("architecture", ["dense", "conv"])
def test_image_autoencoder_learns_to_reconstruct(tmp_path, architecture: str) -> None:
    L.seed_everything(0)
    # 16×16 images (the conv trunk needs multiples of 4) in batches of 8: 10 epochs bring the error to
    # 0.30 (conv) and 0.25 (dense) of its start, for a third of the CPU time of 30 epochs at 28×28.
    data = TinyImages(side=16, batch_size=8)
    data.setup()
    model = partial(Autoencoder, architecture=architecture, latent_dim=4, hidden_sizes=(32,))
    task = AutoencoderTask(model, image_shape=data.image_shape)
    images = data.parts["val"].tensors[0]

    def squared_error() -> float:
        with torch.no_grad():
            return (task.reconstruct(images) - images).square().mean().item()

    before = squared_error()
    tiny_trainer(tmp_path, max_epochs=10).fit(task, data)
    assert squared_error() < 0.5 * before


def test_anomaly_auroc_of_a_trivially_separable_set_is_one(tmp_path) -> None:
    L.seed_everything(0)
    task = AnomalyAutoencoderTask(partial(SequenceAutoencoder, hidden_size=8, latent_dim=4), input_size=1)
    trainer = tiny_trainer(tmp_path, max_epochs=2)
    data = TinyWindows()
    trainer.fit(task, data)
    assert trainer.callback_metrics["val/auroc"] == 1.0
    assert trainer.test(task, datamodule=data, verbose=False)[0]["test/auroc"] == 1.0


def test_anomaly_score_is_the_mean_squared_error_per_window() -> None:
    task = AnomalyAutoencoderTask(partial(SequenceAutoencoder, hidden_size=4, latent_dim=2), input_size=2)
    windows = torch.randn(3, 5, 2)
    expected = (task.reconstruct(windows) - windows).square().mean(dim=(1, 2))
    torch.testing.assert_close(task.anomaly_score(windows), expected)


def test_window_labels_mark_a_window_with_any_anomalous_step() -> None:
    assert window_labels(torch.tensor([[0, 0, 1], [0, 0, 0]])).tolist() == [1, 0]
    assert window_labels(torch.tensor([1, 0])).tolist() == [1, 0]
    with pytest.raises(ValueError, match=r"labels: expected shape \(B,\) or \(B, T\), got \(1, 2, 3\)"):
        window_labels(torch.zeros(1, 2, 3))


def test_linear_probe_separates_blobs_and_not_noise() -> None:
    generator = torch.Generator().manual_seed(0)
    centres = 4.0 * torch.eye(3)
    labels = torch.arange(300) % 3
    features = centres[labels] + torch.randn(300, 3, generator=generator)
    assert linear_probe_accuracy(features[:200], labels[:200], features[200:], labels[200:]) > 0.95
    noise = torch.randn(300, 3, generator=generator)
    shuffled = labels[torch.randperm(300, generator=generator)]
    assert linear_probe_accuracy(noise[:200], shuffled[:200], noise[200:], shuffled[200:]) < 0.6


def test_linear_probe_callback_logs_codes_and_inputs(tmp_path) -> None:
    L.seed_everything(0)
    task = AutoencoderTask(partial(Autoencoder, latent_dim=3, hidden_sizes=(16,)))
    trainer = tiny_trainer(tmp_path, max_epochs=1, callbacks=[LinearProbe()])
    data = TinyImages()
    trainer.fit(task, data)
    results = trainer.test(task, datamodule=data, verbose=False)[0]
    assert results["test/probe_acc_inputs"] == 1.0  # the bars are linearly separable pixels
    assert 0.0 <= results["test/probe_acc_codes"] <= 1.0
