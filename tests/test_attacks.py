"""FGSM and PGD: perturbations stay in the ε-ball and the data range, FGSM has its closed form on a linear
model, padding is never touched, and accuracy falls as ε grows on a trained model."""

from __future__ import annotations

import json
from itertools import pairwise

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import Tensor, nn

import torchseq
from torchseq.attacks import Attack, random_in_ball, robust_accuracy
from torchseq.tools.attack import AttackCurve, run_attack_experiment

ATTACKS = [Attack("fgsm", "linf"), Attack("fgsm", "l2"), Attack("pgd", "linf", steps=5),
           Attack("pgd", "l2", steps=5)]


def image_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.Tanh(), nn.Linear(16, 3))


def images(count: int = 8) -> tuple[Tensor, Tensor]:
    x = torch.rand(count, 1, 8, 8)
    x[:, :, 0] = 1.0                           # pixels already at the bounds must stay inside them
    x[:, :, 1] = 0.0
    return x, torch.arange(count) % 3


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda attack: attack.name)
@pytest.mark.parametrize("epsilon", [0.05, 0.5])
def test_perturbation_stays_in_the_ball_and_the_data_range(attack: Attack, epsilon: float) -> None:
    x, y = images()
    adversarial = attack.perturb(image_model(), x, y, epsilon, generator=torch.Generator().manual_seed(0))
    delta = (adversarial - x).flatten(1)
    size = delta.abs().amax(dim=1) if attack.norm == "linf" else delta.norm(dim=1)
    assert (size <= epsilon * (1 + 1e-5)).all()
    assert size.max() > 0.5 * epsilon          # the attack did use its budget
    assert adversarial.min() >= 0 and adversarial.max() <= 1


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_random_start_is_uniform_in_the_ball(norm: str) -> None:
    start = random_in_ball(torch.zeros(2000, 10), 0.3, norm, torch.Generator().manual_seed(0))
    size = start.abs().amax(dim=1) if norm == "linf" else start.norm(dim=1)
    assert (size <= 0.3 + 1e-6).all()
    # Uniform in volume: the fraction inside the ball of radius ε/2 is (1/2)^d, not more.
    assert (size <= 0.15).float().mean() < 0.01


def binary_linear_model(w: Tensor) -> nn.Linear:
    """logits = (0, w·x): for class 0 the loss grows along +w, for class 1 along −w."""
    model = nn.Linear(len(w), 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.stack([torch.zeros_like(w), w]))
    return model


def test_fgsm_on_a_linear_model_is_x_plus_epsilon_sign_w() -> None:
    w = torch.tensor([0.5, -2.0, 3.0, -0.1, 1.0])
    model, x, epsilon = binary_linear_model(w), torch.full((2, 5), 0.5), 0.1
    y = torch.tensor([0, 1])
    linf = Attack("fgsm", "linf").perturb(model, x, y, epsilon)
    torch.testing.assert_close(linf, x + epsilon * torch.stack([w.sign(), -w.sign()]))
    l2 = Attack("fgsm", "l2", bounds=None).perturb(model, x, y, epsilon)
    torch.testing.assert_close(l2, x + epsilon * torch.stack([w, -w]) / w.norm())


def test_fgsm_is_clamped_to_the_data_range() -> None:
    w = torch.tensor([1.0, -1.0])
    adversarial = Attack("fgsm", "linf").perturb(binary_linear_model(w), torch.tensor([[0.95, 0.02]]),
                                                 torch.tensor([0]), 0.1)
    torch.testing.assert_close(adversarial, torch.tensor([[1.0, 0.0]]))


class SequenceClassifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.gru, self.head = torchseq.GRU(3, 8, batch_first=True), nn.Linear(8, 2)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        _, h = self.gru(x, lengths=lengths)
        return self.head(h[-1])


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda attack: attack.name)
def test_padding_of_sequences_is_never_perturbed(attack: Attack) -> None:
    x, lengths = torch.rand(4, 7, 3), torch.tensor([7, 3, 5, 1])
    x[1, 3:] = x[2, 5:] = x[3, 1:] = 0.0
    adversarial = attack.perturb(SequenceClassifier(), x, torch.tensor([0, 1, 0, 1]), 0.2, lengths)
    padding = torch.arange(7).unsqueeze(0) >= lengths.unsqueeze(1)            # (B, T)
    assert (adversarial[padding] == 0).all()
    assert (adversarial[~padding] != x[~padding]).any()


def test_the_model_keeps_its_mode_and_parameters_get_no_gradient() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(64, 3)).train()
    x, y = images()
    Attack("pgd", "linf", steps=2).perturb(model, x, y, 0.1)
    assert model.training
    assert all(parameter.grad is None for parameter in model.parameters())


@pytest.fixture(scope="module")
def trained_blobs_model() -> tuple[nn.Module, list[tuple[Tensor, Tensor]]]:
    """Two classes of points in [0, 1]^20 around 0.35 and 0.65, and a small MLP that separates them.

    Trained once for the module: the attacks leave the model's parameters and mode as they were (tested
    above), so the tests below can share it."""
    generator = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (400,), generator=generator)
    x = (0.35 + 0.3 * y.unsqueeze(1) + 0.15 * torch.randn(400, 20, generator=generator)).clamp(0, 1)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 2))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(100):
        optimizer.zero_grad()
        F.cross_entropy(model(x[:300]), y[:300]).backward()
        optimizer.step()
    return model, [(x[300:350], y[300:350]), (x[350:], y[350:])]


@pytest.mark.parametrize("attack", [Attack("fgsm", "linf"), Attack("pgd", "linf", steps=10)],
                         ids=lambda attack: attack.name)
def test_accuracy_falls_as_epsilon_grows(attack: Attack, trained_blobs_model) -> None:
    model, batches = trained_blobs_model
    epsilons = [0.0, 0.02, 0.05, 0.1, 0.15, 0.2]
    accuracy = robust_accuracy(model, batches, attack, epsilons)
    curve = [accuracy[epsilon] for epsilon in epsilons]
    assert curve[0] > 0.9                      # the model did learn
    assert all(later <= earlier for earlier, later in pairwise(curve))
    assert curve[-1] < 0.5 * curve[0]


def test_pgd_is_at_least_as_strong_as_fgsm(trained_blobs_model) -> None:
    model, batches = trained_blobs_model
    fgsm = robust_accuracy(model, batches, Attack("fgsm", "linf"), [0.1])
    pgd = robust_accuracy(model, batches, Attack("pgd", "linf", steps=10), [0.1])
    assert pgd[0.1] <= fgsm[0.1]


def test_errors_are_clear() -> None:
    with pytest.raises(ValueError, match=r"method: expected one of \('fgsm', 'pgd'\), got 'cw'"):
        Attack("cw")
    with pytest.raises(ValueError, match=r"norm: expected one of \('linf', 'l2'\)"):
        Attack(norm="l1")
    with pytest.raises(ValueError, match="steps: expected a positive int"):
        Attack(steps=0)
    with pytest.raises(ValueError, match="step_size: expected a positive fraction"):
        Attack(step_size=0.0)
    with pytest.raises(ValueError, match=r"bounds: expected \(low, high\) with low < high, got \(1.0, 0.0\)"):
        Attack(bounds=(1.0, 0.0))
    x, y, model = *images(), image_model()
    with pytest.raises(ValueError, match="epsilon: expected a non-negative radius"):
        Attack().perturb(model, x, y, -0.1)
    with pytest.raises(ValueError, match=r"x, y: expected x \(B, …\) and class indices y \(B,\)"):
        Attack().perturb(model, x, y[:3], 0.1)
    with pytest.raises(ValueError, match=r"x: expected values within bounds \(0.0, 1.0\), got 0..2"):
        Attack().perturb(model, 2 * x, y, 0.1)
    with pytest.raises(ValueError, match="epsilons: expected at least one radius"):
        robust_accuracy(model, [(x, y)], Attack(), [])


def test_the_experiment_trains_attacks_and_reports(tmp_path) -> None:
    fit_config = tmp_path / "digits_gru.yaml"
    fit_config.write_text(yaml.safe_dump({
        "seed_everything": 0,
        "trainer": {"max_epochs": 3, "enable_progress_bar": False,
                    "logger": {"class_path": "lightning.pytorch.loggers.CSVLogger",
                               "init_args": {"save_dir": str(tmp_path / "runs")}}},
        "checkpoint": {"monitor": "val/acc", "mode": "max"},
        "model": {"class_path": "torchseq.tasks.Classification", "init_args": {"model": {
            "class_path": "torchseq.models.RecurrentClassifier",
            "init_args": {"cell": "gru", "hidden_size": 16}}}},
        "data": {"class_path": "torchseq.data.DigitsDataModule", "init_args": {"batch_size": 64}},
        "optimizer": {"class_path": "torch.optim.Adam", "init_args": {"lr": 0.02}},
    }))
    curves = [AttackCurve("fgsm", "linf", epsilons=[0.0, 0.1, 0.3]),
              AttackCurve("pgd", "l2", steps=2, epsilons=[0.0, 1.0])]
    trained = run_attack_experiment(str(fit_config), curves, max_batches=2, output_dir=str(tmp_path / "a"))
    assert set(trained) == {"FGSM L∞", "PGD-2 L2"}
    assert trained["FGSM L∞"][0.0] == trained["PGD-2 L2"][0.0] > 0.5       # the same clean accuracy
    assert trained["FGSM L∞"][0.3] < trained["FGSM L∞"][0.0]
    written = {path.name for path in (tmp_path / "a").iterdir()}
    assert written >= {"robust_accuracy.png", "robust_accuracy.md", "robust_accuracy.json"}

    # Attacking the saved checkpoint again (no training) gives the same numbers.
    checkpoint = json.loads((tmp_path / "a" / "robust_accuracy.json").read_text())["checkpoint"]
    again = run_attack_experiment(str(fit_config), curves, checkpoint=checkpoint, max_batches=2,
                                  output_dir=str(tmp_path / "b"))
    assert again == trained
