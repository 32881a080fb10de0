"""The ``torchseq`` command: LightningCLI over every torchseq task and data module.

::

    torchseq fit      --config experiments/mnist5k_lstm.yaml
    torchseq test     --config experiments/mnist5k_lstm.yaml \
                      --ckpt_path runs/mnist5k_lstm/version_0/checkpoints/last.ckpt
    torchseq validate --config ...    torchseq predict --config ...    torchseq fit --help
    torchseq tune | attack | gradient-flow | long-dependency --config ...   (the TOOLS below)

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
says otherwise. Inside: ``checkpoints/`` (best and last, each written atomically: see
:mod:`torchseq.checkpointing`), ``metrics.csv`` and ``hparams.yaml`` (CSVLogger), ``config.yaml`` (the
full resolved config), ``training_curves.png``, ``confusion_matrix.png`` and ``.json`` (classification
configs), ``metrics_summary.json``; the summary is printed at the end.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities import rank_zero_warn
from rich.console import Console

from torchseq.callbacks import MetricsSummary, RNGState, TrainingCurves, render_summary
from torchseq.callbacks.history import run_dir
from torchseq.checkpointing import check_checkpoint_file, use_atomic_checkpoints
from torchseq.checks import check_data_sizes

DATA_ATTRIBUTES = ("input_size", "num_classes", "sequence_length", "image_shape")
RUNS_DIR = "runs"
DEFAULT_LOGGER = {
    "class_path": "lightning.pytorch.loggers.CSVLogger",
    "init_args": {"save_dir": RUNS_DIR, "name": None},  # None: named after the config file
}


class ConfigurationError(ValueError):
    """A config whose classes exist but cannot be built together; the message says why."""


class TorchseqCLI(LightningCLI):
    """LightningCLI with data → task links, a checkpoint section, test-after-fit and run summaries."""

    def __init__(self, args: Any = None, run: bool = True) -> None:
        super().__init__(
            L.LightningModule,
            L.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            trainer_defaults={
                "logger": DEFAULT_LOGGER,
                "default_root_dir": RUNS_DIR,  # where outputs go with `logger: false`: not the working folder
                "callbacks": [TrainingCurves(), MetricsSummary(), RNGState()],
            },
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
    @property
    def run_config(self) -> Any:
        """This run's config: the subcommand's section (the whole config with ``run=False``)."""
        return self.config.get(str(self.subcommand), self.config)

    def before_instantiate_classes(self) -> None:
        config = self.run_config
        logger = config.trainer.logger
        if getattr(getattr(logger, "init_args", None), "name", "") is None:
            logger.init_args.name = experiment_name(config.get("config") or [])

    def instantiate_classes(self) -> None:
        """Build data, task and trainer; fail with a :class:`ConfigurationError` naming the cause."""
        configured = configured_data_attributes(self.run_config.model)
        try:
            super().instantiate_classes()
        except (ValueError, TypeError, OSError) as error:
            cause = root_cause(error)
            raise ConfigurationError(f"cannot build the config: {type(cause).__name__}: {cause}") from error
        try:
            check_data_sizes("the model is configured (by the config or the checkpoint's hyperparameters)",
                             configured, self.datamodule, prefix="model.init_args.")
        except ValueError as error:
            raise ConfigurationError(str(error)) from None
        drop_skipped_links(self.model)
        summary = self.summary_callback
        if summary is not None:
            summary.config_paths = [str(path) for path in self.run_config.get("config") or []]

    def _parse_ckpt_path(self) -> None:
        # Lightning reads --ckpt_path's hyperparameters here with a bare torch.load: name a cut-off file.
        ckpt_path = self.config.get(str(self.config.get("subcommand")), {}).get("ckpt_path")
        if ckpt_path and Path(ckpt_path).is_file():
            check_checkpoint_file(ckpt_path)
        super()._parse_ckpt_path()

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        """The configured trainer, writing checkpoints atomically (a kill never leaves half a file)."""
        trainer = super().instantiate_trainer(**kwargs)
        use_atomic_checkpoints(trainer)
        warn_if_bfloat16_is_emulated(trainer)
        return trainer

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
            Console().print(render_summary(summary.latest), soft_wrap=True)


def cpu_has_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX); True where torch cannot tell."""
    names = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private, hence probed
    probes = [getattr(torch.cpu, name, None) for name in names]
    if not all(callable(probe) for probe in probes):
        return True
    return any(probe() for probe in probes)


def warn_if_bfloat16_is_emulated(trainer: L.Trainer) -> None:
    """Warns when ``precision: bf16-mixed`` runs on a CPU without bfloat16 instructions.

    There oneDNN emulates bfloat16 with float32 arithmetic and conversions, so the run is no faster and
    often slower than ``32-true``; on a CPU with them the DCGAN step takes about half the time
    (``python -m benchmarks.gan_step``).
    """
    on_cpu = trainer.strategy.root_device.type == "cpu"
    if "bf16" in str(trainer.precision) and on_cpu and not cpu_has_bfloat16():
        rank_zero_warn(
            f"trainer.precision: {trainer.precision} on a CPU without bfloat16 instructions (AVX512-BF16 or "
            "AMX) is emulated and may be slower than float32; pass --trainer.precision 32-true to compare"
        )


def experiment_name(config_paths: list[Any]) -> str:
    """The last ``--config`` file's stem: ``experiments/gunpoint_lstm.yaml`` → ``gunpoint_lstm``."""
    return Path(str(config_paths[-1])).stem if config_paths else "torchseq"


def configured_data_attributes(model_config: Any) -> dict[str, Any]:
    """Linked attributes the config itself sets for the task (other than to its defaults).

    Normally none: the links fill them at instantiation. They appear when a user sets one by hand or
    when ``--ckpt_path`` brings the checkpoint's hyperparameters, i.e. a model built for other data.
    """
    init_args = model_config.get("init_args") or {}
    module_name, _, class_name = str(model_config.get("class_path", "")).rpartition(".")
    try:
        parameters = inspect.signature(getattr(importlib.import_module(module_name), class_name)).parameters
    except (ImportError, AttributeError, ValueError):
        return {}
    return {
        name: init_args.get(name) for name in DATA_ATTRIBUTES
        if name in parameters and init_args.get(name) not in (None, parameters[name].default)
    }


def root_cause(error: BaseException) -> BaseException:
    """The innermost exception of a chain: the data module's own message, not jsonargparse's wrapping."""
    while error.__cause__ is not None or error.__context__ is not None:
        error = error.__cause__ or error.__context__
    return error


def drop_skipped_links(module: L.LightningModule) -> None:
    """Forget the linked data attributes ``module``'s class does not accept (see the module docstring)."""
    accepted = inspect.signature(type(module).__init__).parameters
    for name in DATA_ATTRIBUTES:
        if name not in accepted:
            module.hparams.pop(name, None)
            # The logger merges the *initial* hparams with the data module's: drop the link there too.
            module._hparams_initial.pop(name, None)


#: ``torchseq <tool> --config …``: commands beside LightningCLI's, each the ``main(args)`` of a module
#: in :mod:`torchseq.tools`.
TOOLS = {
    "tune": "torchseq.tools.tune",                        # Optuna hyperparameter search over a fit config
    "attack": "torchseq.tools.attack",                    # robust accuracy under FGSM / PGD
    "gradient-flow": "torchseq.tools.gradient_flow",      # ‖∂L/∂h_t‖ over t for RNN / LSTM / GRU
    "long-dependency": "torchseq.tools.long_dependency",  # the adding / copy grid
    "export": "torchseq.tools.export",                    # a checkpoint's model as ONNX / ExportedProgram
    "sample": "torchseq.tools.sample",                    # a PNG grid from a GAN / VAE checkpoint (--digit)
}


def main(args: Any = None) -> None:
    """Entry point of the ``torchseq`` console script."""
    command_line = sys.argv[1:] if args is None else args
    if isinstance(command_line, list | tuple) and command_line and command_line[0] in TOOLS:
        importlib.import_module(TOOLS[command_line[0]]).main(list(command_line[1:]))
        return
    # The data sets are in-memory tensors: loader worker processes would only add start-up time.
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    # Expected whenever a config names an optimizer: the task's own Adam(lr=1e-3) is only the default.
    warnings.filterwarnings("ignore", ".*configure_optimizers` will be overridden by.*")
    # Lightning 2.6's own use of a torch API that torch now deprecates; nothing a user can act on.
    warnings.filterwarnings("ignore", r".*isinstance\(treespec, LeafSpec\)` is deprecated.*")
    try:
        TorchseqCLI(args=args)
    except ConfigurationError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
