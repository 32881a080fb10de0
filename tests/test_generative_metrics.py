"""Fréchet distance (closed forms), class coverage and the frozen feature network."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torchseq.metrics.class_coverage import ClassCoverage
from torchseq.metrics.frechet import FeatureFrechetDistance
from torchseq.metrics.mnist_features import FrozenFeatures, MNISTFeatureNet


class Flatten(nn.Module):
    """Identity features: the Fréchet distance of the inputs themselves."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


def frechet(real: torch.Tensor, fake: torch.Tensor) -> float:
    metric = FeatureFrechetDistance(Flatten(real.shape[1]))
    metric.update(real, real=True)
    metric.update(fake, real=False)
    return float(metric.compute())


def test_a_distribution_is_at_distance_zero_from_itself() -> None:
    samples = torch.randn(500, 6, generator=torch.Generator().manual_seed(0)) @ torch.randn(6, 6)
    assert frechet(samples, samples) == pytest.approx(0.0, abs=1e-6)


def test_shifted_and_scaled_gaussians_match_the_closed_form() -> None:
    """X = a·Z and Y = b·Z + δ have covariances a²S and b²S, so d² = ‖δ‖² + (a − b)²·tr S exactly."""
    z = torch.randn(400, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    z = z - z.mean(dim=0)  # sample mean exactly 0, so the means differ by exactly δ
    a, b, delta = 1.5, 0.5, torch.tensor([1.0, -2.0, 0.0, 0.5, 3.0], dtype=torch.float64)
    trace = torch.cov(z.T).trace().item()  # unbiased (N − 1), as the metric estimates it
    expected = delta.square().sum().item() + (a - b) ** 2 * trace
    assert frechet(a * z, b * z + delta) == pytest.approx(expected, rel=1e-6)


def test_fake_set_resets_but_real_reference_stays() -> None:
    generator = torch.Generator().manual_seed(2)
    real, near, far = (torch.randn(300, 3, generator=generator) + shift for shift in (0.0, 0.0, 4.0))
    metric = FeatureFrechetDistance(Flatten(3))
    metric.update(real, real=True)
    metric.update(far, real=False)
    distance_far = float(metric.compute())
    metric.reset()
    metric.update(near, real=False)
    assert float(metric.compute()) < 0.2 < 40.0 < distance_far


def test_frechet_needs_the_feature_width() -> None:
    with pytest.raises(TypeError, match=r"features: expected a module with an int attribute num_features"):
        FeatureFrechetDistance(nn.Flatten())


def test_class_coverage() -> None:
    coverage = ClassCoverage(num_classes=10)
    coverage.update(torch.arange(100) % 10)
    assert coverage.compute().item() == 1.0
    coverage = ClassCoverage(num_classes=10)
    coverage.update(torch.full((50,), 3))
    assert coverage.compute().item() == pytest.approx(0.1)
    coverage = ClassCoverage(num_classes=10)  # class 9 has 1 % of the samples: below half its 10 %
    coverage.update(torch.cat([torch.arange(99) % 9, torch.tensor([9])]))
    assert coverage.compute().item() == pytest.approx(0.9)
    logits = torch.nn.functional.one_hot(torch.tensor([0, 1]), 10).float()
    coverage = ClassCoverage(num_classes=10)
    coverage.update(logits)
    torch.testing.assert_close(coverage.shares()[:3], torch.tensor([0.5, 0.5, 0.0], dtype=torch.float64))


def test_class_coverage_checks_its_input() -> None:
    with pytest.raises(ValueError, match=r"predictions: expected labels in 0..9, got 0..12"):
        ClassCoverage(num_classes=10).update(torch.tensor([0, 12]))
    with pytest.raises(ValueError, match=r"predictions: expected logits \(B, 10\), got \(2, 3\)"):
        ClassCoverage(num_classes=10).update(torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"num_classes: expected at least 2 classes"):
        ClassCoverage(num_classes=1)


def test_frozen_features_stay_in_eval_mode_without_gradients() -> None:
    features = FrozenFeatures(MNISTFeatureNet())
    parent = nn.ModuleDict({"features": features}).train()
    assert not features.training and not features.net.training
    assert not any(parameter.requires_grad for parameter in features.parameters())
    images = torch.rand(2, 1, 28, 28)
    assert features(images).shape == (2, features.num_features)
    assert features.logits(images).shape == (2, 10)
    assert parent.training


def test_nearest_neighbour_distances_find_copies_and_measure_new_points() -> None:
    from torchseq.metrics.memorisation import nearest_neighbour_distances

    generator = torch.Generator().manual_seed(0)
    training = torch.rand(50, 1, 4, 4, generator=generator)
    copies = training[[3, 7, 7]]
    assert nearest_neighbour_distances(copies, training).tolist() == [0.0, 0.0, 0.0]
    shifted = training[:2].clone()
    far = torch.full((1, 1, 4, 4), 10.0)
    expected = (training.flatten(1).double() - 10.0).norm(dim=1).min()
    torch.testing.assert_close(nearest_neighbour_distances(far, training, chunk=1)[0], expected)
    shifted[0, 0, 0, 0] += 0.001  # a near copy: its distance is that nudge, if nothing is closer
    assert nearest_neighbour_distances(shifted, training)[0] <= 0.001 + 1e-12
    with pytest.raises(
        ValueError, match=r"queries: expected images of shape \(1, 4, 4\) like the references"
    ):
        nearest_neighbour_distances(torch.rand(2, 16), training)


def test_training_the_feature_net_leaves_the_callers_random_state_alone() -> None:
    # A GAN run trains the net on its first use of a metric; its own draws must not depend on the cache.
    from torchseq.metrics.mnist_features import train_feature_net

    torch.manual_seed(123)
    expected = torch.rand(4)
    torch.manual_seed(123)
    _, test_accuracy = train_feature_net(epochs=1)
    assert torch.equal(torch.rand(4), expected)
    assert test_accuracy > 0.5  # one epoch of a convnet on 3,500 digits: far above chance (0.1)
