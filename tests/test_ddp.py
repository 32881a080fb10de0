"""Lightning DDP on two CPU processes (gloo) runs a real experiment config end to end, and what it reports
is what one process reports: the two ranks test disjoint halves of the test split, and the combined
confusion matrix and metrics equal a single-process test of the same checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from torchseq.cli import TorchseqCLI

TESTS = Path(__file__).parent
EXPERIMENTS = TESTS.parent / "experiments"
COMMON = ["--config", str(EXPERIMENTS / "digits_lstm.yaml"), "--trainer.enable_progress_bar", "false",
          "--model.init_args.model.init_args.hidden_size", "8"]


def probe(folder: Path) -> list[str]:
    """CLI arguments adding the callback that records each process's test samples into ``folder``."""
    callback = {"class_path": "_ddp_probe.RecordTestSamples", "init_args": {"folder": str(folder)}}
    return [f"--trainer.callbacks+={json.dumps(callback)}"]


def samples(folder: Path, rank: int) -> Counter[str]:
    return Counter(json.loads((folder / f"test_samples_rank{rank}.json").read_text()))


@pytest.mark.slow
def test_two_process_ddp_reports_what_one_process_reports(tmp_path, monkeypatch) -> None:
    command = [
        sys.executable, "-m", "torchseq.cli", "fit", *COMMON,
        "--trainer.strategy", "ddp", "--trainer.accelerator", "cpu", "--trainer.devices", "2",
        "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "2",
        "--trainer.logger.init_args.save_dir", str(tmp_path), *probe(tmp_path / "ddp"),
    ]  # the config tests the best checkpoint after fitting, on the whole test split
    python_path = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))
    environment = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": python_path}
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=environment, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    log = done.stdout + done.stderr
    assert "distributed_backend=gloo" in log and "MEMBER: 2/2" in log

    (summary_file,) = tmp_path.glob("digits_lstm/*/metrics_summary.json")  # written once, by rank 0
    summary = json.loads(summary_file.read_text())
    assert summary["world_size"] == 2
    assert summary["epochs"] == 1
    checkpoint = summary["test"]["checkpoint"]
    assert checkpoint == summary["best_checkpoint"] and Path(checkpoint).is_file()
    ddp_matrix = json.loads((summary_file.parent / "confusion_matrix.json").read_text())["matrix"]

    # The same checkpoint tested by one process.
    monkeypatch.syspath_prepend(str(TESTS))
    single = TorchseqCLI(args=["test", *COMMON, "--ckpt_path", checkpoint, *probe(tmp_path / "single"),
                               "--trainer.logger.init_args.save_dir", str(tmp_path / "single")])
    single_run = Path(single.trainer.log_dir)
    single_summary = json.loads((single_run / "metrics_summary.json").read_text())
    assert single_summary["world_size"] == 1

    # Disjoint shards that together are the whole test split, each sample once.
    rank0, rank1, everything = samples(tmp_path / "ddp", 0), samples(tmp_path / "ddp", 1), \
        samples(tmp_path / "single", 0)
    assert min(rank0.total(), rank1.total()) == everything.total() // 2 > 0  # 359: 180 and 179, no padding
    assert rank0 + rank1 == everything
    assert all(everything[digest] > 1 for digest in rank0.keys() & rank1.keys())  # only true duplicates

    # The combined confusion matrix and metrics are the single process's.
    single_matrix = json.loads((single_run / "confusion_matrix.json").read_text())["matrix"]
    assert sum(map(sum, single_matrix)) == everything.total()
    assert ddp_matrix == single_matrix
    ddp_metrics, single_metrics = summary["test"]["metrics"], single_summary["test"]["metrics"]
    assert set(ddp_metrics) == set(single_metrics) == {"test/loss", "test/acc", "test/f1"}
    assert ddp_metrics == pytest.approx(single_metrics, rel=1e-6)
