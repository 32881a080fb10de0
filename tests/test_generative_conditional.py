"""The class-conditional GAN: label plumbing, the conditional-accuracy callback, ``torchseq sample``."""

from __future__ import annotations

import textwrap
from functools import partial

import lightning as L
import pytest
import torch
from PIL import Image
from torch import Tensor, nn

from tests._tiny_generative import TinyImages, tiny_trainer
from torchseq.callbacks.sample_quality import ClassConditionalAccuracy
from torchseq.cli import main as torchseq_main
from torchseq.models.gan import (
    AuxiliaryClassifierDiscriminator,
    ConditionalDCGANDiscriminator,
    ConditionalDCGANGenerator,
    DCGANDiscriminator,
    ProjectionDiscriminator,
)
from torchseq.tasks.gan import AuxiliaryClassifierGANTask, ConditionalGANTask
from torchseq.tools.sample import main as sample_main


def tiny_conditional_gan(
    num_classes: int = 4, discriminator: type[nn.Module] = ConditionalDCGANDiscriminator
) -> ConditionalGANTask:
    return ConditionalGANTask(
        partial(ConditionalDCGANGenerator, latent_dim=8, embedding_dim=4, channels=(8, 8, 4)),
        partial(discriminator, channels=(4, 8)),
        num_classes=num_classes,
    )


def test_the_label_changes_the_image_and_bad_labels_are_refused() -> None:
    torch.manual_seed(0)
    generator = ConditionalDCGANGenerator(num_classes=3, latent_dim=4, embedding_dim=2, channels=(4, 4, 2))
    generator.eval()
    noise = torch.randn(1, 4).expand(3, 4)
    images = generator(noise, torch.tensor([0, 1, 2]))
    assert images.shape == (3, 1, 28, 28)
    assert not torch.allclose(images[0], images[1]) and not torch.allclose(images[1], images[2])
    with pytest.raises(ValueError, match=r"labels: expected values in 0\.\.2, got 0\.\.3"):
        generator(noise, torch.tensor([0, 1, 3]))
    with pytest.raises(ValueError, match=r"labels: expected int64 labels of shape \(3,\), got torch.float32"):
        generator(noise, torch.zeros(3))
    discriminator = ConditionalDCGANDiscriminator(num_classes=3, channels=(2, 4))
    assert discriminator(images, torch.tensor([0, 1, 2])).shape == (3,)


def test_the_projection_discriminator_adds_the_label_embedding_dotted_with_the_features() -> None:
    torch.manual_seed(0)
    discriminator = ProjectionDiscriminator(num_classes=3, channels=(2, 4)).eval()
    images, labels = torch.rand(5, 1, 28, 28), torch.tensor([0, 1, 2, 0, 1])
    plain = discriminator.net(images).squeeze(1)  # the unconditional D on the same weights
    # zero embeddings: at initialisation the label changes nothing
    torch.testing.assert_close(discriminator(images, labels), plain, rtol=0, atol=0)
    with torch.no_grad():
        discriminator.class_embedding.weight.normal_()
    features = discriminator.net[:-1](images)
    expected = plain + torch.stack([features[k] @ discriminator.class_embedding.weight[c] for k, c in
                                    enumerate(labels.tolist())])  # fmt: skip
    torch.testing.assert_close(discriminator(images, labels), expected)
    assert not torch.allclose(discriminator(images, labels), discriminator(images, (labels + 1) % 3))
    with pytest.raises(ValueError, match=r"labels: expected values in 0\.\.2, got 0\.\.3"):
        discriminator(images, torch.tensor([0, 1, 2, 3, 0]))
    with pytest.raises(ValueError, match=r"num_classes: expected at least 2 classes, got 1"):
        ProjectionDiscriminator(num_classes=1)


def test_sample_without_labels_cycles_through_the_classes() -> None:
    task = tiny_conditional_gan(num_classes=4).eval()
    noise = torch.randn(6, 8)
    with torch.no_grad():
        cycled = task.sample(noise)
        explicit = task.sample(noise, torch.tensor([0, 1, 2, 3, 0, 1]))
    torch.testing.assert_close(cycled, explicit, rtol=0, atol=0)


@pytest.mark.parametrize("discriminator", [ConditionalDCGANDiscriminator, ProjectionDiscriminator])
def test_a_tiny_run_trains_with_labels_and_logs_finite_losses(tmp_path, discriminator) -> None:
    L.seed_everything(0)
    task = tiny_conditional_gan(discriminator=discriminator)
    trainer = tiny_trainer(tmp_path, max_epochs=1, limit_train_batches=2, limit_val_batches=1)
    trainer.fit(task, TinyImages(size=32))
    for name in ("train/d_loss", "train/g_loss", "val/d_loss"):
        assert torch.isfinite(trainer.callback_metrics[name]), name
    assert int(task.g_steps) == 2


class LabelPixelNet(nn.Module):
    """A stand-in classifier: reads the class from pixel (0, 0) (class c ↔ value c / 10)."""

    def forward(self, images: Tensor) -> Tensor:
        return nn.functional.one_hot((images[:, 0, 0, 0] * 10).round().long(), 10).float()


class WritesLabelButTwoAsThree(L.LightningModule):
    """A stand-in conditional generator: right for every class but 2, which it draws as a 3."""

    latent_dim, num_classes = 2, 4

    def sample(self, noise: Tensor, labels: Tensor) -> Tensor:
        drawn = torch.where(labels == 2, 3, labels)
        return (drawn.float() / 10)[:, None, None, None].expand(-1, 1, 28, 28).clone()


def test_conditional_accuracy_counts_each_class_against_its_request() -> None:
    callback = ClassConditionalAccuracy(per_class=5, batch_size=7)
    callback.net = LabelPixelNet()
    accuracies = callback._accuracies(WritesLabelButTwoAsThree(), seed=0)
    assert accuracies.tolist() == [1.0, 1.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="per_class: expected a positive number of samples, got 0"):
        ClassConditionalAccuracy(per_class=0)


CONFIG = """
seed_everything: 0
trainer:
  max_epochs: 1
  limit_train_batches: 2
  limit_val_batches: 1
  enable_progress_bar: false
  enable_model_summary: false
checkpoint:
  dirpath: {folder}
  filename: tiny
model:
  class_path: torchseq.tasks.gan.ConditionalGANTask
  init_args:
    generator:
      class_path: torchseq.models.gan.ConditionalDCGANGenerator
      init_args: {{latent_dim: 8, embedding_dim: 4, channels: [8, 8, 4]}}
    discriminator:
      class_path: torchseq.models.gan.ConditionalDCGANDiscriminator
      init_args: {{channels: [4, 8]}}
data:
  class_path: tests._tiny_generative.TinyImages
  init_args: {{size: 32}}
"""


def test_torchseq_sample_draws_the_requested_digit_from_a_checkpoint(tmp_path, capsys) -> None:
    config = tmp_path / "tiny_conditional.yaml"
    config.write_text(textwrap.dedent(CONFIG.format(folder=tmp_path / "checkpoints")))
    torchseq_main(["fit", "--config", str(config), "--trainer.logger", "false",
                   "--trainer.default_root_dir", str(tmp_path)])  # fmt: skip
    checkpoint = tmp_path / "checkpoints" / "tiny.ckpt"
    output = tmp_path / "twos.png"
    torchseq_main(["sample", "--checkpoint", str(checkpoint), "--digit", "2", "--n", "6", "--nrow", "3",
                   "--output", str(output)])  # fmt: skip
    assert f"wrote 6 images to {output}" in capsys.readouterr().out.replace("\n", "")
    assert Image.open(output).size == (3 * 30 + 2, 2 * 30 + 2)  # torchvision grid: 2-pixel padding
    with pytest.raises(SystemExit) as exit_info:
        sample_main(["--checkpoint", str(checkpoint), "--digit", "4"])
    assert exit_info.value.code == 2
    assert "--digit: expected a class in 0..3, got 4" in capsys.readouterr().out.replace("\n", "")
    with pytest.raises(SystemExit):
        sample_main(["--checkpoint", str(tmp_path / "missing.ckpt")])
    assert "--checkpoint: no such file" in capsys.readouterr().out


def tiny_acgan(num_classes: int = 4, **options) -> AuxiliaryClassifierGANTask:
    return AuxiliaryClassifierGANTask(
        partial(ConditionalDCGANGenerator, latent_dim=8, embedding_dim=4, channels=(8, 8, 4)),
        partial(AuxiliaryClassifierDiscriminator, channels=(4, 8)),
        num_classes=num_classes,
        **options,
    )


def test_the_auxiliary_classifier_discriminator_gives_both_heads_from_one_trunk() -> None:
    torch.manual_seed(0)
    discriminator = AuxiliaryClassifierDiscriminator(num_classes=3, channels=(2, 4)).eval()
    images = torch.rand(5, 1, 28, 28)
    source, classes = discriminator.both(images)
    assert source.shape == (5,) and classes.shape == (5, 3)
    torch.testing.assert_close(discriminator(images, torch.tensor([0, 1, 2, 0, 1])), source, rtol=0, atol=0)
    plain = DCGANDiscriminator(channels=(2, 4))
    extra = sum(p.numel() for p in discriminator.parameters()) - sum(p.numel() for p in plain.parameters())
    assert extra == discriminator.classes.in_features * 3 + 3  # one Linear head more
    with pytest.raises(ValueError, match=r"labels: expected values in 0\.\.2"):
        discriminator(images, torch.tensor([0, 1, 2, 3, 0]))


def test_acgan_losses_add_the_class_cross_entropy() -> None:
    torch.manual_seed(0)
    task = tiny_acgan(classification_weight=2.0)
    real, fake = torch.rand(6, 1, 28, 28) * 2 - 1, torch.rand(6, 1, 28, 28) * 2 - 1
    labels, drawn = torch.tensor([0, 1, 2, 3, 0, 1]), torch.tensor([3, 2, 1, 0, 3, 2])
    task.discriminator.eval()  # no dropout: the same logits in the loss and here
    source_real, classes_real = task.discriminator.both(real)
    source_fake, classes_fake = task.discriminator.both(fake)
    adversarial = 0.5 * (
        nn.functional.binary_cross_entropy_with_logits(source_real, torch.ones(6))
        + nn.functional.binary_cross_entropy_with_logits(source_fake, torch.zeros(6))
    )
    classification = 0.5 * (
        nn.functional.cross_entropy(classes_real, labels) + nn.functional.cross_entropy(classes_fake, drawn)
    )
    loss, figures = task.discriminator_loss(real, fake, labels, drawn)
    torch.testing.assert_close(loss, adversarial + 2.0 * classification)
    torch.testing.assert_close(figures["d_loss"], adversarial)
    torch.testing.assert_close(figures["d_class_loss"], classification)
    torch.testing.assert_close(figures["d_fake"], source_fake.sigmoid().mean())
    g_loss = task.generator_loss(fake, drawn)
    expected = nn.functional.binary_cross_entropy_with_logits(source_fake, torch.ones(6)) + 2.0 * (
        nn.functional.cross_entropy(classes_fake, drawn)
    )
    torch.testing.assert_close(g_loss, expected)


def test_acgan_refuses_a_bad_weight_and_a_discriminator_without_a_class_head() -> None:
    with pytest.raises(ValueError, match=r"classification_weight: expected a float > 0, got 0"):
        tiny_acgan(classification_weight=0)
    with pytest.raises(TypeError, match=r"discriminator: expected one with both\(images\).*ConditionalDCGAN"):
        AuxiliaryClassifierGANTask(
            partial(ConditionalDCGANGenerator, latent_dim=8, embedding_dim=4, channels=(8, 8, 4)),
            partial(ConditionalDCGANDiscriminator, channels=(4, 8)),
            num_classes=4,
        )


def test_a_tiny_acgan_run_trains_and_logs_the_class_loss(tmp_path) -> None:
    L.seed_everything(0)
    task = tiny_acgan()
    trainer = tiny_trainer(tmp_path, max_epochs=1, limit_train_batches=2, limit_val_batches=1)
    trainer.fit(task, TinyImages(size=32))
    for name in ("train/d_loss", "train/g_loss", "train/d_class_loss", "val/d_class_loss"):
        assert torch.isfinite(trainer.callback_metrics[name]), name
    assert int(task.g_steps) == 2
