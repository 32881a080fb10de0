"""torchseq.export and ``torchseq export``: exported models run in onnxruntime / torch.export and give the
PyTorch model's outputs (float32, ≤ 1e-5) at batch sizes and lengths other than the example's."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils._pytree import tree_leaves

import torchseq
from torchseq import export
from torchseq.cli import main
from torchseq.export import ExportError
from torchseq.models import LSTMFCN, RecurrentClassifier

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

EXPERIMENTS = Path(__file__).parents[1] / "experiments"
INPUT_SIZE, HIDDEN = 3, 5
EXAMPLE = (torch.randn(2, 4, INPUT_SIZE), torch.tensor([4, 3]))
# Other batch sizes and lengths than the example's, lengths 1 and T included.
SERVED = [(torch.randn(5, 9, INPUT_SIZE), torch.tensor([9, 1, 4, 9, 6])),
          (torch.randn(1, 3, INPUT_SIZE), torch.tensor([3]))]


class CoupledGateCell(torchseq.LSTMCell):
    """A user cell: the LSTM with its input gate tied to the forget gate, i = 1 - f."""

    def recur(self, projected_input, state):
        h, c = state
        recurrent = nn.functional.linear(h, self.weight_hh, self.bias_hh)
        _, a_f, a_g, a_o = (projected_input + recurrent).chunk(4, dim=-1)
        f = torch.sigmoid(a_f)
        c = f * c + (1 - f) * torch.tanh(a_g)
        return torch.sigmoid(a_o) * torch.tanh(c), c


class CoupledGateLSTM(torchseq.LSTM):
    cell_class = CoupledGateCell


class EveryLayer(nn.Module):
    """The layer configurations to cover, side by side over one input: one export checks them all."""

    def __init__(self) -> None:
        super().__init__()
        options = {"batch_first": True}
        self.layers = nn.ModuleList([
            torchseq.LSTM(INPUT_SIZE, HIDDEN, num_layers=2, bidirectional=True, **options),
            torchseq.LSTM(INPUT_SIZE, 6, proj_size=2, **options),
            torchseq.GRU(INPUT_SIZE, HIDDEN, bidirectional=True, **options),
            torchseq.GRU(INPUT_SIZE, HIDDEN, reset_after=False, bidirectional=True, **options),
            torchseq.RNN(INPUT_SIZE, HIDDEN, **options),
            torchseq.RNN(INPUT_SIZE, HIDDEN, nonlinearity="relu", bias=False, **options),
            torchseq.LSTM(INPUT_SIZE, HIDDEN, recurrent_bias=False, go_backwards=True, **options),
        ])

    def forward(self, x, lengths=None):
        return tuple(layer(x, lengths=lengths) for layer in self.layers)


class TwoLayers(nn.Module):
    """An LSTM (bidirectional by default) and a GRU of the original formula, side by side."""

    def __init__(self, bidirectional: bool = True) -> None:
        super().__init__()
        self.lstm = torchseq.LSTM(INPUT_SIZE, HIDDEN, bidirectional=bidirectional, batch_first=True)
        self.gru = torchseq.GRU(INPUT_SIZE, HIDDEN, reset_after=False, batch_first=True)

    def forward(self, x, lengths=None):
        return self.lstm(x, lengths=lengths), self.gru(x, lengths=lengths)


def run_onnx(path: Path, x: torch.Tensor, lengths: torch.Tensor | None = None) -> list:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {"x": x.numpy()} | ({} if lengths is None else {"lengths": lengths.numpy()})
    return [torch.from_numpy(value) for value in session.run(None, feeds)]


def assert_same_outputs(served: list, model_output) -> None:
    expected = tree_leaves(model_output)
    assert len(served) == len(expected)
    for ours, theirs in zip(served, expected, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)


def onnx_ops(path: Path) -> list[onnx.NodeProto]:
    return list(onnx.load(str(path)).graph.node)


def attribute(node: onnx.NodeProto, name: str):
    return onnx.helper.get_attribute_value(next(a for a in node.attribute if a.name == name))


@pytest.fixture(scope="module")
def every_layer() -> EveryLayer:
    torch.manual_seed(0)
    return EveryLayer().eval()


def test_built_in_cells_export_as_the_runtimes_fused_ops(every_layer, tmp_path) -> None:
    path = export.onnx(every_layer, EXAMPLE, tmp_path / "fused.onnx")
    for x, lengths in SERVED:
        with torch.no_grad():
            assert_same_outputs(run_onnx(path, x, lengths), every_layer(x, lengths))

    nodes = onnx_ops(path)
    kinds = [node.op_type for node in nodes if node.op_type in ("LSTM", "GRU", "RNN", "Scan")]
    # 2 layers × 2 directions, then the projected LSTM (no ONNX op has a projection: the loop), …
    assert sorted(kinds) == sorted(["LSTM"] * 4 + ["Scan"] + ["GRU"] * 4 + ["RNN"] * 2 + ["LSTM"])
    gru_placements = [attribute(node, "linear_before_reset") for node in nodes if node.op_type == "GRU"]
    assert sorted(gru_placements) == [0, 0, 1, 1]  # reset_after=False is linear_before_reset=0
    activations = [attribute(node, "activations") for node in nodes if node.op_type == "RNN"]
    assert sorted(activations) == [[b"Relu"], [b"Tanh"]]
    assert all(node.input[4] for node in nodes if node.op_type in ("LSTM", "GRU", "RNN"))  # sequence_lens


def test_loop_export_keeps_the_length_dynamic(tmp_path) -> None:
    torch.manual_seed(4)
    model = TwoLayers().eval()
    path = export.onnx(model, EXAMPLE, tmp_path / "loop.onnx", loop=True)
    kinds = [node.op_type for node in onnx_ops(path)]
    assert kinds.count("Scan") == 3 and not set(kinds) & {"LSTM", "GRU", "RNN", "Loop"}
    for x, lengths in SERVED:
        with torch.no_grad():
            assert_same_outputs(run_onnx(path, x, lengths), model(x, lengths))


def test_a_user_cell_exports_as_its_own_formula(tmp_path) -> None:
    torch.manual_seed(1)
    layer = CoupledGateLSTM(INPUT_SIZE, HIDDEN, batch_first=True).eval()
    path = export.onnx(layer, EXAMPLE[0], tmp_path / "user.onnx")
    assert [p.as_ for p in export.plan(layer)] == ["loop (scan)"]
    assert "Scan" in {node.op_type for node in onnx_ops(path)}
    for x, _ in SERVED:
        with torch.no_grad():
            expected = layer(x)
            reference = torchseq.LSTM(INPUT_SIZE, HIDDEN, batch_first=True).eval()
            reference.load_state_dict(layer.state_dict())
            assert (expected[0] - reference(x)[0]).abs().max() > 1e-3  # the user's formula, not the LSTM's
            assert_same_outputs(run_onnx(path, x), expected)


ZOO = [getattr(torchseq.cells, name) for name in (
    "LayerNormLSTMCell", "LayerNormGRUCell", "PeepholeLSTMCell", "IndRNNCell", "MinGRUCell", "MinLSTMCell",
) if hasattr(torchseq.cells, name)]


class Zoo(nn.Module):
    """Every zoo cell as a layer, side by side over one input."""

    def __init__(self) -> None:
        super().__init__()
        layers = (torchseq.Recurrent(cell, INPUT_SIZE, HIDDEN, batch_first=True) for cell in ZOO)
        self.layers = nn.ModuleList(layers)

    def forward(self, x, lengths=None):
        return tuple(layer(x, lengths=lengths) for layer in self.layers)


@pytest.mark.skipif(not ZOO, reason="no zoo cells in torchseq.cells")
def test_the_zoo_cells_export_as_their_loops(tmp_path) -> None:
    torch.manual_seed(5)
    zoo = Zoo().eval()
    path = export.onnx(zoo, EXAMPLE, tmp_path / "zoo.onnx")
    assert [node.op_type for node in onnx_ops(path)].count("Scan") == len(ZOO)
    x, lengths = SERVED[0]
    with torch.no_grad():
        assert_same_outputs(run_onnx(path, x, lengths), zoo(x, lengths))


def test_the_classifier_and_the_lstm_fcn(tmp_path) -> None:
    torch.manual_seed(2)
    classifier = RecurrentClassifier(INPUT_SIZE, 4, hidden_size=HIDDEN, num_layers=2, cell="gru",
                                     bidirectional=True).eval()
    lstm_fcn = LSTMFCN(INPUT_SIZE, 4, hidden_size=HIDDEN, channels=(4, 6, 4)).eval()
    with torch.no_grad():  # running statistics other than the initial ones
        lstm_fcn.encoder.convolutional.train()(*SERVED[0])
    lstm_fcn.eval()
    classifier_path = export.onnx(classifier, EXAMPLE[0], tmp_path / "classifier.onnx")
    lstm_fcn_path = export.onnx(lstm_fcn, EXAMPLE, tmp_path / "lstm_fcn.onnx")
    for x, lengths in SERVED:
        with torch.no_grad():
            assert_same_outputs(run_onnx(classifier_path, x), classifier(x))
            assert_same_outputs(run_onnx(lstm_fcn_path, x, lengths), lstm_fcn(x, lengths))


@pytest.mark.parametrize("loop", [False, True], ids=["fused", "loop"])
def test_exported_program_serves_other_shapes_and_loads_back(tmp_path, loop: bool) -> None:
    torch.manual_seed(3)
    model = TwoLayers(bidirectional=False).eval()
    program = export.exported_program(model, EXAMPLE, tmp_path / "model.pt2", loop=loop)
    loaded = torch.export.load(tmp_path / "model.pt2")
    operators = {str(node.target) for node in program.graph.nodes if node.op == "call_function"}
    assert any("scan" in name for name in operators) == loop
    assert any("torchseq_export" in name for name in operators) == (not loop)
    for x, lengths in SERVED:
        with torch.no_grad():
            expected = model(x, lengths)
            for served in (program.module(), loaded.module()):
                assert_same_outputs(tree_leaves(served(x, lengths)), expected)


def test_cli_exports_a_trained_checkpoint(tmp_path, capsys) -> None:
    from torchseq.cli import TorchseqCLI

    cli = TorchseqCLI(args=[
        "fit", "--config", str(EXPERIMENTS / "digits_lstm.yaml"), "--trainer.max_epochs", "1",
        "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.logger.init_args.save_dir", str(tmp_path), "--test_after_fit", "false",
        "--model.init_args.model.init_args.hidden_size", "8",
    ])
    checkpoint = cli.trainer.checkpoint_callback.last_model_path
    task = cli.model.cpu().eval()
    x, lengths = torch.randn(3, 5, task.input_size), torch.tensor([5, 2, 4])  # digits rows: T = 8

    main(["export", "--checkpoint", checkpoint, "--format", "onnx", "--output", str(tmp_path / "m.onnx")])
    assert "LSTM" in capsys.readouterr().out
    with torch.no_grad():
        assert_same_outputs(run_onnx(tmp_path / "m.onnx", x, lengths), task(x, lengths))

    main(["export", "--checkpoint", checkpoint, "--format", "exported-program",
          "--output", str(tmp_path / "m.pt2")])
    served = torch.export.load(tmp_path / "m.pt2").module()
    with torch.no_grad():
        torch.testing.assert_close(served(x, lengths), task(x, lengths), rtol=0, atol=1e-5)


# -- what cannot be exported, and says why -------------------------------------------------------
def test_cli_names_a_missing_checkpoint(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["export", "--checkpoint", str(tmp_path / "none.ckpt"), "--output", str(tmp_path / "m.onnx")])
    assert exit_.value.code == 2
    assert "--checkpoint: no such file" in capsys.readouterr().out


def test_a_stateful_layer_is_refused() -> None:
    layer = torchseq.LSTM(INPUT_SIZE, HIDDEN, batch_first=True, stateful=True)
    with pytest.raises(ExportError, match="stateful=True carries the final state"):
        export.exported_program(layer, EXAMPLE[0])


@pytest.mark.parametrize(("example", "message"), [
    (torch.randn(1, 4, INPUT_SIZE), "dynamic batch size needs an example with at least 2"),
    (torch.randn(2, 1, INPUT_SIZE), "dynamic sequence length needs an example with at least 2"),
    ([torch.randn(2, 4, INPUT_SIZE), "lengths"], "expected a tensor x or a tuple"),
])
def test_an_example_that_cannot_serve_other_shapes_is_refused(example, message: str) -> None:
    with pytest.raises(ExportError, match=message):
        export.exported_program(torchseq.GRU(INPUT_SIZE, HIDDEN, batch_first=True), example)


class PythonLoop(nn.Module):
    """A recurrence written as a Python loop over time outside torchseq's layers: tracing fixes T."""

    def __init__(self) -> None:
        super().__init__()
        self.cell = nn.GRUCell(INPUT_SIZE, HIDDEN)

    def forward(self, x):
        h = x.new_zeros(x.shape[0], HIDDEN)
        for t in range(x.shape[1]):
            h = self.cell(x[:, t], h)
        return h


def test_a_loop_that_fixes_the_length_is_refused_with_the_reason() -> None:
    with pytest.raises(ExportError, match="fixes a dimension marked dynamic"):
        export.exported_program(PythonLoop(), EXAMPLE[0])
    fixed = export.exported_program(PythonLoop(), EXAMPLE[0], dynamic=False)  # T = 4 for good
    with pytest.raises(Exception, match="4"):
        fixed.module()(torch.randn(2, 6, INPUT_SIZE))
