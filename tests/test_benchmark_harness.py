"""The benchmark harness (benchmarks/): end to end on a tiny shape, and each instrument on a known answer."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

import torchseq
from benchmarks.contenders import build_sides
from benchmarks.floor import Floor, gemm_flops, layer_inputs
from benchmarks.results import Row, target_for
from benchmarks.run import main, parse_arguments, select_shapes, sides_for
from benchmarks.shapes import FASTRNNS, SMALL, Shape, grid, quick
from benchmarks.timing import (
    CpuClock,
    Timing,
    Workload,
    native_stderr_silenced,
    peak_memory_bytes,
    time_interleaved,
)
from torchseq import cells


def test_runs_end_to_end_on_a_tiny_shape(tmp_path) -> None:
    paths = main(
        [
            "--shape",
            "5,2,3,4",
            "--shape",
            "3,2,3,4,2,bi",
            "--cells",
            "LSTM,GRU",
            "--repeats",
            "2",
            "--budget",
            "0",
            "--warmup",
            "0",
            "--out",
            str(tmp_path),
            "--tag",
            "tiny",
        ]
    )
    assert {path.parent for path in paths.values()} == {tmp_path / "tiny"}

    written = json.loads(paths["json"].read_text())
    assert written["machine"]["torch"] == torch.__version__ and written["machine"]["cpu"]
    rows = written["rows"]
    assert [(row["cell"], row["shape"]["num_layers"], row["mode"]) for row in rows] == [
        (cell, layers, mode)
        for layers in (1, 2)
        for cell in ("LSTM", "GRU")
        for mode in ("forward", "forward+backward", "inference")
    ]
    for row in rows:
        assert set(row["median_ms"]) == {"fused", "custom", "reference"}
        assert all(len(times) == 2 and min(times) > 0 for times in row["times_ms"].values())
        medians = row["median_ms"]
        assert row["ratio_to_fused"]["custom"] == pytest.approx(medians["custom"] / medians["fused"])
        assert row["floor_ms"] > 0 and row["gemm_flops"] > 0
        assert all(peak is not None and peak > 0 for peak in row["peak_bytes"].values())
        assert row["target"] is None  # targets belong to the named shapes only

    table = paths["md"].read_text()
    assert "| cell | shape | workload | fused ms | custom ms | custom/fused |" in table
    assert table.count("| LSTM | custom T5 B2 I3 H4 |") == 3
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- shapes and arguments ------------------------------------------------------------------------------
def test_shape_parsing() -> None:
    assert Shape.parse("5,2,3,4") == Shape("custom", 5, 2, 3, 4)
    assert Shape.parse("5, 2, 3, 4, 2, bi") == Shape("custom", 5, 2, 3, 4, 2, True)
    with pytest.raises(ValueError, match=r"--shape: expected 'T,B,I,H\[,layers\[,bi\|uni\]\]', got '5,2,3'"):
        Shape.parse("5,2,3")
    with pytest.raises(ValueError, match="--shape: expected integers"):
        Shape.parse("5,2,x,4")
    with pytest.raises(ValueError, match="every size must be ≥ 1"):
        Shape.parse("5,0,3,4")


def test_shape_selection() -> None:
    assert len(grid()) == 3 * 4 * 3 * 2 * 2
    assert select_shapes(parse_arguments([])) == quick()
    assert quick()[:4] == [FASTRNNS, *SMALL]
    named = select_shapes(parse_arguments(["--named", "ucr", "--compile-sweep", "5,10"]))
    assert [(shape.name, shape.steps) for shape in named] == [
        ("ucr", 150),
        ("compile-sweep", 5),
        ("compile-sweep", 10),
    ]


def test_compiled_side_only_where_asked_and_t_is_small() -> None:
    args = parse_arguments(["--compile", "--compile-max-steps", "30"])
    assert sides_for(SMALL[0], args)[-1] == "compiled"  # T = 28
    assert "compiled" not in sides_for(FASTRNNS, args)  # T = 100
    assert "compiled" not in sides_for(SMALL[0], parse_arguments([]))


def test_compiled_step_side_only_for_user_cells() -> None:
    args = parse_arguments(["--sides", "fused,custom,compiled-step"])
    assert sides_for(SMALL[0], args, "LayerNormLSTM") == ["fused", "custom", "compiled-step"]
    assert sides_for(SMALL[0], args, "LSTM") == ["fused", "custom"]  # it has a hand-written kernel
    sides = build_sides("LayerNormLSTM", Shape("s", 4, 2, 3, 5), ["fused", "custom", "compiled-step"],
                        torch.device("cpu"), torch.float32, seed=0)
    assert sides["compiled-step"].stack.cells[0].compiled_step
    assert not sides["custom"].stack.cells[0].compiled_step
    compiled, custom = sides["compiled-step"].stack.cells[0], sides["custom"].stack.cells[0]
    assert torch.equal(compiled.weight_hh, custom.weight_hh)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(SystemExit):
        parse_arguments(["--sides", "custom,reference"])  # no baseline to divide by
    with pytest.raises(SystemExit, match="--cells: expected a comma-separated subset of RNN,LSTM,GRU"):
        parse_arguments(["--cells", "LSTM,Transformer"])


# -- instruments -----------------------------------------------------------------------------------------
def test_gemm_flops_follow_the_formula() -> None:
    shape = Shape("x", steps=2, batch=3, input_size=4, hidden_size=5)
    assert gemm_flops(shape, "LSTM", backward=False) == 2 * 2 * 3 * (4 + 5) * 4 * 5
    # backward: weight gradients (I + H) and the h_{t-1} gradient (H); no input gradient (I) for data
    assert gemm_flops(shape, "GRU", backward=True) == 2 * 2 * 3 * 3 * 5 * ((4 + 5) + (4 + 5) + 5)
    stacked = Shape("x", steps=2, batch=3, input_size=4, hidden_size=5, num_layers=2, bidirectional=True)
    assert layer_inputs(stacked) == [4, 4, 10, 10]  # layer 2 reads both directions
    assert gemm_flops(stacked, "RNN", backward=False) == 2 * 2 * 3 * 5 * ((4 + 5) * 2 + (10 + 5) * 2)
    assert gemm_flops(stacked, "RNN", backward=True) == 2 * 2 * 3 * 5 * (
        (4 + 5 + 4 + 5 + 5) * 2 + (10 + 5) * 3 * 2  # layer 2 needs its input's
    )


def test_cpu_peak_memory_sums_allocations_and_frees_in_order() -> None:
    def allocate() -> None:
        first = torch.empty(1_000_000, dtype=torch.uint8)
        second = torch.empty(500_000, dtype=torch.uint8)
        del first
        third = torch.empty(250_000, dtype=torch.uint8)
        del second, third

    assert peak_memory_bytes(Workload(allocate), torch.device("cpu")) == 1_500_000


def test_native_stderr_is_silenced_only_inside_the_block(capfd: pytest.CaptureFixture[str]) -> None:
    """What the profiler backend writes to descriptor 2 is dropped; the descriptor works again after."""
    os.write(2, b"before\n")
    with native_stderr_silenced():
        os.write(2, b"USDT: profiler_start\n")
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "before\nafter\n"


def test_interleaving_rotates_the_starting_side() -> None:
    calls: list[str] = []
    workloads = {name: Workload(lambda name=name: calls.append(name)) for name in "abc"}
    timings = time_interleaved(workloads, CpuClock("cpu"), warmup=2, repeats=3)
    assert calls[:6] == ["a", "a", "b", "b", "c", "c"]  # warm-up, not timed
    assert calls[6:] == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert all(len(timing.times_ms) == 3 for timing in timings.values())


def test_a_time_budget_adds_rounds_up_to_the_cap() -> None:
    workloads = {name: Workload(lambda: None) for name in "ab"}
    timings = time_interleaved(workloads, CpuClock("wall"), warmup=0, repeats=2, budget_s=60.0, max_rounds=7)
    assert [len(timing.times_ms) for timing in timings.values()] == [7, 7]


def test_rows_are_judged_against_the_targets_of_their_shape_and_cell() -> None:
    floor = Floor(forward_ms=1.0, forward_flops=1e6, backward_flops=3e6)

    def row(cell: str, shape: Shape, mode: str, custom_ms: float) -> Row:
        timings = {"fused": Timing(10.0, [10.0], 10.0), "custom": Timing(custom_ms, [custom_ms], custom_ms)}
        return Row(cell, shape, mode, timings, {"fused": None, "custom": None}, floor)

    assert row("LSTM", FASTRNNS, "forward", 12.9).meets_target is True  # 1.29 ≤ 1.3
    assert row("LSTM", FASTRNNS, "forward+backward", 11.6).meets_target is False  # 1.16 > 1.15
    assert row("LSTM", SMALL[2], "forward+backward", 15.0).meets_target is True  # 1.5 ≤ 1.5
    assert row("LSTM", SMALL[1], "forward+backward", 15.1).meets_target is False  # 1.51 > 1.5
    assert row("LSTM", SMALL[0], "forward", 50.0).target is None  # small shapes: no no_grad bound
    for shape in (FASTRNNS, *SMALL):  # serving: every named shape
        assert row("LSTM", shape, "inference", 12.0).meets_target is True  # 1.2 ≤ 1.2
        assert row("LSTM", shape, "inference", 12.1).meets_target is False
        for cell in ("GRU", "RNN"):  # never slower than torch's
            for mode in ("forward", "forward+backward", "inference"):
                assert row(cell, shape, mode, 10.0).meets_target is True
                assert row(cell, shape, mode, 10.1).meets_target is False
    assert row("GRU", Shape("grid", 25, 16, 128, 128), "forward", 50.0).target is None
    assert row("LSTM", FASTRNNS, "forward+backward", 20.0).from_floor("custom") == 20.0 / 3.0


def test_user_cells_run_through_recurrent_against_an_lstm(tmp_path) -> None:
    paths = main(
        [
            "--shape",
            "4,2,3,5",
            "--cells",
            "LayerNormLSTM",
            "--modes",
            "forward+backward",
            "--repeats",
            "2",
            "--budget",
            "0",
            "--warmup",
            "0",
            "--out",
            str(tmp_path),
            "--tag",
            "user",
        ]
    )
    (row,) = json.loads(paths["json"].read_text())["rows"]
    assert row["cell"] == "LayerNormLSTM" and set(row["median_ms"]) == {"fused", "custom", "reference"}
    sides = build_sides(
        "LayerNormLSTM",
        Shape("s", 4, 2, 3, 5),
        ["fused", "custom", "reference"],
        torch.device("cpu"),
        torch.float32,
        seed=0,
    )
    assert type(sides["fused"]) is torchseq.LSTM and sides["fused"].impl == "fused"
    assert isinstance(sides["custom"].stack.cells[0], cells.LayerNormLSTMCell)
    for name, value in sides["custom"].state_dict().items():
        assert torch.equal(sides["reference"].state_dict()[name], value), name
    assert target_for("LayerNormLSTM", "ucr", "forward+backward") == 2.5
    assert target_for("PeepholeLSTM", "fastrnns", "forward+backward") == 1.5
    assert target_for("LayerNormLSTM", "ucr", "inference") is None


def test_fresh_process_cross_check_times_both_sides_of_every_workload() -> None:
    from benchmarks.fresh_process import WORKLOADS, measure

    threads = torch.get_num_threads()
    try:
        medians = measure("batch-1", threads=1, calls=2)
    finally:
        torch.set_num_threads(threads)
    assert set(medians) == set(WORKLOADS)
    assert all(len(pair) == 2 and min(pair) > 0 for pair in medians.values())


def test_gan_step_benchmark_writes_table_plot_and_json_for_every_contender(tmp_path) -> None:
    from benchmarks.gan_step import CONTENDERS, main

    threads = torch.get_num_threads()
    try:
        main(["--threads", "1", "--rounds", "1", "--clock", "cpu", "--out", str(tmp_path)])
    finally:
        torch.set_num_threads(threads)
    rows = json.loads((tmp_path / "gan_step.json").read_text())["rows"]
    assert [row["contender"] for row in rows] == list(CONTENDERS)
    assert all(row["threads"] == 1 and row["median_ms"] > 0 for row in rows)
    assert all(row["discriminator"] == "config" for row in rows)
    assert rows[0]["vs_float32"] == 1.0
    table = (tmp_path / "gan_step.md").read_text()
    assert "config discriminator: channels 128/256, dropout 0" in table
    assert all(f"| 1 | {name} |" in table for name in CONTENDERS)
    assert (tmp_path / "gan_step.png").stat().st_size > 0


def test_gan_step_config_discriminator_is_the_one_dcgan_yaml_trains() -> None:
    import yaml

    from benchmarks.gan_step import DISCRIMINATORS

    config = yaml.safe_load((Path(__file__).parents[1] / "experiments" / "dcgan.yaml").read_text())
    trained = config["model"]["init_args"]["discriminator"]["init_args"]
    timed = DISCRIMINATORS["config"]
    assert (list(timed["channels"]), timed["dropout"]) == (trained["channels"], trained["dropout"])
