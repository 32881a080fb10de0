"""``torchseq gradient-flow``: ‖∂L/∂h_t‖ over t of one-layer RNN, LSTM and GRU regressors.

::

    torchseq gradient-flow --config experiments/gradient_flow.yaml

Measures each cell type under each :class:`Condition` (at initialisation, after training, with W_hh
scaled) with :func:`torchseq.diagnostics.gradient_flow`'s machinery and writes
``gradient_flow.{png,json,md}``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
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
from torchseq.diagnostics import decay_ratio, plot_gradient_flow, recording_states, state_gradient_norms


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
    from torchseq.tasks import RegressionTask

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
            task = RegressionTask(partial(RecurrentClassifier, cell=cell, hidden_size=hidden_size, impl=impl),
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
