"""Linear probe: how linearly separable the classes are in a feature space.

A multinomial logistic regression is fitted to standardised training features and scored on test
features. Comparing the probe on an autoencoder's frozen codes with the same probe on raw pixels
measures what the unsupervised features keep of the label information, the chapter's "feature
extraction" use of autoencoders.

Fitting: full-batch L-BFGS (strong-Wolfe line search) on mean cross-entropy + ``l2``·‖W‖²; features are
standardised with the training mean and standard deviation. Deterministic: zero initial weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def fit_logistic_regression(
    features: Tensor, labels: Tensor, num_classes: int, l2: float = 1e-3, max_iter: int = 200
) -> tuple[Tensor, Tensor]:
    """Weights (num_classes, D) and bias (num_classes,) of an L2-regularised logistic regression."""
    features = features.detach().float()
    weight = torch.zeros(num_classes, features.shape[1], dtype=torch.float32, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=torch.float32, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=max_iter, line_search_fn="strong_wolfe")

    def objective() -> Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(features @ weight.T + bias, labels) + l2 * weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(objective)
    return weight.detach(), bias.detach()


def linear_probe_accuracy(
    train_features: Tensor, train_labels: Tensor, test_features: Tensor, test_labels: Tensor, l2: float = 1e-3
) -> float:
    """Test accuracy of a logistic regression fitted on the training features (N, D) and labels (N,)."""
    with torch.inference_mode(False):  # callable from Lightning's test loop, which runs in inference mode
        train_x, test_x = (
            train_features.flatten(1).clone().float(),
            test_features.flatten(1).clone().float(),
        )
        mean, std = train_x.mean(dim=0), train_x.std(dim=0).clamp(min=1e-6)
        num_classes = int(max(train_labels.max(), test_labels.max())) + 1
        weight, bias = fit_logistic_regression((train_x - mean) / std, train_labels.clone(), num_classes, l2)
        predictions = (((test_x - mean) / std) @ weight.T + bias).argmax(dim=1)
        return float((predictions == test_labels).float().mean())
