"""GAN training under manual optimisation: step ratio, ``max_steps`` semantics, losses, resume."""

from __future__ import annotations

from functools import partial
from typing import Any

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from tests._tiny_generative import TinyImages, tiny_trainer
from torchseq.callbacks.rng_state import RNGState
from torchseq.models.gan import (
    ConditionalDCGANDiscriminator,
    ConditionalDCGANGenerator,
    DCGANDiscriminator,
    DCGANGenerator,
    MLPDiscriminator,
    MLPGenerator,
)
from torchseq.models.vae import VAE
from torchseq.tasks import gan as gan_task
from torchseq.tasks.gan import ConditionalGANTask, GANTask
from torchseq.tasks.vae import VAETask


def small_gan(
    d_steps_per_g_step: int = 1, generator_ema_decay: float | None = None, **options: Any
) -> GANTask:
    return GANTask(
        partial(MLPGenerator, latent_dim=8, hidden_sizes=(16, 32)),
        partial(MLPDiscriminator, hidden_sizes=(32, 16)),
        d_steps_per_g_step=d_steps_per_g_step,
        generator_ema_decay=generator_ema_decay,
        **options,
    )


class CountOptimizerSteps(L.Callback):
    """Counts ``step()`` calls per optimizer with torch's own step hooks, independently of the task."""

    def on_train_start(self, trainer, pl_module) -> None:
        self.counts = [0] * len(trainer.optimizers)
        for index, optimizer in enumerate(trainer.optimizers):
            optimizer.register_step_post_hook(partial(self._count, index))

    def _count(self, index: int, optimizer, args, kwargs) -> None:
        self.counts[index] += 1


@pytest.mark.parametrize("ratio", [1, 3])
def test_discriminator_to_generator_step_ratio_is_honoured(tmp_path, ratio: int) -> None:
    L.seed_everything(0)
    task, counter = small_gan(ratio), CountOptimizerSteps()
    batches = 9  # TinyImages(size=144) in batches of 16
    tiny_trainer(tmp_path, max_epochs=1, callbacks=[counter], limit_val_batches=0).fit(
        task, TinyImages(size=144)
    )
    d_steps, g_steps = counter.counts  # optimizers are [discriminator, generator]
    assert d_steps == batches and g_steps == batches // ratio
    assert (int(task.d_steps), int(task.g_steps)) == (d_steps, g_steps)


def test_max_steps_counts_the_steps_of_both_optimizers(tmp_path) -> None:
    """Lightning's global_step under manual optimisation = every optimizer.step(), D's and G's."""
    L.seed_everything(0)
    task, counter = small_gan(1), CountOptimizerSteps()
    trainer = tiny_trainer(tmp_path, max_steps=7, callbacks=[counter], limit_val_batches=0)
    trainer.fit(task, TinyImages(size=160))
    d_steps, g_steps = counter.counts
    assert trainer.global_step == d_steps + g_steps
    assert d_steps == g_steps == 4  # 2 steps a batch: after 3 batches 6 < 7, the 4th batch reaches 8


def test_losses_are_logged_and_finite(tmp_path) -> None:
    L.seed_everything(0)
    task = GANTask(DCGANGenerator, DCGANDiscriminator)
    trainer = tiny_trainer(tmp_path, max_epochs=1, limit_train_batches=2, limit_val_batches=1)
    trainer.fit(task, TinyImages(size=32))
    for name in ("train/d_loss", "train/g_loss", "train/d_real", "train/d_fake", "val/d_loss"):
        assert torch.isfinite(trainer.callback_metrics[name]), name
    samples = task.sample(torch.randn(5, task.latent_dim))
    assert samples.shape == (5, 1, 28, 28) and samples.min() >= 0 and samples.max() <= 1


def test_dcgan_trains_under_bf16_mixed_precision_with_r1_and_ema(tmp_path) -> None:
    """CPU autocast to bfloat16 (``trainer.precision: bf16-mixed``) with the R1 double backward and the
    generator average: finite losses, and the weights, their average and the samples stay float32."""
    L.seed_everything(0)
    task = GANTask(
        partial(DCGANGenerator, channels=(16, 8, 4)),
        partial(DCGANDiscriminator, channels=(4, 8)),
        r1_penalty=10.0,
        generator_ema_decay=0.9,
    )
    trainer = tiny_trainer(
        tmp_path, max_epochs=1, limit_train_batches=2, limit_val_batches=1, precision="bf16-mixed"
    )
    trainer.fit(task, TinyImages(size=32))
    for name in ("train/d_loss", "train/g_loss", "train/r1", "val/d_loss"):
        assert torch.isfinite(trainer.callback_metrics[name]), name
    assert {p.dtype for p in task.parameters()} == {torch.float32}
    assert int(task.g_steps) == 2
    samples = task.sample(torch.randn(5, task.latent_dim))
    assert samples.dtype == torch.float32 and torch.isfinite(samples).all()


class RecordGeneratorAfterEachStep(L.Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.snapshots = getattr(self, "snapshots", [])
        self.snapshots.append({k: v.clone() for k, v in pl_module.generator.named_parameters()})


def test_generator_ema_is_the_moving_average_of_every_generator_step_and_draws_the_samples(tmp_path) -> None:
    L.seed_everything(0)
    decay, recorder = 0.75, RecordGeneratorAfterEachStep()
    task = small_gan(1, generator_ema_decay=decay)
    tiny_trainer(tmp_path, max_epochs=1, callbacks=[recorder], limit_val_batches=0).fit(
        task, TinyImages(size=64)
    )
    assert len(recorder.snapshots) == int(task.g_steps) == 4
    expected = dict(recorder.snapshots[0])  # the first step copies, later ones blend
    for snapshot in recorder.snapshots[1:]:
        expected = {k: decay * v + (1 - decay) * snapshot[k] for k, v in expected.items()}
    averaged = dict(task.generator_ema.module.named_parameters())
    assert averaged.keys() == expected.keys()
    for key, value in expected.items():
        torch.testing.assert_close(averaged[key], value, rtol=1e-6, atol=1e-7, msg=key)
    assert not torch.equal(averaged["net.0.weight"], task.generator.state_dict()["net.0.weight"])
    noise = torch.randn(6, task.latent_dim)
    task.eval()
    with torch.no_grad():
        torch.testing.assert_close(
            task.sample(noise), task.generator.to_unit_interval(task.generator_ema.module(noise))
        )
    assert all(not p.requires_grad for p in task.generator_ema.parameters())


def sample_recording_first_batchnorm_inputs(task: GANTask) -> tuple[torch.nn.Module, list[torch.Tensor]]:
    """Draws 3 samples under inference mode, recording every input of the average's first BatchNorm."""
    first_norm = next(m for m in task.generator_ema.module.modules() if isinstance(m, torch.nn.BatchNorm1d))
    inputs: list[torch.Tensor] = []
    hook = first_norm.register_forward_pre_hook(lambda module, args: inputs.append(args[0].clone()))
    task.eval()
    with torch.inference_mode():  # as in Lightning's validation and test loops
        task.sample(torch.zeros(3, task.latent_dim))
    hook.remove()
    return first_norm, inputs


REESTIMATION_BATCHES = -(-gan_task.EMA_BATCHNORM_SAMPLES // gan_task.EMA_BATCHNORM_BATCH)


def test_generator_ema_batchnorm_statistics_are_its_own_activations_on_the_fixed_noise() -> None:
    """Averaged weights draw with statistics measured under those weights, not averaged ones."""
    torch.manual_seed(0)
    task = small_gan(1, generator_ema_decay=0.9)
    with torch.no_grad():
        for parameter in task.generator_ema.module.parameters():  # unlike the weights of its statistics
            parameter.add_(torch.randn_like(parameter))
    global_stream = torch.get_rng_state()
    first_norm, inputs = sample_recording_first_batchnorm_inputs(task)
    assert torch.equal(torch.get_rng_state(), global_stream)  # a private generator: resume stays exact

    assert len(inputs) == REESTIMATION_BATCHES + 1  # the re-estimation's batches, then the sample itself
    estimated = torch.cat(inputs[:-1])
    assert len(estimated) == gan_task.EMA_BATCHNORM_SAMPLES
    torch.testing.assert_close(first_norm.running_mean, estimated.mean(0))
    assert int(first_norm.num_batches_tracked) == REESTIMATION_BATCHES
    assert first_norm.momentum == 0.2 and not task.generator_ema.module.training  # both restored

    _, inputs = sample_recording_first_batchnorm_inputs(task)
    assert len(inputs) == 1  # unchanged weights: not re-estimated
    task.load_state_dict(task.state_dict())
    _, inputs = sample_recording_first_batchnorm_inputs(task)
    assert len(inputs) == REESTIMATION_BATCHES + 1  # loaded weights: re-estimated


def test_generator_ema_batchnorm_is_reestimated_after_training_moves_the_average(tmp_path) -> None:
    L.seed_everything(0)
    task = small_gan(1, generator_ema_decay=0.5)
    means = []
    for folder in ("first", "second"):
        tiny_trainer(tmp_path / folder, max_epochs=1, limit_val_batches=0).fit(task, TinyImages(size=32))
        first_norm, inputs = sample_recording_first_batchnorm_inputs(task)
        assert len(inputs) == REESTIMATION_BATCHES + 1
        torch.testing.assert_close(first_norm.running_mean, torch.cat(inputs[:-1]).mean(0))
        means.append(first_norm.running_mean.clone())
    assert not torch.equal(*means)


@pytest.mark.parametrize("decay", [-0.1, 1.0, 2])
def test_generator_ema_decay_outside_0_1_is_refused(decay) -> None:
    with pytest.raises(
        ValueError, match=rf"generator_ema_decay: expected None or a float in \[0, 1\), got {decay}"
    ):
        small_gan(1, generator_ema_decay=decay)


TASKS = {
    "gan": lambda: small_gan(2),
    "gan_with_ema": lambda: small_gan(1, generator_ema_decay=0.9),
    "gan_with_diff_augment": lambda: small_gan(augment_translation=0.125, augment_cutout=0.5),
    "gan_with_r1": lambda: small_gan(r1_penalty=10.0),
    "gan_with_lr_decay": lambda: small_gan(lr_decay_start=1),
    "conditional_gan": lambda: ConditionalGANTask(
        partial(ConditionalDCGANGenerator, latent_dim=8, embedding_dim=4, channels=(8, 8, 4)),
        partial(ConditionalDCGANDiscriminator, channels=(4, 8)),
        num_classes=4,
    ),
    "vae": lambda: VAETask(partial(VAE, latent_dim=2, hidden_sizes=(16,)), kl_warmup_steps=10),
}


@pytest.mark.parametrize("name", sorted(TASKS))
def test_resumed_run_ends_where_the_uninterrupted_run_ends(tmp_path, name: str) -> None:
    def run(
        max_epochs: int, folder: str, ckpt_path: str | None = None
    ) -> tuple[L.Trainer, L.LightningModule]:
        L.seed_everything(0)
        task = TASKS[name]()
        saver = ModelCheckpoint(dirpath=tmp_path / folder, filename="{epoch}", save_top_k=-1)
        trainer = tiny_trainer(
            tmp_path, max_epochs=max_epochs, enable_checkpointing=True, callbacks=[saver, RNGState()]
        )
        # weights_only=False: built in Python, the task's hyperparameters hold functools.partial factories
        trainer.fit(task, TinyImages(size=32), ckpt_path=ckpt_path, weights_only=False)
        return trainer, task

    straight_trainer, straight = run(4, "straight")
    run(2, "first_half")
    resumed_trainer, resumed = run(4, "second_half", ckpt_path=str(tmp_path / "first_half" / "epoch=1.ckpt"))

    assert resumed_trainer.global_step == straight_trainer.global_step
    expected, actual = straight.state_dict(), resumed.state_dict()
    assert expected.keys() == actual.keys()
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], rtol=0, atol=0, msg=key)
    for optimizer_expected, optimizer_actual in zip(
        straight_trainer.optimizers, resumed_trainer.optimizers, strict=True
    ):
        for state_expected, state_actual in zip(
            optimizer_expected.state.values(), optimizer_actual.state.values(), strict=True
        ):
            torch.testing.assert_close(state_actual["exp_avg"], state_expected["exp_avg"], rtol=0, atol=0)
    for metric, value in straight_trainer.callback_metrics.items():
        assert resumed_trainer.callback_metrics[metric].item() == pytest.approx(value.item(), rel=1e-6), (
            metric
        )


def test_gan_task_checks_the_ratio() -> None:
    with pytest.raises(ValueError, match=r"d_steps_per_g_step: expected a positive int, got 0"):
        small_gan(0)


def test_diff_augment_reaches_the_discriminator_in_training_only(tmp_path) -> None:
    L.seed_everything(0)
    task = small_gan(augment_translation=0.125, augment_cutout=0.5)
    assert task.augment.fill == -1.0  # the tanh generator's background
    seen: list[str] = []
    task.augment.register_forward_hook(lambda module, args, out: seen.append(task.trainer.state.stage.value))
    tiny_trainer(tmp_path, max_epochs=1, limit_train_batches=2, limit_val_batches=1).fit(
        task, TinyImages(size=64)
    )
    assert seen.count("train") == 2 * 3  # real and fake in D's step, fake in G's step, for 2 batches
    assert "validate" not in seen and "sanity_check" not in seen
    assert isinstance(small_gan().augment, torch.nn.Identity)


class LinearCritic(torch.nn.Module):
    """D(x) = w·x + b: its input gradient is w for every image, so R1 has a closed form."""

    def __init__(self, image_shape) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(int(torch.tensor(image_shape).prod()), 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.linear(images.flatten(1)).squeeze(1)


def test_r1_penalty_is_half_gamma_times_the_squared_input_gradient() -> None:
    torch.manual_seed(0)
    task = GANTask(partial(MLPGenerator, latent_dim=8, hidden_sizes=(16, 32)), LinearCritic, r1_penalty=3.0)
    weight = task.discriminator.linear.weight
    penalty = task.r1(torch.rand(5, 1, 28, 28), None)
    torch.testing.assert_close(penalty, 0.5 * 3.0 * weight.square().sum())
    (gradient,) = torch.autograd.grad(penalty, weight)  # the penalty trains D: d/dw (γ/2)‖w‖² = γ·w
    torch.testing.assert_close(gradient, 3.0 * weight)


def test_r1_penalty_enters_the_discriminator_step_only(tmp_path) -> None:
    L.seed_everything(0)
    task = small_gan(r1_penalty=10.0)
    calls: list[bool] = []
    original = task.r1
    task.r1 = lambda real, conditions: calls.append(task.discriminator.training) or original(real, conditions)
    trainer = tiny_trainer(tmp_path, max_epochs=1, limit_train_batches=3, limit_val_batches=1)
    trainer.fit(task, TinyImages(size=64))
    assert calls == [True] * 3  # once per discriminator step, never in validation
    assert float(task.trainer.callback_metrics["train/r1"]) > 0


@pytest.mark.parametrize("gamma", [-1.0, float("nan"), "10"])
def test_negative_or_non_numeric_r1_penalty_is_refused(gamma) -> None:
    with pytest.raises(ValueError, match=r"r1_penalty: expected a float ≥ 0, got"):
        GANTask(partial(MLPGenerator, latent_dim=8), MLPDiscriminator, r1_penalty=gamma)


class RecordLearningRates(L.Callback):
    """Both optimizers' learning rates as each training epoch ends."""

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.rates = getattr(self, "rates", [])
        self.rates.append([group["lr"] for opt in trainer.optimizers for group in opt.param_groups])


def test_lr_decay_holds_the_rate_then_lowers_it_linearly_in_both_optimizers(tmp_path) -> None:
    L.seed_everything(0)
    task, recorder = small_gan(lr=1e-3, lr_decay_start=2), RecordLearningRates()
    trainer = tiny_trainer(tmp_path, max_epochs=5, callbacks=[recorder], limit_val_batches=0)
    trainer.fit(task, TinyImages(size=32))
    # epochs 0, 1 at lr; then (5 - e) / (5 - 2) of it: 3/3, 2/3, 1/3
    expected = [1e-3, 1e-3, 1e-3, 2e-3 / 3, 1e-3 / 3]
    assert recorder.rates == [pytest.approx([rate, rate]) for rate in expected]
    assert trainer.callback_metrics["train/lr"].item() == pytest.approx(1e-3 / 3)


@pytest.mark.parametrize("start", [-1, 1.5, "3", True])
def test_lr_decay_start_that_is_not_an_epoch_is_refused(start) -> None:
    with pytest.raises(ValueError, match=rf"lr_decay_start: expected an integer ≥ 0 or None, got {start!r}"):
        small_gan(lr_decay_start=start)


def test_lr_decay_start_at_or_after_max_epochs_is_refused(tmp_path) -> None:
    trainer = tiny_trainer(tmp_path, max_epochs=3, limit_val_batches=0)
    expected = r"lr_decay_start: expected an epoch before trainer.max_epochs = 3, got 3"
    with pytest.raises(ValueError, match=expected):
        trainer.fit(small_gan(lr_decay_start=3), TinyImages(size=32))
