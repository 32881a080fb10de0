"""A cell written outside the package: the one on the docs page "Write your own cell", run as a layer
and trained from a YAML config that names it by import path."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import torch
import yaml

import torchseq
from torchseq.cli import TorchseqCLI
from torchseq.kernels import find_kernel, kernels_enabled
from torchseq.models import RecurrentClassifier

ROOT = Path(__file__).parents[1]
PAGE = ROOT / "docs" / "own-cells.md"


@pytest.fixture
def mycells(tmp_path, monkeypatch):
    """The page's first Python block, saved as ``mycells.py`` outside the package and imported."""
    code = re.search(r"```python\n(.*?)```", PAGE.read_text(), re.DOTALL).group(1)
    assert len(code.strip().splitlines()) <= 20
    (tmp_path / "mycells.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "mycells", raising=False)
    import mycells
    return mycells


def test_the_page_cell_runs_through_every_layer_option(mycells) -> None:
    torch.manual_seed(0)
    layer = torchseq.Recurrent(mycells.LayerNormLSTM, 3, 4, num_layers=2, bidirectional=True,
                               batch_first=True, dropout=0.1, dtype=torch.float64)
    x, lengths = torch.randn(2, 5, 3, dtype=torch.float64), torch.tensor([5, 2])
    assert find_kernel(layer.cells[0], x.transpose(0, 1)) is not None      # the traced fast path
    layer.eval()
    output, (h_n, c_n) = layer(x, lengths=lengths)
    with kernels_enabled(False):
        reference, (h_ref, c_ref) = layer(x, lengths=lengths)
    assert output.shape == (2, 5, 8) and h_n.shape == c_n.shape == (4, 2, 4)
    for ours, theirs in ((output, reference), (h_n, h_ref), (c_n, c_ref)):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-10)
    assert output[1, 2:].abs().max() == 0
    assert any("norm" in name for name, _ in layer.named_parameters())     # its extra parameters


def test_models_take_a_cell_by_import_path(mycells) -> None:
    model = RecurrentClassifier(3, 2, hidden_size=4, cell="mycells.LayerNormLSTM")
    assert isinstance(model.encoder.layers.cells[0], mycells.LayerNormLSTM)
    assert model(torch.randn(4, 5, 3)).shape == (4, 2)


@pytest.mark.parametrize(("cell", "message"), [
    ("mycells.Missing", "cannot import 'mycells.Missing'"),
    ("nowhere", "expected one of"),
    ("torch.nn.Linear", "RecurrentCell subclass"),
])
def test_a_wrong_cell_name_is_named(mycells, cell, message) -> None:
    with pytest.raises(ValueError, match=message):
        RecurrentClassifier(3, 2, cell=cell)


def test_the_page_cell_trains_from_a_yaml_config(mycells, tmp_path) -> None:
    config = yaml.safe_load((ROOT / "experiments" / "layernorm_lstm_digits.yaml").read_text())
    assert config["model"]["init_args"]["model"]["init_args"]["cell"] == "layernorm_lstm"
    config["model"]["init_args"]["model"]["init_args"].update(cell="mycells.LayerNormLSTM", hidden_size=8)
    path = tmp_path / "mycell.yaml"
    path.write_text(yaml.safe_dump(config))
    cli = TorchseqCLI(args=[
        "fit", "--config", str(path), "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "3",
        "--trainer.limit_val_batches", "1", "--trainer.limit_test_batches", "1",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"),
    ])
    layers = cli.model.model.encoder.layers
    assert isinstance(layers.cells[0], mycells.LayerNormLSTM)
    assert cli.trainer.current_epoch == 1
    initial = mycells.LayerNormLSTM(8, 8).norm.weight
    assert not torch.equal(layers.cells[0].norm.weight.detach(), torch.ones_like(initial))  # it learned
