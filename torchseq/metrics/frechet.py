r"""Fréchet distance between two image sets in the feature space of any network.

Fit a Gaussian to each set's features (mean μ, covariance Σ) and measure

.. math::
    d^2 = \lVert \mu_1 - \mu_2 \rVert^2 + \operatorname{tr}\bigl(\Sigma_1 + \Sigma_2
          - 2\,(\Sigma_1 \Sigma_2)^{1/2}\bigr)

the squared 2-Wasserstein distance between the two Gaussians. With Inception-v3 features this is the
FID; here the features come from a network of our own (:mod:`torchseq.metrics.mnist_features`), so the
number needs no downloaded weights but is only comparable with numbers computed with the same network.

``torchmetrics``' ``FrechetInceptionDistance`` accepts such a network (``feature=nn.Module``) and keeps
running sums of the features in float64; :class:`FeatureFrechetDistance` merely fixes its options for
[0, 1] float images and a network that announces its ``num_features``.
"""

from __future__ import annotations

from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance


class FeatureFrechetDistance(FrechetInceptionDistance):
    """Fréchet distance in the feature space of ``features`` (images → (B, num_features)).

    ``update(images, real=True/False)`` adds images (float, in whatever range ``features`` expects);
    ``compute()`` returns d². With ``reset_real_features=False`` (the default) ``reset()`` forgets only
    the generated set, so a fixed real reference can be compared with a new sample every epoch.
    """

    def __init__(self, features: nn.Module, reset_real_features: bool = False) -> None:
        if not isinstance(getattr(features, "num_features", None), int):
            raise TypeError(
                f"features: expected a module with an int attribute num_features (its output width), "
                f"got {type(features).__name__} without one"
            )
        super().__init__(feature=features, reset_real_features=reset_real_features, normalize=True)
