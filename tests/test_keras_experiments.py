"""Every experiments/book_*.yaml runs through the torchseq CLI (one training and one test batch): it builds
the book's Keras model, one optimiser step moves every weight, and the test metrics it reports are the
trained model's on that test batch."""

import importlib
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from torchseq.cli import TorchseqCLI
from torchseq.tasks.supervised import split_batch

CONFIGS = sorted((Path(__file__).parent.parent / "experiments").glob("book_*.yaml"))


def test_the_book_examples_have_configs():
    assert {path.stem for path in CONFIGS} >= {"book_simple_rnn", "book_lstm", "book_bilstm"}


def configured_class(config: Path) -> type:
    class_path = yaml.safe_load(config.read_text())["model"]["init_args"]["model"]["class_path"]
    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda path: path.stem)
def test_book_config_trains_and_tests(config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)                      # fast_dev_run has no logger: outputs land in ./runs
    monkeypatch.setattr("sys.argv", ["torchseq"])    # the CLI gets its arguments from here, not pytest's
    arguments = ["--config", str(config), "--trainer.fast_dev_run", "1",
                 "--trainer.enable_progress_bar", "false"]
    # The config seeds everything: the weights a fit starts from are those of any build of the config.
    initial = TorchseqCLI(args=arguments, run=False).model.state_dict()
    assert all(torch.equal(value, initial[name])
               for name, value in TorchseqCLI(args=arguments, run=False).model.state_dict().items())

    cli = TorchseqCLI(args=["fit", *arguments])
    assert isinstance(cli.model.model, configured_class(config))
    trained = cli.model.state_dict()
    unchanged = [name for name, value in initial.items() if torch.equal(trained[name], value)]
    assert not unchanged, f"one Adam step left these weights as they were: {unchanged}"

    # fast_dev_run tests one batch, the first, with the weights in memory.
    summary = json.loads((tmp_path / "runs" / "metrics_summary.json").read_text())
    x, y, lengths = split_batch(next(iter(cli.datamodule.test_dataloader())))
    with torch.no_grad():
        output = cli.model.eval()(x, lengths)
    reported = summary["test"]["metrics"]
    assert reported["test/loss"] == pytest.approx(F.cross_entropy(output, y).item(), rel=1e-5)
    assert reported["test/acc"] == pytest.approx((output.argmax(dim=1) == y).float().mean().item())

