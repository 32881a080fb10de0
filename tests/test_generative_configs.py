"""Every generative experiment config parses and builds its task, data module and callbacks, as configured:
the callbacks it lists, its options and latent sizes, and data-shaped inputs give data-shaped outputs."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
import yaml

from torchseq.cli import TorchseqCLI
from torchseq.data import AnomalyDataModule, MNIST5kDataModule, MNISTDataModule
from torchseq.tasks.autoencoding import AnomalyAutoencoderTask, AutoencoderTask
from torchseq.tasks.gan import AuxiliaryClassifierGANTask, ConditionalGANTask, GANTask
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
    "acgan": (AuxiliaryClassifierGANTask, MNIST5kDataModule),
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


@pytest.mark.parametrize("name", sorted(path.stem.removesuffix("_mnist60k")
                                        for path in EXPERIMENTS.glob("*_mnist60k.yaml")))
def test_full_mnist_variant_layers_on_its_config(tmp_path, name: str) -> None:
    """``--config X.yaml --config X_mnist60k.yaml``: X's task and callbacks, full MNIST with opt-in
    download."""
    overlay = EXPERIMENTS / f"{name}_mnist60k.yaml"
    arguments = ["--config", str(EXPERIMENTS / f"{name}.yaml"), "--config", str(overlay),
                 "--trainer.logger", "false", "--trainer.default_root_dir", str(tmp_path)]
    cli = TorchseqCLI(args=arguments, run=False)  # download=True: nothing is fetched before fit
    task_class, _ = CONFIGS[name]
    assert isinstance(cli.model, task_class) and isinstance(cli.datamodule, MNISTDataModule)
    assert cli.datamodule.download and cli.datamodule.root == "data" and cli.datamodule.as_images
    layered = yaml.safe_load(overlay.read_text())
    assert cli.trainer.max_epochs == layered["trainer"]["max_epochs"]
    decay_start = cli.model.hparams.get("lr_decay_start")  # the decay must end inside the run
    assert decay_start is None or decay_start < cli.trainer.max_epochs
    base = yaml.safe_load((EXPERIMENTS / f"{name}.yaml").read_text())
    for key, value in (layered.get("model") or {}).get("init_args", {}).items():
        base["model"]["init_args"][key] = value
    assert_built_as_configured(cli, base)


def test_every_mnist5k_generative_config_has_a_full_mnist_variant() -> None:
    images = {name for name, (_, data) in CONFIGS.items() if data is MNIST5kDataModule
              and "autoencoder" not in name}
    assert {path.stem.removesuffix("_mnist60k") for path in EXPERIMENTS.glob("*_mnist60k.yaml")} == images


@pytest.mark.parametrize(("native", "precision", "warned"), [
    (False, "bf16-mixed", True), (True, "bf16-mixed", False), (False, "32-true", False),
])
def test_bf16_on_a_cpu_without_bfloat16_instructions_is_flagged(
    tmp_path, monkeypatch, native: bool, precision: str, warned: bool
) -> None:
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        monkeypatch.setattr(torch.cpu, probe, lambda: native, raising=False)
    arguments = ["--config", str(EXPERIMENTS / "dcgan.yaml"), "--trainer.logger", "false",
                 "--trainer.precision", precision, "--trainer.default_root_dir", str(tmp_path)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        TorchseqCLI(args=arguments, run=False)
    flagged = [w for w in caught if "without bfloat16 instructions" in str(w.message)]
    assert len(flagged) == warned
    if warned:
        assert f"trainer.precision: {precision}" in str(flagged[0].message)
