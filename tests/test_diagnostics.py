"""Gradient flow: the recorded ∂L/∂h_t is the total derivative through time, checked in closed form."""

from __future__ import annotations

import math
from functools import partial

import lightning as L
import pytest
import torch
from torch import nn

import torchseq
from torchseq.callbacks.gradient_flow import GradientFlowPlot
from torchseq.data import AddingProblemDataModule, CopyTaskDataModule
from torchseq.diagnostics import (
    decay_ratio,
    gradient_flow,
    plot_gradient_flow,
    recording_states,
    state_gradient_norms,
)
from torchseq.models import RecurrentClassifier
from torchseq.tasks import RegressionTask
from torchseq.tools.gradient_flow import Condition, run_gradient_flow


def rnn_with_recurrent_matrix(matrix: torch.Tensor) -> torchseq.RNN:
    """A one-unit-input tanh RNN with W_hh = ``matrix``, no biases, float64."""
    hidden = matrix.shape[0]
    rnn = torchseq.RNN(1, hidden, bias=False, batch_first=True, dtype=torch.float64)
    with torch.no_grad():
        rnn.cells[0].weight_hh.copy_(matrix)
    return rnn


def test_gradients_match_the_chain_rule_through_time() -> None:
    torch.manual_seed(0)
    rnn = torchseq.RNN(3, 4, batch_first=True, dtype=torch.float64)
    readout = torch.randn(4, dtype=torch.float64)
    x = torch.randn(1, 5, 3, dtype=torch.float64)
    with recording_states(rnn) as states:
        output, _ = rnn(x)
        loss = output[0, -1] @ readout                                   # L = w·h_T
    norms = state_gradient_norms(loss, states)["stack.layers.0.cell"]

    # By hand: ∂L/∂h_T = w, and ∂L/∂h_{t-1} = W_hhᵀ ((1 − h_t²) ⊙ ∂L/∂h_t).
    w_hh, h = rnn.cells[0].weight_hh.detach(), output[0].detach()
    expected = [readout]
    for t in range(4, 0, -1):
        expected.insert(0, w_hh.T @ ((1 - h[t] ** 2) * expected[0]))
    torch.testing.assert_close(norms, torch.stack([g.norm() for g in expected]))


@pytest.mark.parametrize("scale", [0.5, 1.5])
def test_linear_regime_decays_or_grows_as_the_recurrent_scale_to_the_power_t(scale: float) -> None:
    # Zero input and state keep tanh at 0, where tanh' = 1: ∂L/∂h_t = (sI)^(T−t) ∂L/∂h_T exactly.
    steps = 20
    rnn = rnn_with_recurrent_matrix(scale * torch.eye(3, dtype=torch.float64))
    zeros = torch.zeros(2, steps, 1, dtype=torch.float64)
    norms = gradient_flow(rnn, lambda model: model(zeros)[0][:, -1].sum())
    (curve,) = norms.values()
    assert curve.shape == (steps,)
    assert decay_ratio(curve) == pytest.approx(scale ** (steps - 1), rel=1e-12)
    assert (decay_ratio(curve) < 1) == (scale < 1)


def test_every_cell_of_a_stack_and_every_kind_is_recorded() -> None:
    torch.manual_seed(0)
    model = nn.ModuleDict({
        "lstm": torchseq.LSTM(2, 3, num_layers=2, batch_first=True),
        "gru": torchseq.GRU(2, 3, batch_first=True, bidirectional=True),
    })
    x = torch.randn(4, 6, 2)

    def loss_fn(m: nn.ModuleDict) -> torch.Tensor:
        return m["lstm"](x)[0][:, -1].sum() + m["gru"](x)[0].sum()

    norms = gradient_flow(model, loss_fn)
    assert set(norms) == {"lstm.stack.layers.0.cell", "lstm.stack.layers.1.cell",
                          "gru.stack.layers.0.forward_layer.cell", "gru.stack.layers.0.backward_layer.cell"}
    assert all(curve.shape == (6,) and bool((curve > 0).all()) for curve in norms.values())


def test_fused_layers_are_measured_with_their_own_parameters_and_restored() -> None:
    torch.manual_seed(0)
    lstm = torchseq.LSTM(2, 3, batch_first=True, impl="fused")
    x = torch.randn(2, 4, 2)
    with recording_states(lstm) as states:
        assert lstm.impl == "custom"
        output, _ = lstm(x)
    assert lstm.impl == "fused"
    assert "recur" not in vars(lstm.cells[0])          # the method is no longer shadowed
    torch.testing.assert_close(torch.stack(states["stack.layers.0.cell"], dim=1), output)
    assert lstm.cells[0].weight_hh.grad is None        # parameters are not differentiated


def test_states_the_loss_ignores_have_zero_gradient() -> None:
    rnn = torchseq.RNN(1, 2, batch_first=True)
    norms = gradient_flow(rnn, lambda model: model(torch.ones(1, 3, 1))[0][:, 0].sum())
    assert (norms["stack.layers.0.cell"][1:] == 0).all()


def test_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="module: expected a module containing torchseq cells"), \
            recording_states(nn.Linear(2, 2)):
        pass
    rnn = torchseq.RNN(1, 2, batch_first=True)
    with recording_states(rnn) as states:
        output, _ = rnn(torch.ones(1, 3, 1))
    with pytest.raises(ValueError, match=r"loss: expected a scalar, got shape \(1, 3, 2\)"):
        state_gradient_norms(output, states)
    with pytest.raises(ValueError, match="states: nothing was recorded"):
        state_gradient_norms(output.sum(), {"cell": []})


def test_plot_writes_a_png(tmp_path) -> None:
    curves = {"RNN": torch.tensor([1e-8, 1e-4, 0.0, 1.0]), "LSTM": torch.tensor([0.1, 0.3, 0.5, 1.0])}
    path = plot_gradient_flow({"at init": curves, "scaled": curves}, tmp_path / "flow.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_callback_plots_one_curve_per_epoch_and_logs_the_ratio(tmp_path) -> None:
    data = AddingProblemDataModule(sequence_length=6, train_size=16, val_size=8, test_size=8, batch_size=8)
    torch.manual_seed(0)
    task = RegressionTask(partial(RecurrentClassifier, cell="gru", hidden_size=4, impl="fused"), input_size=2)
    callback = GradientFlowPlot()
    trainer = L.Trainer(max_epochs=2, callbacks=[callback], logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
                        default_root_dir=tmp_path)
    trainer.fit(task, datamodule=data)

    assert list(callback.curves) == [0, 1]
    (cell,) = callback.curves[1]
    assert callback.curves[1][cell].shape == (6,)
    assert not torch.equal(callback.curves[0][cell], callback.curves[1][cell])    # training moved it
    assert trainer.callback_metrics["grad_flow/log10_ratio"] == pytest.approx(
        math.log10(decay_ratio(callback.curves[1][cell])), rel=1e-5)
    assert (tmp_path / "gradient_flow.png").read_bytes()[:4] == b"\x89PNG"
    assert task.training and task.model.encoder.layers.impl == "fused"


def test_the_experiment_writes_its_figure_table_and_numbers(tmp_path) -> None:
    data = AddingProblemDataModule(sequence_length=10, train_size=16, val_size=8, test_size=8, batch_size=8)
    conditions = [Condition("init"), Condition("trained", train_steps=2),
                  Condition("x3", recurrent_scale=3.0)]
    results = run_gradient_flow(data, cells=["rnn", "gru"], conditions=conditions, hidden_size=4,
                                output_dir=str(tmp_path))
    assert set(results) == {"init", "trained", "x3"} and set(results["init"]) == {"rnn", "gru"}
    for entry in (results[c][cell] for c in results for cell in ("rnn", "gru")):
        assert len(entry["norms"]) == 10
        assert entry["ratio"] == pytest.approx(entry["norms"][0] / entry["norms"][-1])
    # Same initialisation in every condition: scaling W_hh by 3 changes the RNN's ratio, training changes it.
    assert results["x3"]["rnn"]["ratio"] > results["init"]["rnn"]["ratio"]
    assert results["trained"]["rnn"]["norms"] != results["init"]["rnn"]["norms"]
    table = (tmp_path / "gradient_flow.md").read_text()
    assert "| RNN |" in table and "| init | trained | x3 |" in table
    assert {path.name for path in tmp_path.iterdir()} >= {"gradient_flow.png", "gradient_flow.json"}
    with pytest.raises(ValueError, match="data: expected a regression data module"):
        run_gradient_flow(CopyTaskDataModule(sequence_length=4), output_dir=str(tmp_path))
