"""The PNG callbacks and the per-epoch sample-quality callback, on tiny runs."""

from __future__ import annotations

from functools import partial

import lightning as L
import pytest
import torch
from PIL import Image

from tests._tiny_generative import TinyImages, tiny_trainer
from torchseq.callbacks.image_grids import LatentInterpolation, LatentManifold, ReconstructionGrid, SampleGrid
from torchseq.callbacks.latent_scatter import LatentScatter, project_2d
from torchseq.callbacks.sample_quality import SampleQuality
from torchseq.metrics.mnist_features import MNISTFeatureNet
from torchseq.models.vae import VAE
from torchseq.tasks.vae import VAETask


def test_vae_run_writes_every_figure_each_epoch(tmp_path) -> None:
    L.seed_everything(0)
    task = VAETask(partial(VAE, latent_dim=2, hidden_sizes=(16,)))
    callbacks = [
        SampleGrid(num_samples=16, nrow=4),
        ReconstructionGrid(num_images=8, nrow=4),
        LatentInterpolation(num_pairs=2, steps=5),
        LatentScatter(),
    ]
    tiny_trainer(tmp_path, max_epochs=2, callbacks=callbacks).fit(task, TinyImages())
    for folder in ("samples", "reconstructions", "interpolation", "latent"):
        assert sorted(path.name for path in (tmp_path / folder).iterdir()) == [
            "epoch_000.png",
            "epoch_001.png",
        ]
    # torchvision grids: 2-pixel padding around 28-pixel tiles
    assert Image.open(tmp_path / "samples" / "epoch_001.png").size == (4 * 30 + 2, 4 * 30 + 2)
    assert Image.open(tmp_path / "reconstructions" / "epoch_001.png").size == (4 * 30 + 2, 4 * 30 + 2)
    assert Image.open(tmp_path / "interpolation" / "epoch_001.png").size == (5 * 30 + 2, 2 * 30 + 2)


def test_sample_grid_uses_the_same_noise_every_epoch(tmp_path) -> None:
    task = VAETask(partial(VAE, latent_dim=2, hidden_sizes=(8,)))
    grid = SampleGrid(num_samples=4, seed=3)
    tiny_trainer(tmp_path, max_epochs=1, callbacks=[grid]).fit(task, TinyImages())
    torch.testing.assert_close(grid.noise, torch.randn(4, 2, generator=torch.Generator().manual_seed(3)))


def test_wide_codes_are_projected_on_principal_components() -> None:
    codes = torch.randn(50, 6, generator=torch.Generator().manual_seed(0))
    points, names = project_2d(codes)
    assert points.shape == (50, 2) and names == ("PC 1 of z", "PC 2 of z")
    centred = codes - codes.mean(dim=0)
    assert points.var(dim=0).sum() <= centred.var(dim=0).sum() + 1e-5
    assert points[:, 0].var() >= points[:, 1].var()
    flat, _ = project_2d(codes[:, :2])
    torch.testing.assert_close(flat, codes[:, :2])


def untrained_feature_net(folder) -> str:
    """A randomly initialised MNISTFeatureNet saved where SampleQuality loads it (no 6-epoch training)."""
    path = folder / "feature_net.pt"
    net = MNISTFeatureNet()
    torch.save({"state_dict": net.state_dict(), "test_accuracy": 0.0, "num_features": net.num_features}, path)
    return str(path)


def test_sample_quality_logs_distance_coverage_and_the_real_floor(tmp_path) -> None:
    torch.manual_seed(0)
    net_path = untrained_feature_net(tmp_path)  # untrained is enough to exercise the plumbing
    L.seed_everything(0)
    task = VAETask(partial(VAE, latent_dim=2, hidden_sizes=(8,)))
    trainer = tiny_trainer(tmp_path, max_epochs=1, callbacks=[SampleQuality(net_path, batch_size=16)])
    trainer.fit(task, TinyImages())
    metrics = trainer.callback_metrics
    assert metrics["val/fd"] > metrics["val/fd_real_floor"] >= 0
    for name in ("val/class_coverage", "val/class_coverage_real"):
        assert 0.0 <= metrics[name] <= 1.0


class LabelSortedImages(TinyImages):
    """Validation images sorted by label, like MNIST-5k's stratified split (sorted indices)."""

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        images, labels = self.parts["val"].tensors
        order = labels.argsort(stable=True)
        self.parts["val"] = torch.utils.data.TensorDataset(images[order], labels[order])


def test_figures_show_one_image_of_each_label_first(tmp_path) -> None:
    task = VAETask(partial(VAE, latent_dim=2, hidden_sizes=(8,)))
    grid = ReconstructionGrid(num_images=8, nrow=4)
    data = LabelSortedImages(num_classes=4)
    tiny_trainer(tmp_path, max_epochs=1, callbacks=[grid], num_sanity_val_steps=1).fit(task, data)
    band = 28 // data.num_classes
    bar_labels = (grid.images[:, 0].mean(dim=2).argmax(dim=1) // band).tolist()  # where the bright bar is
    assert bar_labels[:4] == [0, 1, 2, 3]
    assert len(grid.images) == 8


def test_sample_quality_measures_the_test_split_with_fresh_noise(tmp_path) -> None:
    torch.manual_seed(0)
    net_path = untrained_feature_net(tmp_path)
    L.seed_everything(0)
    task = VAETask(partial(VAE, latent_dim=2, hidden_sizes=(8,)))
    quality = SampleQuality(net_path, batch_size=16, seed=5)
    trainer = tiny_trainer(tmp_path, max_epochs=1, callbacks=[quality])
    data = TinyImages()
    trainer.fit(task, data)
    trainer.test(task, data)
    metrics = trainer.callback_metrics
    assert metrics["test/fd"] > metrics["test/fd_real_floor"] >= 0
    assert 0.0 <= metrics["test/min_class_share"] <= 1 / 10  # the rarest of 10 digits holds ≤ 1/10
    assert metrics["test/nn_distance_real"] > 0 and metrics["test/nn_distance"] > 0  # no copies here
    assert metrics["test/nn_feature_distance_real"] > 0 and metrics["test/nn_feature_distance"] > 0
    shares = torch.stack([metrics[f"test/class_share_{digit}"] for digit in range(10)])
    assert float(shares.sum()) == pytest.approx(1.0) and float(shares.min()) == pytest.approx(
        float(metrics["test/min_class_share"])
    )
    assert metrics["test/class_coverage_real"] == quality.test_floor["test/class_coverage_real"]
    assert len(quality.test_noise) == len(data.parts["test"])  # as many samples as test images
    torch.testing.assert_close(
        quality.test_noise, torch.randn(48, 2, generator=torch.Generator().manual_seed(6))
    )
    assert not torch.equal(quality.test_noise, quality.noise)


class CopiesTrainingImages(L.LightningModule):
    """A "generator" that returns training images: the memorisation check must read 0 for it."""

    latent_dim = 2

    def __init__(self, images: torch.Tensor) -> None:
        super().__init__()
        self.images = images

    def sample(self, noise: torch.Tensor) -> torch.Tensor:
        return self.images[torch.arange(len(noise)) % len(self.images)]

    def test_step(self, batch, batch_idx) -> None:
        pass


def test_memorisation_check_reads_zero_for_a_generator_that_copies_training_images(tmp_path) -> None:
    torch.manual_seed(0)
    net_path = untrained_feature_net(tmp_path)
    data = TinyImages()
    data.setup()
    copier = CopiesTrainingImages(data.parts["train"].tensors[0])
    trainer = tiny_trainer(tmp_path, callbacks=[SampleQuality(net_path, batch_size=16)])
    trainer.test(copier, data)
    metrics = trainer.callback_metrics
    # zero up to cdist's rounding (it expands ‖a − b‖² into a matrix product)
    assert float(metrics["test/nn_distance"]) == pytest.approx(0.0, abs=1e-5)
    assert float(metrics["test/nn_feature_distance"]) == pytest.approx(0.0, abs=1e-5)
    assert metrics["test/nn_distance_real"] > 0 and metrics["test/nn_feature_distance_real"] > 0


def test_latent_manifold_decodes_a_quantile_grid_of_the_2d_prior(tmp_path) -> None:
    manifold = LatentManifold(n=5, edge=0.1)
    codes = manifold.codes()
    quantile = float(torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(0.9)))  # Φ⁻¹(0.9) ≈ 1.2816
    torch.testing.assert_close(codes[0], torch.tensor([-quantile, quantile]))  # top left: z₁ low, z₂ high
    torch.testing.assert_close(codes[-1], torch.tensor([quantile, -quantile]))  # bottom right
    torch.testing.assert_close(codes[12], torch.zeros(2), atol=1e-6, rtol=0)  # the centre is the mean
    L.seed_everything(0)
    task = VAETask(partial(VAE, latent_dim=2, hidden_sizes=(8,)))
    tiny_trainer(tmp_path, max_epochs=1, callbacks=[manifold]).fit(task, TinyImages())
    assert Image.open(tmp_path / "manifold" / "epoch_000.png").size == (5 * 28, 5 * 28)
    wide = VAETask(partial(VAE, latent_dim=3, hidden_sizes=(8,)))
    with pytest.raises(ValueError, match="LatentManifold: expected a 2-D latent space, got latent_dim=3"):
        manifold.on_fit_start(tiny_trainer(tmp_path), wide)
