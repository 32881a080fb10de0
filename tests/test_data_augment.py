"""Training-set augmentation (``train_transform``): training inputs only, layout kept, reproducible."""

import pytest
import torch
from torchvision.transforms import v2

from torchseq.data import DigitsDataModule, MNIST5kDataModule
from torchseq.data.augment import AsImage, TransformedInputs

SHIFT = v2.RandomAffine(degrees=0, translate=(0.25, 0.25))


def first_batch(module, split="train"):
    return next(iter(getattr(module, f"{split}_dataloader")()))


@pytest.mark.parametrize("as_images", [False, True])
def test_training_inputs_are_transformed_and_keep_their_layout(as_images):
    plain, augmented = (
        DigitsDataModule(as_images=as_images, batch_size=64, train_transform=t) for t in (None, SHIFT)
    )
    plain.setup(), augmented.setup()
    torch.manual_seed(0)
    (x_plain, y_plain), (x_augmented, y_augmented) = first_batch(plain), first_batch(augmented)
    assert x_augmented.shape == x_plain.shape and torch.equal(y_augmented, y_plain)  # same digits, same order
    assert not torch.equal(x_augmented, x_plain)
    # A shift moves pixels, it does not create ink: no augmented image holds more than its original.
    assert (x_augmented.flatten(1).sum(1) <= x_plain.flatten(1).sum(1) + 1e-4).all()


def test_validation_and_test_inputs_are_left_alone():
    plain, augmented = (DigitsDataModule(batch_size=64, train_transform=t) for t in (None, SHIFT))
    plain.setup(), augmented.setup()
    for split in ("val", "test"):
        pairs = zip(first_batch(plain, split), first_batch(augmented, split), strict=True)
        assert all(torch.equal(a, b) for a, b in pairs)


def test_each_epoch_draws_new_transforms_reproducibly_from_the_seed():
    def two_epochs(seed):
        module = DigitsDataModule(batch_size=32, train_transform=SHIFT)
        module.setup()
        torch.manual_seed(seed)
        return [first_batch(module)[0] for _ in range(2)]

    first, second = two_epochs(1), two_epochs(1)
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    assert not torch.equal(first[0], first[1])


def test_a_transform_that_changes_the_image_size_is_named():
    module = MNIST5kDataModule(train_transform=v2.CenterCrop(20))
    module.setup()
    expected = r"train_transform: expected it to keep the image shape \(1, 28, 28\), got \(1, 20, 20\)"
    with pytest.raises(ValueError, match=expected):
        first_batch(module)


def test_a_transform_that_is_not_callable_is_refused():
    with pytest.raises(TypeError, match=r"train_transform: expected a callable .* got str"):
        DigitsDataModule(train_transform="RandomAffine")


def test_as_image_and_transformed_inputs_compose_on_any_dataset():
    rows = torch.arange(16.0).reshape(4, 4)
    flip = AsImage(v2.RandomHorizontalFlip(p=1.0), (1, 4, 4))
    dataset = TransformedInputs([(rows, 3)], flip)
    x, y = dataset[0]
    assert torch.equal(x, rows.flip(-1)) and y == 3 and len(dataset) == 1
