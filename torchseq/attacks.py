"""Adversarial examples: FGSM and PGD, in L∞ and L2, against any classifier that maps inputs to logits.

An adversarial example is an input x' = x + δ with ‖δ‖ ≤ ε that the model misclassifies although δ is
too small to change what the input is. Both attacks follow the gradient of the loss with respect to
the *input* (the parameters stay as they are):

- FGSM (Goodfellow et al. 2015): one step of size ε along the steepest-ascent direction of the norm:
  x' = x + ε·sign(∇ₓL) in L∞, x' = x + ε·∇ₓL/‖∇ₓL‖₂ in L2.
- PGD (Madry et al. 2018): from a random point of the ε-ball, ``steps`` such steps of size α, each
  followed by a projection back onto the ball around x.

Inputs stay inside the data's range (``bounds``, e.g. [0, 1] for pixels) after every step. Works for
images (B, C, H, W) and sequences (B, T, F); for padded sequences pass ``lengths`` and the padding is
never perturbed. :func:`robust_accuracy` measures accuracy under attack for a list of ε.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from torchseq.checks import check_choice, check_positive_int
from torchseq.masks import lengths_mask
from torchseq.modes import evaluating

NORMS = ("linf", "l2")
METHODS = ("fgsm", "pgd")
Bounds = tuple[float, float] | None


# -- the geometry of the two balls ------------------------------------------------------------------
def _per_sample_norm(tensor: Tensor) -> Tensor:
    """L2 norm of each sample over all non-batch dimensions, shaped to broadcast: (B, 1, …, 1)."""
    return tensor.flatten(1).norm(dim=1).view(-1, *([1] * (tensor.dim() - 1)))


def ascent_direction(gradient: Tensor, norm: str) -> Tensor:
    """The unit-norm direction that increases the loss fastest: sign(g) in L∞, g/‖g‖₂ in L2."""
    if norm == "linf":
        return gradient.sign()
    return gradient / _per_sample_norm(gradient).clamp_min(1e-12)


def project(delta: Tensor, epsilon: float, norm: str) -> Tensor:
    """The closest point of the ε-ball to each sample's ``delta``."""
    if norm == "linf":
        return delta.clamp(-epsilon, epsilon)
    return delta * (epsilon / _per_sample_norm(delta).clamp_min(1e-12)).clamp(max=1.0)


def random_in_ball(like: Tensor, epsilon: float, norm: str, generator: torch.Generator | None) -> Tensor:
    """A point drawn uniformly from the ε-ball, per sample."""
    if norm == "linf":
        uniform = torch.rand(like.shape, generator=generator, device=like.device, dtype=like.dtype)
        return (2 * uniform - 1) * epsilon
    # Uniform in the L2 ball: a uniform direction (a normalised Gaussian) at radius ε·U^(1/d).
    direction = torch.randn(like.shape, generator=generator, device=like.device, dtype=like.dtype)
    direction = direction / _per_sample_norm(direction)
    dimensions = like[0].numel()
    radius = torch.rand(like.shape[0], generator=generator, device=like.device, dtype=like.dtype)
    return direction * (epsilon * radius ** (1 / dimensions)).view(-1, *([1] * (like.dim() - 1)))


# -- the attack -----------------------------------------------------------------------------------
@dataclass
class Attack:
    """An untargeted attack: increase the cross-entropy of the true class within the ε-ball.

    Args:
        method: ``"fgsm"`` (one step of size ε, no random start) or ``"pgd"``.
        norm: ``"linf"`` or ``"l2"``: the ball the perturbation stays in.
        steps: PGD iterations.
        step_size: PGD step α as a fraction of ε (α = step_size·ε); the default 2.5/steps lets the
            iterates cross the ball and back (Madry et al.).
        random_start: PGD starts from a random point of the ball rather than from x.
        bounds: the data's range (low, high), enforced after every step; None for unbounded data.
    """

    method: str = "pgd"
    norm: str = "linf"
    steps: int = 10
    step_size: float | None = None
    random_start: bool = True
    bounds: Bounds = (0.0, 1.0)

    def __post_init__(self) -> None:
        check_choice("method", self.method, METHODS)
        check_choice("norm", self.norm, NORMS)
        check_positive_int("steps", self.steps)
        if self.step_size is not None and not self.step_size > 0:
            raise ValueError(f"step_size: expected a positive fraction of epsilon, got {self.step_size!r}")
        if self.bounds is not None:
            low, high = self.bounds
            if not low < high:
                raise ValueError(f"bounds: expected (low, high) with low < high, got {tuple(self.bounds)}")
        if self.method == "fgsm":  # FGSM is exactly one PGD step of size ε from x
            self.steps, self.step_size, self.random_start = 1, 1.0, False

    @property
    def name(self) -> str:
        steps = f"-{self.steps}" if self.method == "pgd" else ""
        return f"{self.method.upper()}{steps} {'L∞' if self.norm == 'linf' else 'L2'}"

    def perturb(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        epsilon: float,
        lengths: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Adversarial inputs for ``model`` (called as ``model(x)`` or ``model(x, lengths)``), no grad."""
        if not epsilon >= 0:
            raise ValueError(f"epsilon: expected a non-negative radius, got {epsilon!r}")
        if x.dim() < 2 or y.shape != x.shape[:1]:
            raise ValueError(f"x, y: expected x (B, …) and class indices y (B,), got shapes "
                             f"{tuple(x.shape)} and {tuple(y.shape)}")
        if self.bounds is not None and (x.min() < self.bounds[0] or x.max() > self.bounds[1]):
            raise ValueError(f"x: expected values within bounds {tuple(self.bounds)}, got "
                             f"{float(x.min()):g}..{float(x.max()):g}")
        x = x.detach()
        if epsilon == 0:
            return x.clone()
        mask = _real_steps(x, lengths)
        alpha = epsilon * (self.step_size if self.step_size is not None else 2.5 / self.steps)
        delta = random_in_ball(x, epsilon, self.norm, generator) if self.random_start else torch.zeros_like(x)
        delta = self._admissible(x, delta * mask, epsilon)
        with _attacking(model):
            for _ in range(self.steps):
                delta.requires_grad_(True)
                logits = model(x + delta) if lengths is None else model(x + delta, lengths)
                loss = F.cross_entropy(logits, y, reduction="sum")
                (gradient,) = torch.autograd.grad(loss, delta)
                step = alpha * ascent_direction(gradient * mask, self.norm)
                delta = self._admissible(x, delta.detach() + step * mask, epsilon)
        return x + delta

    def _admissible(self, x: Tensor, delta: Tensor, epsilon: float) -> Tensor:
        """Project onto the ε-ball, then into the data range (which keeps it inside the ball)."""
        delta = project(delta, epsilon, self.norm)
        if self.bounds is not None:
            delta = (x + delta).clamp(*self.bounds) - x
        return delta


def _real_steps(x: Tensor, lengths: Tensor | None) -> Tensor:
    """1 where an input entry may be perturbed, 0 on padding past each sequence's length."""
    if lengths is None:
        return torch.ones_like(x)
    mask = lengths_mask(lengths, x.shape[1], x.device).to(x.dtype)                 # (B, T)
    return mask.view(*mask.shape, *([1] * (x.dim() - 2))).expand_as(x)


@contextmanager
def _attacking(model: nn.Module) -> Iterator[None]:
    """The model in eval mode with gradients on; cuDNN's fused RNN kernels have no backward in eval mode,
    so cuDNN is off meanwhile."""
    with evaluating(model, gradients=True), torch.backends.cudnn.flags(enabled=False):
        yield


# -- robustness curves ------------------------------------------------------------------------------
@torch.no_grad()
def _correct(model: nn.Module, x: Tensor, y: Tensor, lengths: Tensor | None) -> int:
    logits = model(x) if lengths is None else model(x, lengths)
    return int((logits.argmax(dim=-1) == y).sum())


def robust_accuracy(
    model: nn.Module,
    batches: Iterable[Sequence[Tensor]],
    attack: Attack,
    epsilons: Sequence[float],
    device: torch.device | str | None = None,
    seed: int = 0,
) -> dict[float, float]:
    """Accuracy on ``batches`` of ``(x, y)`` or ``(x, y, lengths)`` under ``attack`` at each ε.

    ε = 0 gives the clean accuracy. Deterministic for a given ``seed`` (PGD's random starts).
    """
    if not epsilons:
        raise ValueError("epsilons: expected at least one radius")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    correct, total = dict.fromkeys(epsilons, 0), 0
    with _attacking(model):
        for batch in batches:
            x, y, *rest = batch
            x, y = x.to(device), y.to(device)
            lengths = rest[0] if rest else None
            total += len(y)
            for epsilon in epsilons:
                adversarial = attack.perturb(model, x, y, epsilon, lengths, generator)
                correct[epsilon] += _correct(model, adversarial, y, lengths)
    return {epsilon: correct[epsilon] / total for epsilon in epsilons}
