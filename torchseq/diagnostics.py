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

import copy
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import torch
from jsonargparse import auto_cli
from rich.console import Console
from torch import Tensor, nn

from torchseq.cells import RecurrentCell
from torchseq.data.base import SplitDataModule
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


# -- the chapter's experiment: RNN vs LSTM vs GRU on one task ---------------------------------------
@dataclass
class Condition:
    """How the models are prepared before their gradient flow is measured.

    Args:
        name: the panel's title and the table's column.
        train_steps: Adam steps (the task's default optimiser) on the training split first; 0 measures
            at initialisation.
        recurrent_scale: multiply every recurrent matrix W_hh by this after initialisation; > 1 pushes
            the Jacobians' norms above 1, towards exploding gradients.
    """

    name: str
    train_steps: int = 0
    recurrent_scale: float = 1.0


DEFAULT_CONDITIONS = (Condition("at initialisation"), Condition("W_hh × 3", recurrent_scale=3.0))


def run_gradient_flow(
    data: SplitDataModule,
    cells: Sequence[str] = ("rnn", "lstm", "gru"),
    conditions: Sequence[Condition] = DEFAULT_CONDITIONS,
    hidden_size: int = 64,
    impl: str = "fused",
    seed: int = 0,
    output_dir: str = "runs/gradient_flow",
) -> dict[str, dict[str, dict[str, Any]]]:
    """Measure ‖∂L/∂h_t‖ of one-layer RNN, LSTM and GRU regressors on ``data`` (a regression data
    module, e.g. the adding problem) under each condition; write a PNG, a JSON and a Markdown table.

    Every model of a cell type starts from the same seeded initialisation in every condition. The
    measurement runs in float64 on the first validation batch, so that even 1e-30 does not underflow.
    ``impl`` is the path used for training (the measurement always steps the cells one by one).

    Returns ``{condition: {cell: {"norms": [...], "ratio": h_1/h_T, "mse": loss on the batch}}}``.
    """
    from torchseq.models import RecurrentClassifier
    from torchseq.tasks import Regression

    if data.num_classes != 0:
        raise ValueError(f"data: expected a regression data module (num_classes=0), got "
                         f"{type(data).__name__} with num_classes={data.num_classes}")
    data.setup("fit")
    x, y, *_ = next(iter(data.val_dataloader()))
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for condition in conditions:
        results[condition.name] = {}
        for cell in cells:
            L.seed_everything(seed, verbose=False)
            task = Regression(partial(RecurrentClassifier, cell=cell, hidden_size=hidden_size, impl=impl),
                              input_size=data.input_size)
            scale_recurrent_weights_(task, condition.recurrent_scale)
            if condition.train_steps:
                trainer = L.Trainer(max_steps=condition.train_steps, logger=False, enable_checkpointing=False,
                                    limit_val_batches=0, enable_model_summary=False, accelerator="cpu")
                trainer.fit(task, datamodule=data)
            norms, loss = _measure_in_float64(task, x, y)
            results[condition.name][cell] = {
                "norms": norms.tolist(), "ratio": decay_ratio(norms), "mse": loss,
            }
    write_gradient_flow_report(results, Path(output_dir), type(data).__name__, data.sequence_length)
    return results


def scale_recurrent_weights_(module: nn.Module, scale: float) -> None:
    """Multiply W_hh of every torchseq cell in ``module`` by ``scale``, in place."""
    with torch.no_grad():
        for cell in module.modules():
            if isinstance(cell, RecurrentCell):
                cell.weight_hh.mul_(scale)


def _measure_in_float64(task: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, float]:
    """The gradient flow of a one-layer task's loss on (x, y), and that loss, on a float64 copy."""
    model = copy.deepcopy(task).double().eval()
    with recording_states(model) as states:
        loss = model.loss(model(x.double()), y.double())
    (norms,) = state_gradient_norms(loss, states).values()
    return norms, float(loss.detach())


def write_gradient_flow_report(
    results: Mapping[str, Mapping[str, Mapping[str, Any]]], output_dir: Path, data_name: str, steps: int
) -> None:
    """``gradient_flow.png``, ``gradient_flow.json`` and ``gradient_flow.md`` in ``output_dir``."""
    output_dir.mkdir(parents=True, exist_ok=True)
    panels = {condition: {cell.upper(): torch.tensor(entry["norms"]) for cell, entry in by_cell.items()}
              for condition, by_cell in results.items()}
    plot_gradient_flow(panels, output_dir / "gradient_flow.png")
    (output_dir / "gradient_flow.json").write_text(json.dumps(results, indent=1))
    conditions = list(results)
    cells = list(next(iter(results.values())))
    lines = [f"‖∂L/∂h_1‖ / ‖∂L/∂h_T‖ on {data_name} (T = {steps}); ≪ 1: vanishing, ≫ 1: exploding. "
             f"In brackets: the MSE on the measured batch.", "",
             "| model | " + " | ".join(conditions) + " |", "|---" * (len(conditions) + 1) + "|"]
    for cell in cells:
        row = [f"{results[c][cell]['ratio']:.2e} ({results[c][cell]['mse']:.3f})" for c in conditions]
        lines.append(f"| {cell.upper()} | " + " | ".join(row) + " |")
    table = "\n".join(lines) + "\n"
    (output_dir / "gradient_flow.md").write_text(table)
    Console().print(table)
    Console().print(f"written: {output_dir / 'gradient_flow.png'}, .json, .md")


def main(args: Sequence[str] | None = None) -> None:
    """``torchseq gradient-flow --config experiments/gradient_flow.yaml`` (see :func:`run_gradient_flow`)."""
    auto_cli(run_gradient_flow, args=args, prog="torchseq gradient-flow")


if __name__ == "__main__":
    main()
