"""The ``torchseq`` command: LightningCLI over every torchseq task and data module.

::

    torchseq fit      --config experiments/mnist5k_lstm.yaml
    torchseq test     --config experiments/mnist5k_lstm.yaml --ckpt_path runs/mnist5k_lstm/version_0/last.ckpt
    torchseq validate --config ...    torchseq predict --config ...    torchseq fit --help

A config names a task (``model:``, any LightningModule) and a data module (``data:``), both by
``class_path``, plus the usual ``trainer:``, ``optimizer:`` and ``lr_scheduler:`` sections
(LightningCLI's own optimiser support: ``optimizer: {class_path: torch.optim.SGD, init_args: {lr: 0.01,
momentum: 0.9}}``). Two top-level keys are ours:

- ``checkpoint:`` the run's :class:`~lightning.pytorch.callbacks.ModelCheckpoint` (``monitor``,
  ``mode``…): the epoch that validation selects is the one ``test`` evaluates.
- ``test_after_fit: true``: after ``fit``, test the best checkpoint on the test split.

How data reaches a task — the contract for task authors
--------------------------------------------------------
Data modules expose their shape right after ``__init__``: ``input_size``, ``num_classes``,
``sequence_length`` and, for images, ``image_shape`` (:data:`DATA_ATTRIBUTES`). Each is linked, at
instantiation, to the task's ``__init__`` parameter *of the same name*, and a task receives exactly the
ones it names: jsonargparse skips a link whose target the chosen class does not have. So a new task
plugs in without touching this file, by naming what it needs, e.g. ::

    class SequenceVAETask(L.LightningModule):
        def __init__(self, model: Callable[[int, int], VAE], input_size: int, sequence_length: int): ...

and builds its network from a factory (``model: Callable[..., nn.Module]``: the config gives the class
and its other arguments, the task supplies the linked sizes). A data module that lacks an attribute
simply links nothing for it. (Lightning records every applied link in the task's hyperparameters, also
the skipped ones; :meth:`TorchseqCLI.instantiate_classes` removes those so checkpoints load back.)

What a run writes, in ``runs/<experiment>/<version>/``
-----------------------------------------------------
The experiment is the config file's name (``runs/mnist5k_lstm/version_0``) unless ``trainer.logger``
says otherwise. Inside: ``checkpoints/`` (best and last), ``metrics.csv`` and ``hparams.yaml``
(CSVLogger), ``config.yaml`` (the full resolved config), ``training_curves.png``,
``confusion_matrix.png`` (classification configs), ``metrics_summary.json``; the summary is printed at
the end.
"""

from __future__ import annotations

import inspect
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities import rank_zero_warn
from rich.console import Console

from torchseq.callbacks import MetricsSummary, TrainingCurves, render_summary
from torchseq.callbacks.history import run_dir

DATA_ATTRIBUTES = ("input_size", "num_classes", "sequence_length", "image_shape")
RUNS_DIR = "runs"
DEFAULT_LOGGER = {
    "class_path": "lightning.pytorch.loggers.CSVLogger",
    "init_args": {"save_dir": RUNS_DIR, "name": None},  # None: named after the config file
}


class TorchseqCLI(LightningCLI):
    """LightningCLI with data → task links, a checkpoint section, test-after-fit and run summaries."""

    def __init__(self, args: Any = None, run: bool = True) -> None:
        super().__init__(
            L.LightningModule,
            L.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            trainer_defaults={"logger": DEFAULT_LOGGER, "callbacks": [TrainingCurves(), MetricsSummary()]},
            save_config_kwargs={"overwrite": True},
            args=args,
            run=run,
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        for name in DATA_ATTRIBUTES:
            parser.link_arguments(f"data.{name}", f"model.init_args.{name}", apply_on="instantiate")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({"checkpoint.save_last": True})
        parser.add_argument(
            "--test_after_fit", type=bool, default=False,
            help="After fit, test the checkpoint that validation selected (fit only; ignored otherwise).",
        )

    # -- instantiation -----------------------------------------------------------------------------
    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand]
        logger = config.trainer.logger
        if getattr(getattr(logger, "init_args", None), "name", "") is None:
            logger.init_args.name = experiment_name(config.get("config") or [])

    def instantiate_classes(self) -> None:
        super().instantiate_classes()
        drop_skipped_links(self.model)
        summary = self.summary_callback
        if summary is not None:
            summary.config_paths = [str(path) for path in self.config[self.subcommand].get("config") or []]

    @property
    def summary_callback(self) -> MetricsSummary | None:
        return next((c for c in self.trainer.callbacks if isinstance(c, MetricsSummary)), None)

    # -- after each subcommand ---------------------------------------------------------------------
    def after_fit(self) -> None:
        if self.config.fit.test_after_fit and not self.trainer.interrupted:
            checkpoint = self.trainer.checkpoint_callback
            best = "best" if getattr(checkpoint, "best_model_path", "") else None
            if best is None:
                rank_zero_warn("test_after_fit: no best checkpoint was saved; testing the final weights")
            self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best)
        self.print_summary()

    def after_validate(self) -> None:
        self.print_summary()

    def after_test(self) -> None:
        self.print_summary()

    def after_predict(self) -> None:
        predictions = self.trainer.predict_loop.predictions
        if all(isinstance(batch, torch.Tensor) for batch in predictions):
            predictions = torch.cat(predictions)
        if self.trainer.is_global_zero:
            path = run_dir(self.trainer) / "predictions.pt"
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(predictions, path)
            Console().print(f"predictions ({len(predictions)}) written to {path}")

    def print_summary(self) -> None:
        summary = self.summary_callback
        if self.trainer.is_global_zero and summary is not None and hasattr(summary, "latest"):
            Console().print(render_summary(summary.latest))


def experiment_name(config_paths: list[Any]) -> str:
    """The last ``--config`` file's stem: ``experiments/gunpoint_lstm.yaml`` → ``gunpoint_lstm``."""
    return Path(str(config_paths[-1])).stem if config_paths else "torchseq"


def drop_skipped_links(module: L.LightningModule) -> None:
    """Forget the linked data attributes ``module``'s class does not accept (see the module docstring)."""
    accepted = inspect.signature(type(module).__init__).parameters
    for name in DATA_ATTRIBUTES:
        if name not in accepted:
            module.hparams.pop(name, None)
            # The logger merges the *initial* hparams with the data module's: drop the link there too.
            module._hparams_initial.pop(name, None)


def main(args: Any = None) -> None:
    """Entry point of the ``torchseq`` console script."""
    # The data sets are in-memory tensors: loader worker processes would only add start-up time.
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    # Expected whenever a config names an optimizer: the task's own Adam(lr=1e-3) is only the default.
    warnings.filterwarnings("ignore", ".*configure_optimizers` will be overridden by.*")
    TorchseqCLI(args=args)


if __name__ == "__main__":
    main()
