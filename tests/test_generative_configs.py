"""Every generative experiment config parses and builds its task, data module and callbacks."""

from __future__ import annotations

from pathlib import Path

import pytest

from torchseq.cli import TorchseqCLI
from torchseq.data import AnomalyDataModule, MNIST5kDataModule
from torchseq.tasks.autoencoding import AnomalyAutoencoderTask, AutoencoderTask
from torchseq.tasks.gan import ConditionalGANTask, GANTask
from torchseq.tasks.vae import VAETask

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
CONFIGS = {
    "autoencoder": (AutoencoderTask, MNIST5kDataModule),
    "conv_autoencoder": (AutoencoderTask, MNIST5kDataModule),
    "seq_autoencoder_mitdb": (AnomalyAutoencoderTask, AnomalyDataModule),
    "seq_autoencoder_yahoo": (AnomalyAutoencoderTask, AnomalyDataModule),
    "vae": (VAETask, MNIST5kDataModule),
    "gan": (GANTask, MNIST5kDataModule),
    "dcgan": (GANTask, MNIST5kDataModule),
    "conditional_dcgan": (ConditionalGANTask, MNIST5kDataModule),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_config_builds(tmp_path, name: str) -> None:
    arguments = ["--config", str(EXPERIMENTS / f"{name}.yaml"), "--trainer.logger", "false"]
    cli = TorchseqCLI(args=[*arguments, "--trainer.default_root_dir", str(tmp_path)], run=False)
    task_class, data_class = CONFIGS[name]
    assert isinstance(cli.model, task_class) and isinstance(cli.datamodule, data_class)
    if task_class is GANTask:  # the GAN task owns its optimizers: a config optimizer would replace both
        assert len(cli.model.configure_optimizers()) == 2
