"""Every experiments/book_*.yaml runs through the torchseq CLI (one training and one test batch)."""

import json
from pathlib import Path

import pytest

from torchseq.cli import main

CONFIGS = sorted((Path(__file__).parent.parent / "experiments").glob("book_*.yaml"))


def test_the_book_examples_have_configs():
    assert {path.stem for path in CONFIGS} >= {"book_simple_rnn", "book_lstm", "book_bilstm"}


@pytest.mark.parametrize("config", CONFIGS, ids=lambda path: path.stem)
def test_book_config_trains_and_tests(config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)                      # fast_dev_run has no logger: outputs land in ./runs
    monkeypatch.setattr("sys.argv", ["torchseq"])    # the CLI gets its arguments from main(), not pytest's
    main(["fit", "--config", str(config), "--trainer.fast_dev_run", "1",
          "--trainer.enable_progress_bar", "false"])
    summary = json.loads((tmp_path / "runs" / "metrics_summary.json").read_text())
    assert "test/loss" in json.dumps(summary)
