"""The long-dependency runner: one fit per grid point in parallel processes, read back into a table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from torchseq.tools.long_dependency import Grid, GridTask, Point, Solved, main

# Absolute: the tests must pass wherever pytest is started, not only in the repository root.
ADDING = str(Path(__file__).parents[1] / "experiments" / "long_dependency" / "adding.yaml")
COPY = str(Path(__file__).parents[1] / "experiments" / "long_dependency" / "copy.yaml")

TINY = {"trainer.max_epochs": 2, "data.init_args.train_size": 16, "data.init_args.val_size": 8,
        "data.init_args.test_size": 8, "data.init_args.batch_size": 8,
        "model.init_args.model.init_args.hidden_size": 4}


def test_solved_criteria() -> None:
    assert Solved("val/mse", below=0.01).reached(0.005) and not Solved("val/mse", below=0.01).reached(0.02)
    assert Solved("val/acc", above=0.99).reached(1.0) and not Solved("val/acc", above=0.99).reached(0.99)
    with pytest.raises(ValueError, match="solved: give exactly one of below or above for 'val/mse'"):
        Solved("val/mse")


def test_a_summary_gives_final_value_and_the_first_step_that_solved(tmp_path) -> None:
    history = [{"epoch": 0, "step": 10, "val/mse": 0.2}, {"epoch": 1, "step": 20, "val/mse": 0.008},
               {"epoch": 2, "step": 30, "val/mse": 0.009}]
    path = tmp_path / "metrics_summary.json"
    path.write_text(json.dumps({"history": history, "epochs": 3, "global_step": 30, "fit_seconds": 1.5,
                                "run_dir": "somewhere"}))
    result = Grid.read_summary(path, Solved("val/mse", below=0.01))
    assert result == {"final": 0.009, "steps_to_solve": 20, "epochs": 3, "steps": 30, "seconds": 1.5,
                      "run": "somewhere"}
    assert Grid.read_summary(path, Solved("val/mse", below=0.001))["steps_to_solve"] is None


def test_the_grid_runs_every_point_and_tabulates_it(tmp_path) -> None:
    config = {
        "tasks": {"adding": {"config": ADDING,
                             "solved": {"metric": "val/mse", "below": 100.0}},       # solved at once
                  "copy": {"config": COPY,
                           "solved": {"metric": "val/answer_acc", "above": 1.0}}},    # never
        "cells": ["gru"], "lengths": [3], "jobs": 2, "output_dir": str(tmp_path),
        "overrides": TINY,
    }
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(config))
    results = main(["--config", str(path), "--only_tasks", '["adding"]'])

    assert set(results) == {"adding_gru_T3"}
    adding = results["adding_gru_T3"]
    assert adding["epochs"] == 2 and adding["steps"] == 4 and adding["steps_to_solve"] == 2
    table = (tmp_path / "results.md").read_text()
    assert "| 3 | " in table and "(2; 4 steps)" in table
    assert json.loads((tmp_path / "results.json").read_text()) == results
    assert (tmp_path / "adding_gru_T3.log").exists()

    again = main(["--config", str(path), "--collect_only", "true"])       # no new run: the same table
    assert again == results


def test_points_and_their_fit_arguments() -> None:
    task = GridTask(ADDING, Solved("val/mse", below=0.01))
    grid = Grid({"adding": task}, cells=["rnn", "lstm"], lengths=[50, 400],
                overrides={"trainer.max_epochs": 1})
    assert [point.name for point in grid.points] == ["adding_rnn_T50", "adding_rnn_T400", "adding_lstm_T50",
                                                     "adding_lstm_T400"]
    arguments = grid.arguments(Point("adding", "lstm", 400))
    assert arguments[:3] == ["fit", "--config", ADDING]
    assert "--model.init_args.model.init_args.cell=lstm" in arguments
    assert "--data.init_args.sequence_length=400" in arguments and "--trainer.max_epochs=1" in arguments


def test_errors_are_clear() -> None:
    task = GridTask(ADDING, Solved("val/mse", below=0.01))
    with pytest.raises(ValueError, match=r"only_tasks: unknown task\(s\) \['copy'\]"):
        Grid({"adding": task}, only_tasks=["copy"])
    with pytest.raises(FileNotFoundError, match=r"tasks\.adding\.config: no such file 'missing\.yaml'"):
        Grid({"adding": GridTask("missing.yaml", task.solved)})
    with pytest.raises(ValueError, match="jobs: expected a positive int, got 0"):
        Grid({"adding": task}, jobs=0)
