"""The .ts parser and the UCR/UEA data module, on hand-written files and on the archives sktime ships."""

import numpy as np
import pytest
import torch

from torchseq.data import TsFormatError, UCRDataModule, parse_ts, read_ts
from torchseq.data.files import find_package_file

HEADER = "@problemName Toy\n@timeStamps false\n@missing {missing}\n{shape}@classLabel true up down\n@data\n"
UNIVARIATE = "@univariate true\n@equalLength true\n@seriesLength 3\n"
MULTIVARIATE = "@univariate false\n@dimensions 2\n@equalLength false\n"


def ts_text(shape: str, cases: str, missing: str = "false") -> str:
    return "# a comment\n" + HEADER.format(missing=missing, shape=shape) + cases


def test_parse_univariate():
    data = parse_ts(ts_text(UNIVARIATE, "1,2,3:down\n4,5,6:up\n"))
    assert data.problem_name == "Toy" and data.class_names == ("up", "down")
    assert [case.tolist() for case in data.series] == [[[1], [2], [3]], [[4], [5], [6]]]
    assert data.targets.tolist() == [1, 0]  # the header's order, not the order of appearance
    assert data.targets.dtype == np.int64


def test_parse_multivariate_variable_length_with_missing_values():
    cases = "1.5,2,3:0.5,?,0.1:up\n\n4,5:0.2,0.3:down\n"
    data = parse_ts(ts_text(MULTIVARIATE, cases, missing="true"))
    assert data.dimensions == 2
    assert data.lengths.tolist() == [3, 2]
    first = data.series[0]
    assert first.shape == (3, 2)
    assert first[:, 0].tolist() == [1.5, 2, 3]
    assert first[0, 1] == 0.5 and np.isnan(first[1, 1]) and first[2, 1] == 0.1
    assert data.targets.tolist() == [0, 1]


def test_parse_is_case_insensitive_and_reads_regression_targets():
    text = "% comment\n@problemname R\n@univariate true\n@equallength true\n@targetlabel true\n@data\n"
    text += "1,2:0.25\n3,4:7\n"
    data = parse_ts(text)
    assert data.is_regression and data.targets.tolist() == [0.25, 7.0]


@pytest.mark.parametrize(
    ("shape", "cases", "bad_line", "message"),
    [
        (UNIVARIATE, "1,2,3:up\n", "4,5:up", "@equalLength true, but this case has 2 steps, the first 3"),
        (UNIVARIATE, "1,2,3:up\n", "4,5,6", r"expected 1 dimension\(s\) and a label separated by ':'"),
        (UNIVARIATE, "1,2,3:up\n", "4,x,6:up", r"expected a number or '\?', got 'x'"),
        (
            UNIVARIATE,
            "1,2,3:up\n",
            "4,5,6:left",
            "class label 'left' is not one of those @classLabel declares",
        ),
        (MULTIVARIATE, "1,2:3,4:up\n", "1,2:up", r"expected 2 dimension\(s\)"),
        (UNIVARIATE.replace("3", "2"), "", "1,2,3:up", "@seriesLength 2, but this case has 3 steps"),
        ("@univariate maybe\n", "", "@univariate maybe", "expected true or false, got 'maybe'"),
        (
            "@timeStamps true\n",
            "",
            "@timeStamps true",
            r"timestamped series \(@timeStamps true\) are not supported",
        ),
    ],
    ids=[
        "unequal",
        "missing-label",
        "non-numeric",
        "undeclared-label",
        "missing-dimension",
        "wrong-length",
        "bad-flag",
        "timestamps",
    ],
)
def test_format_errors_name_the_line(shape, cases, bad_line, message):
    text = ts_text(shape, cases + bad_line + "\n" if bad_line[0] != "@" else cases)
    line_number = text.splitlines().index(bad_line) + 1
    with pytest.raises(TsFormatError, match=rf"toy\.ts, line {line_number}: {message}"):
        parse_ts(text, source="toy.ts")


def test_no_cases():
    with pytest.raises(TsFormatError, match=r"toy\.ts: no cases after @data"):
        parse_ts(ts_text(UNIVARIATE, ""), source="toy.ts")


def test_no_data_section():
    with pytest.raises(TsFormatError, match=r"toy\.ts: no @data line"):
        parse_ts("@problemName Toy\n@univariate true\n", source="toy.ts")


# The archives sktime ships: published sizes of the UCR/UEA archive.
ARCHIVE = {
    # name: (train cases, test cases, channels, classes, shortest, longest)
    "GunPoint": (50, 150, 1, 2, 150, 150),
    "ItalyPowerDemand": (67, 1029, 1, 2, 24, 24),
    "ArrowHead": (36, 175, 1, 3, 251, 251),
    "BasicMotions": (40, 40, 6, 4, 100, 100),
    "JapaneseVowels": (270, 370, 12, 9, 7, 29),
}


def count_cases(path) -> int:
    """Non-empty lines after @data, counted without the parser."""
    lines = path.read_text().splitlines()
    start = next(index for index, line in enumerate(lines) if line.strip().lower() == "@data")
    return sum(1 for line in lines[start + 1 :] if line.strip())


@pytest.mark.parametrize("name", ARCHIVE)
def test_archive_files(name):
    n_train, n_test, channels, classes, shortest, longest = ARCHIVE[name]
    folder = find_package_file("sktime", "datasets", "data", name)
    train, test = read_ts(folder / f"{name}_TRAIN.ts"), read_ts(folder / f"{name}_TEST.ts")
    assert (len(train.series), len(test.series)) == (n_train, n_test)
    assert (count_cases(folder / f"{name}_TRAIN.ts"), count_cases(folder / f"{name}_TEST.ts")) == (
        n_train,
        n_test,
    )
    assert train.dimensions == test.dimensions == channels
    assert len(train.class_names) == classes
    lengths = np.concatenate([train.lengths, test.lengths])
    assert (lengths.min(), lengths.max()) == (shortest, longest)
    assert set(np.unique(train.targets)) == set(range(classes))


@pytest.fixture(scope="module")
def gunpoint() -> UCRDataModule:
    module = UCRDataModule("GunPoint", batch_size=8, val_fraction=0.2)
    module.setup()
    return module


def test_module_attributes_before_setup():
    module = UCRDataModule("BasicMotions")
    assert (module.input_size, module.num_classes, module.sequence_length) == (6, 4, 100)
    assert module.class_names == ("Standing", "Running", "Walking", "Badminton")
    assert not module.variable_length
    assert module.hparams["name"] == "BasicMotions"


def test_module_batches_and_splits(gunpoint):
    x, y = next(iter(gunpoint.train_dataloader()))
    assert x.shape == (8, gunpoint.sequence_length, 1) and x.dtype == torch.float32
    assert y.dtype == torch.int64 and set(y.tolist()) <= {0, 1}
    sizes = [len(getattr(gunpoint.splits, name)) for name in ("train", "val", "test")]
    assert sizes[0] + sizes[1] == len(gunpoint.train_data.series)
    assert sizes[2] == len(gunpoint.test_data.series)  # the official test file, whole
    assert abs(sizes[1] - 0.2 * len(gunpoint.train_data.series)) < 1


def test_validation_is_stratified_from_train(gunpoint):
    all_train = torch.from_numpy(gunpoint.train_data.targets)
    val = gunpoint.splits.val.tensors[1]
    ideal = 0.2 * torch.bincount(all_train)
    assert (torch.bincount(val, minlength=len(ideal)) - ideal).abs().max() <= 1


def test_splits_are_disjoint(gunpoint):
    rows = {
        name: {bytes(case.numpy()) for case in getattr(gunpoint.splits, name).tensors[0]}
        for name in ("train", "val")
    }
    assert not rows["train"] & rows["val"]


def test_split_depends_on_the_seed():
    first, again, other = (UCRDataModule("ItalyPowerDemand", seed=seed) for seed in (5, 5, 6))
    for module in (first, again, other):
        module.setup()
    assert torch.equal(first.splits.val.tensors[0], again.splits.val.tensors[0])
    assert not torch.equal(first.splits.val.tensors[0], other.splits.val.tensors[0])


def test_cross_validation_folds_of_the_training_file():
    """folds=K: validation is one K-th of the training file, stratified; the test file stays whole."""
    sizes = []
    for fold in range(5):
        module = UCRDataModule("GunPoint", folds=5, fold=fold, val_fraction=0.5)  # val_fraction unused
        module.setup()
        train_targets, val_targets = module.splits.train.tensors[1], module.splits.val.tensors[1]
        assert len(train_targets) + len(val_targets) == len(module.train_data.series) == 50
        ideal = torch.bincount(torch.from_numpy(module.train_data.targets)) / 5
        assert (torch.bincount(val_targets, minlength=2) - ideal).abs().max() <= 1
        assert len(module.splits.test) == len(module.test_data.series)
        sizes.append(len(val_targets))
    assert sum(sizes) == 50


def test_bad_fold_fails_when_the_module_is_made():
    with pytest.raises(ValueError, match=r"fold: expected an integer in \[0, 3\] \(folds=4\), got 4"):
        UCRDataModule("ArrowHead", folds=4, fold=4)


def test_variable_length_batches_carry_true_lengths():
    module = UCRDataModule("JapaneseVowels", batch_size=32)
    assert module.variable_length and module.input_size == 12 and module.sequence_length == 29
    module.setup()
    true_lengths = module.splits.test.lengths
    x, y, lengths = next(iter(module.test_dataloader()))
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert lengths.dtype == torch.int64 and lengths.device.type == "cpu"
    assert torch.equal(lengths, true_lengths[:32])
    assert x.shape == (32, int(lengths.max()), 12)
    padding = torch.arange(x.shape[1])[None, :] >= lengths[:, None]  # (B, T)
    assert (x[padding] == 0).all()
    assert (x[~padding] != 0).any(dim=-1).all()  # every real step has data


def test_unknown_name_lists_the_available_datasets():
    with pytest.raises(
        ValueError, match=r"name: unknown UCR/UEA dataset 'GunPointy'; available in .*GunPoint"
    ):
        UCRDataModule("GunPointy")


def write_dataset(folder, name: str, train: str, test: str) -> None:
    (folder / name).mkdir()
    (folder / name / f"{name}_TRAIN.ts").write_text(train)
    (folder / name / f"{name}_TEST.ts").write_text(test)


def test_data_dir_with_missing_values(tmp_path):
    train = ts_text(UNIVARIATE, "".join(f"{i},?,{i + 2}:{'up' if i % 2 else 'down'}\n" for i in range(10)))
    write_dataset(tmp_path, "Toy", train, ts_text(UNIVARIATE, "1,2,3:up\n"))
    module = UCRDataModule("Toy", data_dir=str(tmp_path), batch_size=4)
    module.setup()
    x, _ = next(iter(module.train_dataloader()))
    assert torch.isfinite(x).all()
    assert (x[:, 1] == 0).all()  # a missing value becomes the training mean: 0 after standardising


def test_standardised_with_training_statistics_only(tmp_path):
    # Case i is the constant i, so a standardised case tells which case it was.
    train = "".join(f"{i},{i},{i}:{('up', 'down')[i % 2]}\n" for i in range(20))
    write_dataset(tmp_path, "Toy", ts_text(UNIVARIATE, train), ts_text(UNIVARIATE, "100,100,100:up\n"))
    module = UCRDataModule("Toy", data_dir=str(tmp_path), val_fraction=0.2)
    module.setup()
    train_z, val_z, test_z = (
        getattr(module.splits, name).tensors[0][:, 0, 0].double() for name in ("train", "val", "test")
    )
    assert abs(float(train_z.mean())) < 1e-6 and abs(float(train_z.std(unbiased=False)) - 1) < 1e-6
    # One affine map i → (i - mean) / std for every split: recover it from the ordered cases 0..19.
    ordered = torch.cat([train_z, val_z]).sort().values
    slope, intercept = (ordered[-1] - ordered[0]) / 19, ordered[0]
    assert torch.allclose(ordered, intercept + slope * torch.arange(20, dtype=torch.float64))
    assert torch.allclose(test_z, intercept + slope * 100)
    assert abs(float(intercept + slope * 9.5)) > 1e-3  # fitted on all 20 cases, case 9.5 would map to 0


def test_truncated_archive_file_names_file_and_line(tmp_path):
    source = find_package_file("sktime", "datasets", "data", "GunPoint", "GunPoint_TRAIN.ts").read_text()
    lines = source.rstrip("\n").split("\n")
    truncated = "\n".join([*lines[:-1], lines[-1][: len(lines[-1]) // 2]])
    write_dataset(tmp_path, "GunPoint", truncated, source)
    with pytest.raises(TsFormatError, match=rf"GunPoint_TRAIN\.ts, line {len(lines)}: "):
        UCRDataModule("GunPoint", data_dir=str(tmp_path))


def test_train_and_test_must_agree(tmp_path):
    other_classes = ts_text(UNIVARIATE, "1,2,3:a\n").replace("up down", "a b")
    write_dataset(tmp_path, "Toy", ts_text(UNIVARIATE, "1,2,3:up\n"), other_classes)
    with pytest.raises(TsFormatError, match=r"Toy_TEST\.ts: 1 dimension\(s\) and classes \('a', 'b'\)"):
        UCRDataModule("Toy", data_dir=str(tmp_path))


def test_missing_data_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match="data_dir: expected an existing folder"):
        UCRDataModule("GunPoint", data_dir=str(tmp_path / "nowhere"))
