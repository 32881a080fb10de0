"""torchseq tune: a tiny Optuna search over a real fit config — trials run, bad ones are pruned, the study
resumes from its SQLite file, and the best trial comes back as a config that ``torchseq fit`` accepts."""

from __future__ import annotations

import json
import math

import optuna
import pytest
import yaml

from torchseq.cli import TorchseqCLI
from torchseq.cli import main as torchseq
from torchseq.tools.tune import (
    OPTIMIZERS,
    Distribution,
    OptunaPruning,
    Search,
    TrialCLI,
    main,
    nested,
    optimizer_settings,
)

MODEL = "model.init_args.model.init_args"
FIT_CONFIG = {
    "seed_everything": 0,
    "trainer": {"max_epochs": 3, "enable_progress_bar": False, "enable_model_summary": False,
                "accelerator": "cpu"},
    "model": {"class_path": "torchseq.tasks.RegressionTask",
              "init_args": {"model": {"class_path": "torchseq.models.RecurrentClassifier",
                                      "init_args": {"cell": "gru", "hidden_size": 4}}}},
    "optimizer": {"class_path": "torch.optim.Adam", "init_args": {"lr": 1e-3}},
    "data": {"class_path": "torchseq.data.AddingProblemDataModule",
             "init_args": {"sequence_length": 6, "train_size": 64, "val_size": 32, "test_size": 32,
                           "batch_size": 32}},
}
SEARCH_SPACE = {
    "optimizer.init_args.lr": {"kind": "float", "low": 1e-4, "high": 1e-1, "log": True},
    f"{MODEL}.hidden_size": {"kind": "int", "low": 2, "high": 8},
    f"{MODEL}.head_dropout": {"kind": "float", "low": 0.2, "high": 0.5},
    "optimizer": {"kind": "categorical", "choices": list(OPTIMIZERS)},
}


@pytest.fixture
def fit_config(tmp_path):
    path = tmp_path / "tiny_adding.yaml"
    path.write_text(yaml.safe_dump(FIT_CONFIG))
    return path


def tune_config(tmp_path, fit_config, n_trials: int) -> str:
    path = tmp_path / "tune.yaml"
    path.write_text(yaml.safe_dump({
        "fit_config": str(fit_config), "search_space": SEARCH_SPACE, "n_trials": n_trials,
        "monitor": "val/loss", "direction": "minimize", "output_dir": str(tmp_path / "tune"),
        "pruning": {"n_startup_trials": 1, "n_warmup_steps": 0},
    }))
    return str(path)


def test_a_tiny_search_runs_resumes_and_reports_the_best_trial(tmp_path, fit_config) -> None:
    main(["--config", tune_config(tmp_path, fit_config, n_trials=2)])
    study = main(["--config", tune_config(tmp_path, fit_config, n_trials=1)])   # resumes the same study

    assert len(study.trials) == 3
    states = {trial.state for trial in study.trials}
    assert states <= {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED}
    assert len({tuple(trial.params.values()) for trial in study.trials}) == 3   # resuming drew new values
    for trial in study.trials:
        assert 1e-4 <= trial.params["optimizer.init_args.lr"] <= 1e-1
        assert 2 <= trial.params[f"{MODEL}.hidden_size"] <= 8
        assert trial.params["optimizer"] in OPTIMIZERS
    completed = [trial.value for trial in study.trials if trial.state == optuna.trial.TrialState.COMPLETE]
    assert study.best_value == min(completed) and math.isfinite(study.best_value)
    # A trial's score is its best validation loss, read from the run the trial wrote.
    history = json.loads((tmp_path / "tune" / f"trial_{study.best_trial.number}" / "version_0" /
                          "metrics_summary.json").read_text())
    assert study.best_value == pytest.approx(min(row["val/loss"] for row in history["history"]))

    best = yaml.safe_load((tmp_path / "tune" / "best.yaml").read_text())
    chosen_class, fixed = OPTIMIZERS[study.best_params["optimizer"]]
    assert best["optimizer"]["class_path"] == chosen_class
    assert best["optimizer"]["init_args"] == fixed | {"lr": study.best_params["optimizer.init_args.lr"]}
    trials = json.loads((tmp_path / "tune" / "trials.json").read_text())
    assert [trial["number"] for trial in trials] == [0, 1, 2]

    # best.yaml is a config fragment that ``torchseq fit`` takes after the base config.
    best_config = str(tmp_path / "tune" / "best.yaml")
    cli = TorchseqCLI(args=["fit", "--config", str(fit_config), "--config", best_config,
                            "--trainer.fast_dev_run=true", f"--trainer.default_root_dir={tmp_path}"])
    optimizer = cli.trainer.optimizers[0]
    assert f"{type(optimizer).__module__}.{type(optimizer).__name__}".replace(".adam", "") \
        .replace(".rmsprop", "").replace(".adagrad", "").replace(".sgd", "") == chosen_class
    assert optimizer.param_groups[0]["lr"] == pytest.approx(study.best_params["optimizer.init_args.lr"])
    assert cli.model.model.encoder.output_size == study.best_params[f"{MODEL}.hidden_size"]


def test_the_pruning_callback_stops_a_trial_the_pruner_rejects(tmp_path, fit_config) -> None:
    study = optuna.create_study(pruner=optuna.pruners.ThresholdPruner(upper=0.0))   # any loss > 0 is pruned
    trial = study.ask()
    pruning = OptunaPruning(trial, "val/loss")
    with pytest.raises(optuna.TrialPruned, match=r"epoch 0: val/loss = "):
        TrialCLI(pruning, ["fit", "--config", str(fit_config), "--trainer.logger=false",
                           f"--trainer.default_root_dir={tmp_path}", f"--checkpoint.dirpath={tmp_path}/ckpt"])
    assert len(pruning.values) == 1                 # stopped after the first validation of three
    assert list(study.trials[0].intermediate_values) == [0]


def test_a_monitor_that_is_never_logged_is_named(tmp_path, fit_config) -> None:
    search = Search(str(fit_config), {"optimizer.init_args.lr": Distribution("float", 1e-3, 1e-2)},
                    monitor="val/accuracy", output_dir=str(tmp_path / "tune"))
    expected = r"monitor: 'val/accuracy' was not logged during validation \(logged: "
    with pytest.raises(ValueError, match=expected):
        search.objective(optuna.create_study().ask())


def test_optimizer_names_expand_to_class_and_arguments() -> None:
    settings = optimizer_settings({"optimizer": "SGD-momentum", "optimizer.init_args.lr": 0.01, "x.y": 1})
    assert list(settings) == ["optimizer.class_path", "optimizer.init_args.momentum",
                              "optimizer.init_args.lr", "x.y"]
    assert nested(settings) == {"optimizer": {"class_path": "torch.optim.SGD",
                                              "init_args": {"momentum": 0.9, "lr": 0.01}}, "x": {"y": 1}}


def test_errors_are_clear(tmp_path, fit_config) -> None:
    space = {"optimizer.init_args.lr": Distribution("float", 1e-3, 1e-2)}
    with pytest.raises(ValueError, match=r"direction: expected one of \('minimize', 'maximize'\)"):
        Search(str(fit_config), space, direction="max")
    with pytest.raises(FileNotFoundError, match=r"fit_config: no such file 'missing\.yaml'"):
        Search("missing.yaml", space)
    with pytest.raises(ValueError, match="search_space: expected at least one dimension"):
        Search(str(fit_config), {})
    with pytest.raises(ValueError, match=r"search_space.optimizer: expected choices among .*got \['Nadam'\]"):
        Search(str(fit_config), {"optimizer": Distribution("categorical", choices=["Adam", "Nadam"])})
    with pytest.raises(ValueError, match=r"low, high: a float dimension needs low ≤ high, got 1\.0, 0\.1"):
        Distribution("float", 1.0, 0.1)
    with pytest.raises(ValueError, match="choices: a categorical dimension needs at least one choice"):
        Distribution("categorical")
    with pytest.raises(ValueError, match=r"kind: expected one of \('float', 'int', 'categorical'\)"):
        Distribution("uniform", 0.0, 1.0)



@pytest.mark.parametrize("tool", ["tune", "attack", "gradient-flow", "long-dependency"])
def test_the_torchseq_command_routes_its_tools(tool: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_status:
        torchseq([tool, "--help"])
    assert exit_status.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: torchseq {tool}")
