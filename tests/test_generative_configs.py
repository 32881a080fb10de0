"""Every generative experiment config parses and builds its task, data module and callbacks, as configured:
the callbacks it lists, its options and latent sizes, and data-shaped inputs give data-shaped outputs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

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
    "vae_z16": (VAETask, MNIST5kDataModule),
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
    assert_built_as_configured(cli, yaml.safe_load((EXPERIMENTS / f"{name}.yaml").read_text()))


def assert_built_as_configured(cli: TorchseqCLI, config: dict) -> None:
    """The config's callbacks, options and sizes are the built run's, and data-shaped inputs go through."""
    callbacks = config["trainer"].get("callbacks", [])
    listed = {callback["class_path"].rpartition(".")[2] for callback in callbacks}
    assert listed <= {type(callback).__name__ for callback in cli.trainer.callbacks}
    task, options = cli.model.eval(), config["model"]["init_args"]
    for key, value in options.items():
        if not isinstance(value, dict):  # the task's own options; dicts are its networks
            built = task.hparams[key]
            assert (list(built) if isinstance(built, tuple) else built) == value, key
    latent_sizes = [network.get("init_args", {}).get("latent_dim") for network in options.values()
                    if isinstance(network, dict)]
    for size in filter(None, latent_sizes):
        assert task.latent_dim == size

    data = cli.datamodule
    image_shape = getattr(data, "image_shape", None)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        if isinstance(task, GANTask):
            output = task.sample(torch.randn(3, task.latent_dim, generator=generator))
            expected = (3, *image_shape)
        else:
            inputs = torch.rand(3, *image_shape, generator=generator) if image_shape else \
                torch.rand(3, data.sequence_length, data.input_size, generator=generator)
            output, expected = task.reconstruct(inputs), inputs.shape
    assert tuple(output.shape) == tuple(expected) and output.isfinite().all()
    if image_shape:
        assert output.min() >= 0 and output.max() <= 1  # images in the data's [0, 1] range
