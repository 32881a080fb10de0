"""Anomaly windows from sktime's labelled series: windowing, labels, normal-only training, errors."""

import numpy as np
import pytest
import torch

from torchseq.data import AnomalyDataModule, DataFileError
from torchseq.data.anomaly import block_average, cut_windows, read_labelled_series
from torchseq.data.files import find_package_file


def test_cut_windows_labels_a_window_with_an_anomalous_point():
    values = np.arange(10.0)[:, None]
    point_labels = np.zeros(10, dtype=bool)
    point_labels[5] = True
    windows, labels, starts = cut_windows(values, point_labels, window=4, stride=2)
    assert starts.tolist() == [0, 2, 4, 6]  # 8 and 9 fit no whole window after 6: dropped
    assert labels.tolist() == [0, 1, 1, 0]  # windows [2, 6) and [4, 8) contain point 5
    assert windows.shape == (4, 4, 1)
    assert windows[:, :, 0].tolist() == [[0, 1, 2, 3], [2, 3, 4, 5], [4, 5, 6, 7], [6, 7, 8, 9]]


@pytest.mark.parametrize(
    ("source", "window", "stride"), [("mitdb", 64, None), ("mitdb", 48, 24), ("yahoo", 32, 16)]
)
def test_module_windows_and_labels(source, window, stride):
    module = AnomalyDataModule(source, window=window, stride=stride, batch_size=8)
    assert (module.input_size, module.sequence_length, module.num_classes) == (1, window, 2)
    module.setup()
    _, point_labels = read_labelled_series(
        find_package_file("sktime", "datasets", "data", source, f"{source}.csv")
    )
    for name in ("train", "val", "test"):
        x, y = getattr(module.splits, name).tensors
        assert x.shape[1:] == (window, 1) and x.dtype == torch.float32 and y.dtype == torch.int64
        expected = [point_labels[start : start + window].any() for start in module.window_starts[name]]
        assert y.tolist() == [int(label) for label in expected]
    assert (module.splits.train.tensors[1] == 0).all()  # normal windows only
    assert (module.splits.val.tensors[1] == 1).any() and (module.splits.val.tensors[1] == 0).any()
    assert (module.splits.test.tensors[1] == 1).any() and (module.splits.test.tensors[1] == 0).any()
    x, y = next(iter(module.train_dataloader()))
    assert x.shape == (8, window, 1) and y.shape == (8,)


def test_known_anomalous_point_gives_a_positive_window():
    module = AnomalyDataModule("yahoo", window=32)
    module.setup()
    _, point_labels = read_labelled_series(
        find_package_file("sktime", "datasets", "data", "yahoo", "yahoo.csv")
    )
    anomaly = int(np.flatnonzero(point_labels)[0])
    starts = np.concatenate([module.window_starts["val"], module.window_starts["test"]])
    labels = torch.cat([module.splits.val.tensors[1], module.splits.test.tensors[1]]).numpy()
    containing = (starts <= anomaly) & (anomaly < starts + 32)
    assert containing.sum() == 1 and labels[containing] == 1


def test_windows_do_not_leak_between_train_and_evaluation():
    module = AnomalyDataModule("mitdb", window=40, stride=10)
    module.setup()
    train = module.window_starts["train"]
    evaluation = np.concatenate([module.window_starts["val"], module.window_starts["test"]])
    assert len(train) > 0
    assert (np.abs(train[:, None] - evaluation[None, :]) >= 40).all()


def test_standardised_with_training_windows():
    module = AnomalyDataModule("mitdb", window=64)
    module.setup()
    train_x = module.splits.train.tensors[0].double()
    assert abs(float(train_x.mean())) < 1e-6 and abs(float(train_x.std(unbiased=False)) - 1) < 1e-6


def test_split_depends_on_the_seed():
    first, again, other = (AnomalyDataModule("mitdb", seed=seed) for seed in (0, 0, 1))
    for module in (first, again, other):
        module.setup()
    assert np.array_equal(first.window_starts["val"], again.window_starts["val"])
    assert not np.array_equal(first.window_starts["val"], other.window_starts["val"])


def write_series(folder, rows: list[str], header="data,label") -> None:
    (folder / "yahoo").mkdir()
    (folder / "yahoo" / "yahoo.csv").write_text("\n".join([header, *rows]) + "\n")


def test_a_series_in_data_dir(tmp_path):
    write_series(tmp_path, [f"{i * 0.5},{int(i in (13, 37))}" for i in range(60)])
    module = AnomalyDataModule("yahoo", window=5, data_dir=str(tmp_path))
    module.setup()
    assert sum(len(getattr(module.splits, name)) for name in ("train", "val", "test")) == 12


@pytest.mark.parametrize(
    ("rows", "header", "message"),
    [
        (["1.0,0", "2.0,2"], "data,label", r"yahoo\.csv, line 3: expected a label 0 or 1, got 2"),
        (["1.0,0", "2.0"], "data,label", r"yahoo\.csv, line 3: expected 2 comma-separated values, got 1"),
        (["1.0,0", "abc,0"], "data,label", r"yahoo\.csv, line 3, column 1: expected a number, got 'abc'"),
        (["1.0,0"], "value,is_anomaly", r"yahoo\.csv, line 1: expected the header 'data,label'"),
    ],
    ids=["bad-label", "truncated", "non-numeric", "header"],
)
def test_corrupt_series(tmp_path, rows, header, message):
    write_series(tmp_path, rows, header)
    module = AnomalyDataModule("yahoo", window=2, data_dir=str(tmp_path))
    with pytest.raises(DataFileError, match=message):
        module.setup()


def test_too_few_anomalous_windows(tmp_path):
    write_series(tmp_path, [f"{i},{int(i == 3)}" for i in range(40)])
    with pytest.raises(ValueError, match="window/stride: 1 anomalous window"):
        AnomalyDataModule("yahoo", window=4, data_dir=str(tmp_path)).setup()


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"source: expected one of \('mitdb', 'yahoo'\), got 'ecg'"):
        AnomalyDataModule("ecg")
    with pytest.raises(ValueError, match="window: expected an integer ≥ 2"):
        AnomalyDataModule("mitdb", window=1)
    with pytest.raises(ValueError, match="window: expected at most the series length 1000"):
        AnomalyDataModule("yahoo", window=5000).setup()


def test_time_split_keeps_the_splits_disjoint_in_time():
    module = AnomalyDataModule("mitdb", window=256, stride=16, split="time")
    module.setup()
    starts = module.window_starts
    assert starts["train"].max() + 256 <= 4500 <= starts["val"].min()
    assert starts["val"].max() + 256 <= 6000 <= starts["test"].min()
    assert (module.splits.train.tensors[1] == 0).all() and (module.splits.val.tensors[1] == 0).all()
    test_labels = module.splits.test.tensors[1]
    assert 0 < int(test_labels.sum()) < len(test_labels)  # the labelled stretch 6936–7287 is in test
    first_anomalous = int(starts["test"][test_labels.numpy() == 1].min())
    assert first_anomalous == 6688  # the first start on the stride-16 grid whose window reaches 6936
    assert module.series.shape == (7500, 1) and module.point_labels.sum() == 352
    # the series is standardised like the windows: a test window is the series at its start
    torch.testing.assert_close(
        module.splits.test.tensors[0][0, :, 0],
        torch.from_numpy(module.series[starts["test"][0] : starts["test"][0] + 256, 0]).float(),
    )


def test_time_split_needs_both_kinds_in_the_test_stretch():
    with pytest.raises(
        ValueError, match=r"test_fraction: the last 0\.1 of yahoo\.csv holds no anomalous windows"
    ):
        AnomalyDataModule("yahoo", window=8, split="time", test_fraction=0.1).setup()
    with pytest.raises(ValueError, match=r"split: expected one of \('random', 'time'\), got 'blocks'"):
        AnomalyDataModule("yahoo", split="blocks")
    with pytest.raises(
        ValueError, match=r"window: no window of 300 points fits in the val stretch \[600, 800\)"
    ):
        AnomalyDataModule("yahoo", window=300, split="time").setup()


def test_block_average_lowers_the_rate_and_keeps_every_anomalous_point():
    values = np.arange(10.0)[:, None]
    point_labels = np.zeros(10, dtype=bool)
    point_labels[5] = True
    averaged, labels = block_average(values, point_labels, 4)
    assert averaged[:, 0].tolist() == [1.5, 5.5]  # points 8 and 9 make no whole block: dropped
    assert labels.tolist() == [False, True]
    with pytest.raises(ValueError, match="downsample: expected at most the series length 10, got 11"):
        block_average(values, point_labels, 11)


def test_downsampled_mitdb_counts_windows_in_points_of_the_slower_series():
    module = AnomalyDataModule("mitdb", window=64, stride=1, split="time", downsample=8)
    module.setup()
    assert module.series.shape == (937, 1) and module.point_labels.sum() == 44  # 6936–7287 → blocks 867–910
    assert module.splits.train.tensors[0].shape[1:] == (64, 1)
    starts = module.window_starts["test"]
    labels = module.splits.test.tensors[1].numpy()
    assert labels.tolist() == [int(module.point_labels[s : s + 64].any()) for s in starts]
    with pytest.raises(ValueError, match="downsample: expected a positive int, got 0"):
        AnomalyDataModule("mitdb", downsample=0)
