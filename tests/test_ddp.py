"""Lightning DDP on two CPU processes (gloo) runs a real experiment config end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXPERIMENTS = Path(__file__).parents[1] / "experiments"


@pytest.mark.slow
def test_two_process_ddp_fits_and_tests(tmp_path) -> None:
    command = [
        sys.executable, "-m", "torchseq.cli", "fit", "--config", str(EXPERIMENTS / "digits_lstm.yaml"),
        "--trainer.strategy", "ddp", "--trainer.accelerator", "cpu", "--trainer.devices", "2",
        "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "2",
        "--trainer.limit_test_batches", "2", "--trainer.enable_progress_bar", "false",
        "--model.init_args.model.init_args.hidden_size", "8",
        "--trainer.logger.init_args.save_dir", str(tmp_path),
    ]
    environment = os.environ | {"OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=environment, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    log = done.stdout + done.stderr
    assert "distributed_backend=gloo" in log and "MEMBER: 2/2" in log

    (summary_file,) = tmp_path.glob("digits_lstm/*/metrics_summary.json")  # written once, by rank 0
    summary = json.loads(summary_file.read_text())
    assert summary["world_size"] == 2
    assert summary["epochs"] == 1
    assert set(summary["test"]["metrics"]) == {"test/loss", "test/acc", "test/f1"}
    assert (summary_file.parent / "confusion_matrix.png").is_file()
