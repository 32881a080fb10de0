"""Resuming from a mid-training checkpoint ends exactly where the uninterrupted run ends."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from torchseq.callbacks.rng_state import KEY as RNG_KEY
from torchseq.cli import TorchseqCLI

EXPERIMENTS = Path(__file__).parents[1] / "experiments"
EPOCHS = 3


def fit(experiment: str, runs: Path, *extra: str) -> TorchseqCLI:
    return TorchseqCLI(args=[
        "fit", "--config", str(EXPERIMENTS / experiment), "--trainer.logger.init_args.save_dir", str(runs),
        "--trainer.max_epochs", str(EPOCHS), "--trainer.limit_train_batches", "3",
        "--trainer.limit_val_batches", "2", "--trainer.enable_progress_bar", "false",
        "--test_after_fit", "false", "--checkpoint.monitor", "null", "--checkpoint.save_top_k", "-1",
        "--model.init_args.model.init_args.hidden_size", "8", *extra,
    ])


def history(cli: TorchseqCLI) -> list[dict[str, float]]:
    return json.loads((Path(cli.trainer.log_dir) / "metrics_summary.json").read_text())["history"]


CASES = {
    "lstm_digits": ("digits_lstm.yaml", []),
    # dropout 0.8 and batch norm: exact only if the dropout masks are drawn alike after resuming
    "lstm_fcn_gunpoint_dropout": (
        "gunpoint_lstm_fcn.yaml", ["--model.init_args.model.init_args.channels", "[8, 8, 8]"]
    ),
    # the default experiment: every training digit randomly rotated/shifted/scaled as it is drawn
    "lstm_mnist5k_augmented": ("mnist5k_lstm.yaml", []),
}


@pytest.mark.parametrize(("experiment", "extra"), CASES.values(), ids=CASES.keys())
def test_resumed_run_ends_with_the_uninterrupted_runs_weights_and_metrics(tmp_path, experiment, extra):
    whole = fit(experiment, tmp_path / "whole", *extra)
    (first_epoch,) = Path(whole.trainer.log_dir, "checkpoints").glob("epoch=0-*.ckpt")
    resumed = fit(experiment, tmp_path / "resumed", *extra, "--ckpt_path", str(first_epoch))

    assert resumed.trainer.current_epoch == whole.trainer.current_epoch == EPOCHS
    for name, value in whole.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], value, rtol=0, atol=0, msg=name)
    assert history(resumed) == history(whole)  # every epoch, also the one from before the checkpoint


def test_without_the_generator_states_dropout_differs_after_resuming(tmp_path) -> None:
    """The control: the exactness above is the RNG callback's doing, not a test that cannot fail."""
    experiment, extra = CASES["lstm_fcn_gunpoint_dropout"]
    whole = fit(experiment, tmp_path / "whole", *extra)
    (first_epoch,) = Path(whole.trainer.log_dir, "checkpoints").glob("epoch=0-*.ckpt")
    checkpoint = torch.load(first_epoch, weights_only=True)
    del checkpoint[RNG_KEY]
    torch.save(checkpoint, tmp_path / "without_rng.ckpt")
    resumed = fit(experiment, tmp_path / "resumed", *extra, "--ckpt_path", str(tmp_path / "without_rng.ckpt"))
    differences = [(resumed.model.state_dict()[name] - value).abs().max().item()
                   for name, value in whole.model.state_dict().items() if value.is_floating_point()]
    assert max(differences) > 1e-4
