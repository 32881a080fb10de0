"""Gradient flow through time: how large is ‖∂L/∂h_t‖ at every step t of a recurrent model?

Backpropagation through time multiplies the gradient by one Jacobian ∂h_t/∂h_{t-1} per step. When
those products shrink, ‖∂L/∂h_t‖ decays geometrically as t moves away from the loss (vanishing
gradients: early inputs cannot be learned); when they grow, it explodes. Plotting the norm against t
on a log scale shows which of the two a model is in.

The gradient we want is the *total* one — through every later step, not only the direct path to the
loss — so taking ``autograd.grad`` with respect to a layer's stacked output sequence is not enough
(for a loss on the last step it is zero everywhere else). :func:`recording_states` keeps the very
state tensors the recurrence consumed, and ``autograd.grad`` with respect to those is ∂L/∂h_t.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

import torch
from torch import Tensor, nn

from torchseq.cells import RecurrentCell
from torchseq.kernels import kernels_enabled
from torchseq.recurrent import RecurrentLayers


@contextmanager
def recording_states(module: nn.Module) -> Iterator[dict[str, list[Tensor]]]:
    """Record h_t of every step of every torchseq cell in ``module`` during the ``with`` block.

    Yields ``{cell path: [h_1, …, h_T]}`` (in the order the cell ran: a reverse direction starts at T),
    filled as forward passes run. Meanwhile every layer runs the step-by-step reference path (same
    parameters, same maths): torch's fused kernels and torchseq's own hand-derived-BPTT kernels keep
    their per-step states to themselves.
    """
    cells = {name: cell for name, cell in module.named_modules() if isinstance(cell, RecurrentCell)}
    if not cells:
        raise ValueError(f"module: expected a module containing torchseq cells, got {type(module).__name__}")
    record: dict[str, list[Tensor]] = {name: [] for name in cells}
    with ExitStack() as stack:
        stack.enter_context(kernels_enabled(False))
        for layer in module.modules():
            if isinstance(layer, RecurrentLayers):
                stack.enter_context(_impl(layer, "custom"))
        for name, cell in cells.items():
            stack.enter_context(_recording(cell, record[name]))
        yield record


@contextmanager
def _impl(layer: RecurrentLayers, impl: str) -> Iterator[None]:
    previous = layer.impl
    layer.impl = impl
    try:
        yield
    finally:
        layer.impl = previous


@contextmanager
def _recording(cell: RecurrentCell, states: list[Tensor]) -> Iterator[None]:
    # ``recur`` is a method, not a module's forward, so no hook sees it: shadow it on the instance
    # for the duration of the block. The recorded tensors are the ones the next step consumes.
    recur = cell.recur

    def recording_recur(projected_input: Tensor, state):
        new_state = recur(projected_input, state)
        states.append(cell.hidden(new_state))
        return new_state

    cell.recur = recording_recur  # type: ignore[method-assign]
    try:
        yield
    finally:
        del cell.recur


def state_gradient_norms(loss: Tensor, states: Mapping[str, Sequence[Tensor]]) -> dict[str, Tensor]:
    """``{cell path: (T,) tensor}`` of ‖∂L/∂h_t‖₂, each the mean over the batch of per-sequence norms.

    A state the loss does not depend on (e.g. a step after the last one the loss reads) has gradient 0.
    """
    if loss.dim() != 0:
        raise ValueError(f"loss: expected a scalar, got shape {tuple(loss.shape)}")
    names = [name for name, steps in states.items() if steps]
    if not names:
        raise ValueError("states: nothing was recorded; run the forward pass inside recording_states()")
    flat = [h for name in names for h in states[name]]
    gradients = torch.autograd.grad(loss, flat, allow_unused=True, materialize_grads=True)
    norms = torch.stack([g.norm(dim=-1).mean() for g in gradients])
    return dict(zip(names, norms.split([len(states[name]) for name in names]), strict=True))


def gradient_flow(model: nn.Module, loss_fn: Callable[[nn.Module], Tensor]) -> dict[str, Tensor]:
    """‖∂L/∂h_t‖ over t for each cell of ``model``, with L = ``loss_fn(model)`` (one forward pass).

    Parameters get no ``.grad``: only the states are differentiated.
    """
    with recording_states(model) as states:
        loss = loss_fn(model)
    return state_gradient_norms(loss, states)


def decay_ratio(norms: Tensor) -> float:
    """‖∂L/∂h_1‖ / ‖∂L/∂h_T‖: ≪ 1 means vanishing, ≫ 1 exploding gradients (for a loss at step T)."""
    return float(norms[0] / norms[-1])


def plot_gradient_flow(panels: Mapping[str, Mapping[str, Tensor]], path: str | Path) -> Path:
    """Save a PNG: one panel per entry of ``panels`` (title → {curve label → (T,) norms}), log y axis."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False, sharey=True)
    for axis, (title, curves) in zip(axes[0], panels.items(), strict=True):
        for label, norms in curves.items():
            steps = torch.arange(1, len(norms) + 1)
            # Zero (underflowed) norms cannot be drawn on a log axis; they are left out of the line.
            values = norms.detach().double().cpu()
            axis.semilogy(steps[values > 0], values[values > 0], label=label)
        axis.set_title(title)
        axis.set_xlabel("time step t")
        axis.grid(True, which="major", alpha=0.3)
        axis.legend()
    axes[0][0].set_ylabel("‖∂L/∂h_t‖ (batch mean)")
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
