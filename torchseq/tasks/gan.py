"""Training a GAN with Lightning's manual optimisation: two optimizers, a configurable step ratio.

Each training batch gives the discriminator one step; after every ``d_steps_per_g_step`` discriminator
steps the generator takes one. The losses are the standard (non-saturating) ones on logits:

- discriminator: ½·[BCE(D(x), 1) + BCE(D(G(z)), 0)], i.e. the BCE over the real and fake halves;
- generator: BCE(D(G(z)), 1), i.e. −log D(G(z)), which gives strong gradients while D wins.

**``max_steps`` under manual optimisation.** Lightning's ``trainer.global_step`` counts calls to
``optimizer.step()`` of *either* optimizer (``optim_step_progress.total.completed``), so one batch
advances it by 2 when both networks step and by 1 when only the discriminator does. With
``d_steps_per_g_step = k``, ``max_steps = S`` stops after about S·k/(k+1) batches
(``tests/test_generative_gan.py`` checks ``global_step == d_steps + g_steps`` and the ratio).
Prefer ``max_epochs`` for GANs.

The step counters are buffers, so they are saved in checkpoints and the ratio carries on after resume.
**Generator EMA.** With ``generator_ema_decay = β`` the task also keeps an exponential moving average
of the generator's weights (``torch.optim.swa_utils.AveragedModel``), updated after every generator
step: θ_EMA ← β·θ_EMA + (1 − β)·θ. Training uses the raw generator; everything that *draws* images
(:meth:`sample`, :meth:`forward`, so the grids, the sample-quality metrics, ``torchseq sample`` and
export) uses the average, which smooths out the oscillation of adversarial training. BatchNorm running
statistics are not averaged: statistics gathered under other weights do not fit the averaged ones. Before
the average draws after a change of its weights, its BatchNorm layers are re-estimated from its own
activations on ``EMA_BATCHNORM_SAMPLES`` noise vectors of a fixed seed (:meth:`refresh_ema_batchnorm`),
so they depend on the weights alone and the global random stream is untouched. The average lives in the
state dict (``generator_ema.*``), so it resumes exactly.

**Differentiable augmentation.** ``augment_translation`` / ``augment_cutout`` > 0 make the discriminator
see every training image — real, and generated in both networks' steps — randomly shifted and with a
square cut out (:class:`~torchseq.models.diff_augment.DiffAugment`), which keeps it from memorising a
small training set. Validation and test show it the images as they are.

**R1 penalty.** ``r1_penalty = γ > 0`` adds γ/2 · E‖∇ₓ D(x)‖² over real training images (as D sees them,
after augmentation) to the discriminator's loss (Mescheder, Geiger & Nowozin 2018, "Which training methods
for GANs actually converge?"): D is pushed to be flat on the data, which damps the oscillation of
the two players around the equilibrium. It takes one more forward and a double backward through D on
the real batch each discriminator step; logged as ``train/r1``.

**Learning-rate decay.** ``lr_decay_start = s`` keeps both learning rates at ``lr`` for epochs 0 … s − 1
and then lowers them linearly, to ``lr · (E − e) / (E − s)`` in epoch e of ``trainer.max_epochs = E``
(the last epoch trains at ``lr / (E − s)``): a GAN that oscillates around a good generator at a
constant step size settles as the step shrinks. The rate is a function of the epoch alone, set at the
start of each epoch, so a resumed run continues it exactly; logged as ``train/lr``.

Logged: ``train/d_loss``, ``train/g_loss`` (step and epoch), ``train/d_real``, ``train/d_fake`` (mean
probability the discriminator gives real and generated images); the same ``val/d_*`` and ``test/d_*``
on held-out images, whose validation and test loops are also where
:class:`~torchseq.callbacks.sample_quality.SampleQuality` measures.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from torchseq.checks import check_positive_int
from torchseq.models.autoencoder import ImageShape
from torchseq.models.diff_augment import DiffAugment
from torchseq.models.gan import ImageGenerator

EMA_BATCHNORM_SAMPLES = 1024
"""Noise vectors whose activations re-estimate the generator average's BatchNorm statistics."""
EMA_BATCHNORM_BATCH = 256
EMA_BATCHNORM_SEED = 0


class GANTask(L.LightningModule):
    """Adversarial training of ``generator`` against ``discriminator``.

    The task owns its two optimizers, so a config must not give an ``optimizer:`` section (LightningCLI
    would replace both by one); set ``lr`` and ``betas`` here instead.

    Args:
        generator: builds the generator as ``generator(image_shape)``, an
            :class:`~torchseq.models.gan.ImageGenerator` (noise (B, latent_dim) → images).
        discriminator: builds the discriminator as ``discriminator(image_shape)``
            (images → real-vs-fake logits (B,)).
        image_shape: (C, H, W) of the images (linked from the data module by the CLI).
        lr: Adam learning rate of both networks (2e-4 with β₁ = 0.5 is the DCGAN paper's choice;
            the TensorFlow tutorial uses 1e-4 with Adam's default betas).
        betas: Adam betas of both optimizers.
        d_steps_per_g_step: discriminator steps per generator step (≥ 1).
        generator_ema_decay: β of the generator's moving average that draws the samples, in [0, 1)
            (e.g. 0.999); None: samples come from the trained generator itself.
        augment_translation: largest random shift of the images D trains on, as a fraction of their size
            (0: none; DiffAugment uses 0.125).
        augment_cutout: side of the square cut out of the images D trains on, as a fraction of their
            size (0: none; DiffAugment uses 0.5).
        r1_penalty: γ of the R1 gradient penalty on real images (0: none; Mescheder et al. use 10).
        lr_decay_start: first epoch of the linear decay of both learning rates to 0 at
            ``trainer.max_epochs`` (None: constant ``lr``).
    """

    def __init__(
        self,
        generator: Callable[[ImageShape], ImageGenerator],
        discriminator: Callable[[ImageShape], nn.Module],
        image_shape: ImageShape = (1, 28, 28),
        lr: float = 2e-4,
        betas: tuple[float, float] = (0.5, 0.999),
        d_steps_per_g_step: int = 1,
        generator_ema_decay: float | None = None,
        augment_translation: float = 0.0,
        augment_cutout: float = 0.0,
        r1_penalty: float = 0.0,
        lr_decay_start: int | None = None,
    ) -> None:
        super().__init__()
        check_positive_int("d_steps_per_g_step", d_steps_per_g_step)
        check_positive_int("lr_decay_start", lr_decay_start, minimum=0, optional=True)
        if not (isinstance(r1_penalty, int | float) and r1_penalty >= 0):
            raise ValueError(f"r1_penalty: expected a float ≥ 0, got {r1_penalty!r}")
        if generator_ema_decay is not None and not 0.0 <= generator_ema_decay < 1.0:
            raise ValueError(
                f"generator_ema_decay: expected None or a float in [0, 1), got {generator_ema_decay!r}"
            )
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.generator = generator(tuple(image_shape))
        self.discriminator = discriminator(tuple(image_shape))
        self.generator_ema = (
            None
            if generator_ema_decay is None
            else AveragedModel(
                self.generator, multi_avg_fn=get_ema_multi_avg_fn(generator_ema_decay), use_buffers=False
            ).requires_grad_(False)  # updated in place, never trained
        )
        self._ema_batchnorm_stale = True  # not state: a loaded average is re-estimated before it draws
        self.register_load_state_dict_post_hook(_mark_ema_batchnorm_stale)
        background = float(self.generator.from_unit_interval(torch.zeros(())))
        self.augment = (
            DiffAugment(augment_translation, augment_cutout, fill=background)
            if augment_translation or augment_cutout
            else nn.Identity()
        )
        self.register_buffer("d_steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("g_steps", torch.zeros((), dtype=torch.long))

    @property
    def latent_dim(self) -> int:
        return self.generator.latent_dim

    @property
    def drawing_generator(self) -> nn.Module:
        """The generator that draws samples: the moving average when there is one, else the generator."""
        return self.generator if self.generator_ema is None else self.generator_ema.module

    def forward(self, noise: Tensor) -> Tensor:
        """Noise (B, latent_dim) → generated images in the generator's output range."""
        self.refresh_ema_batchnorm()
        return self.drawing_generator(noise)

    def refresh_ema_batchnorm(self) -> None:
        """Re-estimates the BatchNorm statistics of the generator average if its weights changed since.

        Each BatchNorm layer of the average is reset and then sees, in training mode with a cumulative
        mean (``momentum=None``), its own activations on ``EMA_BATCHNORM_SAMPLES`` noise vectors drawn
        from a private generator seeded with ``EMA_BATCHNORM_SEED``. A no-op without an average, without
        BatchNorm, or when nothing changed.
        """
        if self.generator_ema is None or not self._ema_batchnorm_stale:
            return
        average = self.generator_ema.module
        norms = [m for m in average.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        momenta, was_training = [m.momentum for m in norms], average.training
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None
        average.train()
        randomness = torch.Generator(device=self.device).manual_seed(EMA_BATCHNORM_SEED)
        with torch.no_grad():
            for start in range(0, EMA_BATCHNORM_SAMPLES if norms else 0, EMA_BATCHNORM_BATCH):
                count = min(EMA_BATCHNORM_BATCH, EMA_BATCHNORM_SAMPLES - start)
                noise = torch.randn(count, self.latent_dim, generator=randomness, device=self.device)
                self.draw_with_average(noise)
        for norm, momentum in zip(norms, momenta, strict=True):
            norm.momentum = momentum
        average.train(was_training)
        self._ema_batchnorm_stale = False

    def draw_with_average(self, noise: Tensor) -> Tensor:
        """The generator average's images from ``noise`` (a conditional task adds its cycled labels)."""
        return self.generator_ema.module(noise)

    # -- what a conditional task overrides (unconditional: no labels, no extra random draws) ---------
    def real_conditions(self, batch: Sequence[Tensor]) -> Tensor | None:
        """What the real images are conditioned on (None: nothing)."""
        return None

    def fake_conditions(self, count: int) -> Tensor | None:
        """What generated images are conditioned on (None: nothing)."""
        return None

    def generate(self, noise: Tensor, conditions: Tensor | None) -> Tensor:
        return self.generator(noise)

    def discriminate(self, images: Tensor, conditions: Tensor | None) -> Tensor:
        return self.discriminator(images)

    def discriminator_loss(
        self,
        real: Tensor,
        fake: Tensor,
        real_conditions: Tensor | None = None,
        fake_conditions: Tensor | None = None,
        *,
        augment: bool = False,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """½·[BCE(D(real), 1) + BCE(D(fake), 0)], and the figures to log (detached): ``d_loss`` and the
        mean probabilities D gives each half, ``d_real`` and ``d_fake``.

        ``augment``: D sees both halves through :attr:`augment` (its training step does). Computes only,
        logs nothing, so it also runs outside a trainer (``benchmarks/gan_step.py`` times it).
        """
        if augment:
            real, fake = self.augment(real), self.augment(fake)
        real_logits = self.discriminate(real, real_conditions)
        fake_logits = self.discriminate(fake, fake_conditions)
        loss = 0.5 * (_bce(real_logits, 1.0) + _bce(fake_logits, 0.0))
        return loss, _discriminator_figures(loss, real_logits, fake_logits)

    def log_discriminator(self, stage: str, figures: dict[str, Tensor], batch_size: int) -> None:
        """``{stage}/d_loss`` (per step too in training, and in the progress bar) and the other figures."""
        self.log(
            f"{stage}/d_loss",
            figures["d_loss"],
            on_step=stage == "train",
            on_epoch=True,
            prog_bar=True,
            batch_size=batch_size,
        )
        self.log_dict(
            {f"{stage}/{name}": value for name, value in figures.items() if name != "d_loss"},
            on_step=False,
            on_epoch=True,
            batch_size=batch_size,
        )

    def generator_loss(self, fake: Tensor, conditions: Tensor | None) -> Tensor:
        """The non-saturating generator loss, BCE(D(G(z)), 1) = −log D(G(z))."""
        return _bce(self.discriminate(self.augment(fake), conditions), 1.0)

    def training_step(self, batch: Sequence[Tensor], batch_idx: int) -> None:
        real = self.generator.from_unit_interval(batch[0])  # (B, C, H, W) in the generator's range
        d_optimizer, g_optimizer = self.optimizers()
        batch_size = len(real)
        real_conditions = self.real_conditions(batch)

        with self.toggled_optimizer(d_optimizer):
            conditions = self.fake_conditions(batch_size)
            fake = self.generate(self._noise(batch_size), conditions).detach()
            d_loss, figures = self.discriminator_loss(real, fake, real_conditions, conditions, augment=True)
            if self.hparams.r1_penalty:
                penalty = self.r1(real, real_conditions)
                d_loss = d_loss + penalty
                figures["r1"] = penalty.detach()
            d_optimizer.zero_grad()
            self.manual_backward(d_loss)
            d_optimizer.step()
        self.d_steps += 1
        self.log_discriminator("train", figures, batch_size)

        if self.d_steps % self.hparams.d_steps_per_g_step == 0:
            with self.toggled_optimizer(g_optimizer):
                conditions = self.fake_conditions(batch_size)
                fake = self.generate(self._noise(batch_size), conditions)
                g_loss = self.generator_loss(fake, conditions)
                g_optimizer.zero_grad()
                self.manual_backward(g_loss)
                g_optimizer.step()
            self.g_steps += 1
            if self.generator_ema is not None:
                self.generator_ema.update_parameters(self.generator)
                self._ema_batchnorm_stale = True
            self.log(
                "train/g_loss", g_loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=batch_size
            )

    def r1(self, real: Tensor, conditions: Tensor | None) -> Tensor:
        """γ/2 · mean over the batch of ‖∇ₓ D(x)‖² at the real images D trains on (after :attr:`augment`).

        The training step logs it as ``train/r1``.
        """
        images = self.augment(real).detach().requires_grad_(True)
        (gradient,) = torch.autograd.grad(
            self.discriminate(images, conditions).sum(), images, create_graph=True
        )
        return 0.5 * self.hparams.r1_penalty * gradient.square().flatten(1).sum(1).mean()

    def validation_step(self, batch: Sequence[Tensor], batch_idx: int) -> None:
        """The discriminator on held-out real images and fresh samples (also gives callbacks a val loop)."""
        self._held_out_step(batch, "val")

    def test_step(self, batch: Sequence[Tensor], batch_idx: int) -> None:
        """The discriminator on test images and fresh samples (also gives callbacks a test loop)."""
        self._held_out_step(batch, "test")

    def _held_out_step(self, batch: Sequence[Tensor], stage: str) -> None:
        real = self.generator.from_unit_interval(batch[0])
        conditions = self.fake_conditions(len(real))
        fake = self.generate(self._noise(len(real)), conditions)
        _, figures = self.discriminator_loss(real, fake, self.real_conditions(batch), conditions)
        self.log_discriminator(stage, figures, len(real))

    def _noise(self, count: int) -> Tensor:
        return torch.randn(count, self.latent_dim, device=self.device)

    def on_train_epoch_start(self) -> None:
        """Sets both optimizers' learning rate for this epoch (``lr_decay_start``)."""
        lr = self.hparams.lr * self.lr_factor(self.current_epoch)
        for optimizer in self.trainer.optimizers:
            for group in optimizer.param_groups:
                group["lr"] = lr
        self.log("train/lr", lr, on_step=False, on_epoch=True)

    def lr_factor(self, epoch: int) -> float:
        """The learning rate of ``epoch`` as a fraction of ``lr``: 1, then linear towards 0."""
        start, end = self.hparams.lr_decay_start, self.trainer.max_epochs
        if start is None:
            return 1.0
        if end is None or end <= start:
            raise ValueError(
                f"lr_decay_start: expected an epoch before trainer.max_epochs = {end}, got {start}"
            )
        return 1.0 if epoch < start else (end - epoch) / (end - start)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        """[discriminator's Adam, generator's Adam], in that order."""
        lr, betas = self.hparams.lr, tuple(self.hparams.betas)
        return [
            torch.optim.Adam(self.discriminator.parameters(), lr=lr, betas=betas),
            torch.optim.Adam(self.generator.parameters(), lr=lr, betas=betas),
        ]

    # -- what the image callbacks call ------------------------------------------------------------
    def sample(self, noise: Tensor) -> Tensor:
        """Images in [0, 1] drawn from ``noise`` (B, latent_dim) by :attr:`drawing_generator`."""
        return self.generator.to_unit_interval(self(noise))


def _mark_ema_batchnorm_stale(task: GANTask, incompatible_keys: object) -> None:
    task._ema_batchnorm_stale = True


def _discriminator_figures(loss: Tensor, real_logits: Tensor, fake_logits: Tensor) -> dict[str, Tensor]:
    return {
        "d_loss": loss.detach(),
        "d_real": real_logits.detach().sigmoid().mean(),
        "d_fake": fake_logits.detach().sigmoid().mean(),
    }


def _bce(logits: Tensor, target: float) -> Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


class ConditionalGANTask(GANTask):
    """A class-conditional GAN: G(z, y) draws a digit of class y, D(x, y) judges image and class together.

    Real images come with their labels; generated ones get labels drawn uniformly at random. The networks
    are built as ``generator(image_shape, num_classes)`` and ``discriminator(image_shape, num_classes)``
    (:class:`~torchseq.models.gan.ConditionalDCGANGenerator`, and ``ProjectionDiscriminator`` or
    ``ConditionalDCGANDiscriminator``).
    :meth:`sample` without labels cycles through the classes (0, 1, …, 9, 0, …), so the callbacks that
    call ``sample(z)`` see every class equally often.

    Args:
        num_classes: number of classes (linked from the data module by the CLI).
        Others: as :class:`GANTask`.
    """

    def __init__(
        self,
        generator: Callable[[ImageShape, int], ImageGenerator],
        discriminator: Callable[[ImageShape, int], nn.Module],
        image_shape: ImageShape = (1, 28, 28),
        num_classes: int = 10,
        lr: float = 2e-4,
        betas: tuple[float, float] = (0.5, 0.999),
        d_steps_per_g_step: int = 1,
        generator_ema_decay: float | None = None,
        augment_translation: float = 0.0,
        augment_cutout: float = 0.0,
        r1_penalty: float = 0.0,
        lr_decay_start: int | None = None,
    ) -> None:
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes: expected an int ≥ 2, got {num_classes!r}")
        super().__init__(
            partial(generator, num_classes=num_classes),
            partial(discriminator, num_classes=num_classes),
            image_shape,
            lr,
            betas,
            d_steps_per_g_step,
            generator_ema_decay,
            augment_translation,
            augment_cutout,
            r1_penalty,
            lr_decay_start,
        )
        self.save_hyperparameters()
        self.num_classes = num_classes

    def real_conditions(self, batch: Sequence[Tensor]) -> Tensor:
        return batch[1]

    def fake_conditions(self, count: int) -> Tensor:
        return torch.randint(self.num_classes, (count,), device=self.device)

    def generate(self, noise: Tensor, conditions: Tensor | None) -> Tensor:
        return self.generator(noise, conditions)

    def discriminate(self, images: Tensor, conditions: Tensor | None) -> Tensor:
        return self.discriminator(images, conditions)

    def forward(self, noise: Tensor, labels: Tensor | None = None) -> Tensor:
        """Noise (B, latent_dim) and labels (B,) → generated images in the generator's output range."""
        labels = self.cycled_labels(len(noise)) if labels is None else labels
        self.refresh_ema_batchnorm()
        return self.drawing_generator(noise, labels)

    def draw_with_average(self, noise: Tensor) -> Tensor:
        return self.generator_ema.module(noise, self.cycled_labels(len(noise)))

    def cycled_labels(self, count: int) -> Tensor:
        """0, 1, …, num_classes − 1, 0, 1, … (count,): every class equally often."""
        return torch.arange(count, device=self.device) % self.num_classes

    def sample(self, noise: Tensor, labels: Tensor | None = None) -> Tensor:
        """Images in [0, 1] of classes ``labels`` (default: cycling through the classes)."""
        return self.generator.to_unit_interval(self(noise, labels))


class AuxiliaryClassifierGANTask(ConditionalGANTask):
    """The AC-GAN (Odena, Olah & Shlens 2017): a class-conditional G, and a D that sees only the image
    and names its class besides judging it real or fake.

    D's loss adds ``classification_weight`` times the cross-entropy of its class logits against the
    labels, on real images (their labels) and on generated ones (the labels they were drawn for); G's loss
    adds the same weight times the cross-entropy of D's class logits on its samples against the labels it
    was asked for, which pushes every sample to be recognisably its digit. The discriminator must give
    both heads: ``discriminator.both(images) → (real-vs-fake logits (B,), class logits (B, K))``
    (:class:`~torchseq.models.gan.AuxiliaryClassifierDiscriminator`). Also logged: ``{stage}/d_class_loss``.

    Args:
        classification_weight: weight of the class cross-entropy in both losses (> 0).
        Others: as :class:`ConditionalGANTask`.
    """

    def __init__(
        self,
        generator: Callable[[ImageShape, int], ImageGenerator],
        discriminator: Callable[[ImageShape, int], nn.Module],
        image_shape: ImageShape = (1, 28, 28),
        num_classes: int = 10,
        lr: float = 2e-4,
        betas: tuple[float, float] = (0.5, 0.999),
        d_steps_per_g_step: int = 1,
        generator_ema_decay: float | None = None,
        augment_translation: float = 0.0,
        augment_cutout: float = 0.0,
        classification_weight: float = 1.0,
        r1_penalty: float = 0.0,
        lr_decay_start: int | None = None,
    ) -> None:
        if not classification_weight > 0:
            raise ValueError(f"classification_weight: expected a float > 0, got {classification_weight!r}")
        super().__init__(
            generator, discriminator, image_shape, num_classes, lr, betas, d_steps_per_g_step,
            generator_ema_decay, augment_translation, augment_cutout, r1_penalty, lr_decay_start,
        )
        if not callable(getattr(self.discriminator, "both", None)):
            raise TypeError(
                f"discriminator: expected one with both(images) → (source logits, class logits), "
                f"got {type(self.discriminator).__name__}"
            )
        self.save_hyperparameters()

    def discriminator_loss(
        self,
        real: Tensor,
        fake: Tensor,
        real_conditions: Tensor | None = None,
        fake_conditions: Tensor | None = None,
        *,
        augment: bool = False,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """½·[BCE(D(real), 1) + BCE(D(fake), 0)] + w·½·[CE(C(real), y) + CE(C(fake), y_drawn)]; the
        figures are GANTask's (``d_loss`` is the adversarial half) and ``d_class_loss``."""
        if augment:
            real, fake = self.augment(real), self.augment(fake)
        real_logits, real_classes = self.discriminator.both(real)
        fake_logits, fake_classes = self.discriminator.both(fake)
        adversarial = 0.5 * (_bce(real_logits, 1.0) + _bce(fake_logits, 0.0))
        classification = 0.5 * (
            F.cross_entropy(real_classes, real_conditions) + F.cross_entropy(fake_classes, fake_conditions)
        )
        figures = _discriminator_figures(adversarial, real_logits, fake_logits)
        figures["d_class_loss"] = classification.detach()
        return adversarial + self.hparams.classification_weight * classification, figures

    def generator_loss(self, fake: Tensor, conditions: Tensor | None) -> Tensor:
        """−log D(G(z, y)) + w·CE(C(G(z, y)), y)."""
        logits, classes = self.discriminator.both(self.augment(fake))
        return _bce(logits, 1.0) + self.hparams.classification_weight * F.cross_entropy(classes, conditions)
