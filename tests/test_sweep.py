"""experiments/sweep.py: the runs it would start and the tables it makes (no training here)."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SWEEP_FILE = Path(__file__).resolve().parents[1] / "experiments" / "sweep.py"
_spec = importlib.util.spec_from_file_location("sweep", SWEEP_FILE)
sweep = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("sweep", sweep)  # dataclasses look their module up there
_spec.loader.exec_module(sweep)

CONFIG = Path("experiments/arrowhead_fcn.yaml")


def option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_cross_validation_run_holds_out_its_fold_and_never_tests(tmp_path):
    run = sweep.Run(CONFIG, seed=2, runs_dir=tmp_path, fold=(1, 4))
    command = run.command(["--trainer.max_epochs", "3"])
    assert option(command, "--data.init_args.fold") == "1"
    assert option(command, "--data.init_args.folds") == "4"
    assert option(command, "--test_after_fit") == "false"
    assert option(command, "--trainer.logger.init_args.version") == "seed_2_fold_1of4"
    assert command[-2:] == ["--trainer.max_epochs", "3"]  # the caller's arguments come last and win
    assert run.directory == tmp_path / "arrowhead_fcn" / "seed_2_fold_1of4"


def test_plain_run_has_no_fold_options(tmp_path):
    command = sweep.Run(CONFIG, seed=0, runs_dir=tmp_path).command([])
    assert "--data.init_args.folds" not in command and "--test_after_fit" not in command


def write_summary(run, accuracy: float, epoch: int) -> None:
    run.directory.mkdir(parents=True)
    summary = {"monitor": "train/loss_epoch", "best_val": {"val/acc": accuracy}, "best_epoch": epoch,
               "fit_seconds": 60.0}
    (run.directory / "metrics_summary.json").write_text(json.dumps(summary))


def test_cross_validation_table_averages_the_folds(tmp_path):
    runs = [sweep.Run(CONFIG, seed=0, runs_dir=tmp_path, fold=(fold, 3)) for fold in range(3)]
    for run, accuracy, epoch in zip(runs, (0.5, 0.75, 1.0), (10, 20, 30), strict=True):
        write_summary(run, accuracy, epoch)
    table = sweep.cross_validation_table(runs, failed=[])
    assert "3-fold" in table
    row = next(line for line in table.splitlines() if line.startswith("| arrowhead_fcn"))
    assert row.split(" | ")[1:5] == ["train/loss_epoch", "3", "0.7500 ± 0.2500", "20.0 ± 10.0"]


def test_folds_must_be_at_least_two():
    with pytest.raises(SystemExit):
        sweep.parse([str(CONFIG), "--folds", "1"])


def test_cross_validation_tables_go_to_their_own_block(tmp_path):
    document = tmp_path / "README.md"
    document.write_text("a\n<!-- sweep-results:start -->\nS\n<!-- sweep-results:end -->\n"
                        "b\n<!-- cv-results:start -->\nC\n<!-- cv-results:end -->\n")
    sweep.update_document(document, "NEW", sweep.CV_MARKERS)
    assert document.read_text() == ("a\n<!-- sweep-results:start -->\nS\n<!-- sweep-results:end -->\n"
                                    "b\n<!-- cv-results:start -->\nNEW\n<!-- cv-results:end -->\n")
    plain = tmp_path / "plain.md"
    plain.write_text("no markers\n")
    with pytest.raises(SystemExit, match="has no <!-- sweep-results:start -->"):
        sweep.update_document(plain, "X")
