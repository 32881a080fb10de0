"""Faults: runs killed with SIGKILL, kills in the middle of a checkpoint write, truncated checkpoints.

- A ``torchseq fit`` killed at random moments and resumed each time with ``--ckpt_path last`` ends with
  the uninterrupted run's weights, bit for bit.
- A process killed while it writes a checkpoint leaves the previous checkpoint loadable, and a resume
  (``ckpt_path="last"``) starts from it. The control writes in place, as a plain ``torch.save(…, path)``
  does, and leaves a truncated file: the check can fail.
- A truncated checkpoint fails to load with an error that names the file, on every way in.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.demos.boring_classes import BoringModel

from torchseq.checkpointing import AtomicCheckpointIO, CheckpointError, atomic_save, load_checkpoint_file
from torchseq.cli import TorchseqCLI

EXPERIMENTS = Path(__file__).parents[1] / "experiments"
ENVIRONMENT = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


# -- a run killed at random moments ends where the uninterrupted run ends -----------------------------
EPOCHS = 10  # two kills, each within at most 4 epochs of a (re)start, leave epochs to resume


def fit_command(save_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "torchseq.cli", "fit", "--config", str(EXPERIMENTS / "digits_lstm.yaml"),
        "--trainer.logger.init_args.save_dir", str(save_dir), "--trainer.max_epochs", str(EPOCHS),
        "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "1",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.callbacks", "[]", "--test_after_fit", "false",
        "--checkpoint.dirpath", str(save_dir / "checkpoints"), "--checkpoint.monitor", "null",
        "--model.init_args.model.init_args.hidden_size", "8",
        "--model.init_args.model.init_args.head_dropout", "0.5",  # masks from the global generator
        *extra,
    ]


def saves_seen(path: Path) -> tuple[int, int] | None:
    """The identity of the file at ``path`` (each atomic save makes a new inode), None if absent."""
    try:
        status = path.stat()
    except FileNotFoundError:
        return None
    return status.st_ino, status.st_mtime_ns


def run_and_kill(command: list[str], last: Path, after_saves: int, fraction: float) -> int:
    """Start ``command``; SIGKILL it once it has written ``last`` ``after_saves`` more times (≥ 2), a
    ``fraction`` of the time between its last two saves later: a random moment inside the next epoch,
    however fast or slow the machine is. Returns the exit code (-9 when the kill landed, 0 when the run
    finished first)."""
    process = subprocess.Popen(command, env=ENVIRONMENT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seen, saves, save_times = saves_seen(last), 0, []
    while saves < after_saves and process.poll() is None:
        time.sleep(0.002)
        now = saves_seen(last)
        if now != seen:
            seen, saves = now, saves + 1
            save_times.append(time.monotonic())
    if len(save_times) >= 2:
        time.sleep(fraction * (save_times[-1] - save_times[-2]))
    process.send_signal(signal.SIGKILL)
    _, errors = process.communicate(timeout=600)
    if process.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(f"the run failed (exit {process.returncode}):\n{errors.decode()[-3000:]}")
    return process.returncode


@pytest.mark.slow
def test_a_run_killed_at_random_moments_and_resumed_ends_with_the_uninterrupted_weights(tmp_path) -> None:
    seed = random.randrange(2**32)
    draw = random.Random(seed)
    whole = subprocess.Popen(fit_command(tmp_path / "whole"), env=ENVIRONMENT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)

    interrupted = tmp_path / "interrupted"
    last = interrupted / "checkpoints" / "last.ckpt"
    command = fit_command(interrupted, "--ckpt_path", "last")  # "last": none yet means a fresh start
    kills = []
    for _ in range(2):  # each kill lands after 2 or 3 new checkpoints, at a random moment of the next epoch
        after_saves, fraction = draw.randrange(2, 4), draw.random()
        code = run_and_kill(command, last, after_saves, fraction)
        kills.append((after_saves, round(fraction, 3), code, torch.load(last, weights_only=True)["epoch"]))
    finished = subprocess.run(command, env=ENVIRONMENT, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-3000:]
    _, errors = whole.communicate(timeout=600)
    assert whole.returncode == 0, errors.decode()[-3000:]

    context = f"seed {seed}; kills (saves waited for, epoch fraction, exit code, epoch of last.ckpt): {kills}"
    print(context)
    # At least one run was killed mid-training and its successor resumed from a checkpoint.
    assert any(code == -signal.SIGKILL and epoch < EPOCHS - 1 for *_, code, epoch in kills), context
    expected = torch.load(tmp_path / "whole" / "checkpoints" / "last.ckpt", weights_only=True)
    resumed = torch.load(last, weights_only=True)
    assert (resumed["epoch"], resumed["global_step"]) == (expected["epoch"], expected["global_step"]), context
    assert resumed["state_dict"].keys() == expected["state_dict"].keys()
    for name, value in expected["state_dict"].items():
        assert torch.equal(resumed["state_dict"][name], value), f"{name} differs; {context}"


# -- a kill during a checkpoint write ----------------------------------------------------------------
STALLED_WRITE = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import torch
    from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
    from torchseq.checkpointing import AtomicCheckpointIO

    class InPlaceCheckpointIO(TorchCheckpointIO):
        def save_checkpoint(self, checkpoint, path, storage_options=None):
            torch.save(checkpoint, path)

    class Stall:
        '''Serialising it tells the test that the write has begun, then waits for the kill.'''
        def __reduce__(self):
            Path(sys.argv[2]).touch()
            time.sleep(600)

    path, _, writer = sys.argv[1:]
    checkpoint = torch.load(path, weights_only=False)
    checkpoint |= {"epoch": 99, "stall": Stall()}
    io = {"atomic": AtomicCheckpointIO, "in place": InPlaceCheckpointIO}[writer]()
    io.save_checkpoint(checkpoint, path)
""")


def kill_during_a_write(path: Path, writer: str) -> None:
    """Rewrite the checkpoint at ``path`` in a process that is SIGKILLed half-way through the write."""
    started = path.with_name("write_started")
    process = subprocess.Popen([sys.executable, "-c", STALLED_WRITE, str(path), str(started), writer],
                               env=ENVIRONMENT, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not started.exists():
        assert process.poll() is None, process.communicate()[1].decode()[-3000:]
        assert time.monotonic() < deadline, "the write never started"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL


class CountBatches(Callback):
    def __init__(self) -> None:
        self.batches = 0

    def on_train_batch_end(self, *args) -> None:
        self.batches += 1


def boring_fit(folder: Path, epochs: int, ckpt_path: str | None = None) -> int:
    """Fit Lightning's BoringModel (4 batches an epoch) with atomic checkpoints; the batches it trained."""
    counter = CountBatches()
    trainer = L.Trainer(
        max_epochs=epochs, limit_train_batches=4, limit_val_batches=1, logger=False,
        enable_progress_bar=False, enable_model_summary=False, plugins=[AtomicCheckpointIO()],
        callbacks=[ModelCheckpoint(dirpath=folder, save_last=True), counter],
    )
    trainer.fit(BoringModel(), ckpt_path=ckpt_path)
    return counter.batches


def test_a_kill_during_a_checkpoint_write_leaves_the_previous_checkpoint_for_the_resume(tmp_path) -> None:
    assert boring_fit(tmp_path, epochs=1) == 4
    last = tmp_path / "last.ckpt"
    before = torch.load(last, weights_only=True)

    kill_during_a_write(last, "atomic")

    after = load_checkpoint_file(last, weights_only=True)
    assert after["epoch"] == before["epoch"] == 0
    for name, value in before["state_dict"].items():
        assert torch.equal(after["state_dict"][name], value)
    (partial,) = [path for path in tmp_path.iterdir() if path.name.startswith(".")]
    assert partial.suffix != ".ckpt"                                    # never a candidate for "last"
    assert boring_fit(tmp_path, epochs=2, ckpt_path="last") == 4        # resumed after epoch 0
    assert not partial.exists()                                         # the next save cleaned up


def test_control_a_kill_during_an_in_place_write_leaves_a_truncated_file(tmp_path) -> None:
    """The check above can fail: written in place, as ``torch.save(…, path)`` does, the file is cut."""
    boring_fit(tmp_path, epochs=1)
    last = tmp_path / "last.ckpt"
    kill_during_a_write(last, "in place")
    with pytest.raises(CheckpointError, match=r"last\.ckpt"):
        load_checkpoint_file(last)


def test_the_torchseq_command_writes_checkpoints_atomically(tmp_path) -> None:
    cli = TorchseqCLI(args=["--config", str(EXPERIMENTS / "digits_lstm.yaml"), "--trainer.logger", "false",
                            "--trainer.default_root_dir", str(tmp_path)], run=False)
    assert isinstance(cli.trainer.strategy.checkpoint_io, AtomicCheckpointIO)


class Unpicklable:
    def __reduce__(self):
        raise RuntimeError("cannot be pickled")


def test_a_failed_write_leaves_no_partial_file(tmp_path) -> None:
    path = tmp_path / "state.pt"
    atomic_save({"step": 1}, path)
    with pytest.raises(RuntimeError, match="cannot be pickled"):
        atomic_save({"step": 2, "unpicklable": Unpicklable()}, path)
    assert [entry.name for entry in tmp_path.iterdir()] == ["state.pt"]
    assert load_checkpoint_file(path) == {"step": 1}


# -- a truncated checkpoint fails with an error naming the file ---------------------------------------
@pytest.fixture
def truncated(tmp_path) -> Path:
    """A real ``torchseq fit`` checkpoint with its second half cut off."""
    boring_fit(tmp_path / "whole", epochs=1)
    data = (tmp_path / "whole" / "last.ckpt").read_bytes()
    path = tmp_path / "cut.ckpt"
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize("fraction", [0.0, 0.001, 0.25, 0.5, 0.999])
def test_a_truncated_file_fails_to_load_with_its_name(tmp_path, fraction: float) -> None:
    whole = tmp_path / "whole.pt"
    atomic_save({"state_dict": {"weight": torch.randn(64, 64)}, "epoch": 3}, whole)
    data = whole.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: int(len(data) * fraction)])
    for weights_only in (True, False):
        with pytest.raises(CheckpointError, match=r"checkpoint '.*cut\.pt' .*truncated or corrupt"):
            load_checkpoint_file(cut, weights_only=weights_only)
        with pytest.raises(CheckpointError, match=r"cut\.pt"):
            AtomicCheckpointIO().load_checkpoint(cut, weights_only=weights_only)


def test_resuming_the_torchseq_command_from_a_cut_checkpoint_names_the_file(tmp_path, truncated) -> None:
    arguments = ["fit", "--config", str(EXPERIMENTS / "digits_lstm.yaml"), "--trainer.logger", "false",
                 "--trainer.default_root_dir", str(tmp_path), "--trainer.max_epochs", "1",
                 "--trainer.enable_progress_bar", "false", "--ckpt_path", str(truncated)]
    with pytest.raises(CheckpointError, match=r"cannot load the checkpoint '.*cut\.ckpt'"):
        TorchseqCLI(args=arguments)


def test_a_trainer_with_the_plugin_names_a_truncated_file(tmp_path, truncated) -> None:
    trainer = L.Trainer(max_epochs=1, logger=False, enable_progress_bar=False, plugins=[AtomicCheckpointIO()])
    with pytest.raises(CheckpointError, match=r"cut\.ckpt"):
        trainer.fit(BoringModel(), ckpt_path=truncated)


def test_a_missing_or_refused_file_keeps_its_own_error(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=r"missing\.ckpt"):
        AtomicCheckpointIO().load_checkpoint(tmp_path / "missing.ckpt")
    path = tmp_path / "module.pt"
    torch.save(torch.nn.Linear(1, 1), path)                 # a pickled module: weights_only refuses it
    with pytest.raises(Exception, match="Weights only load failed") as refused:
        load_checkpoint_file(path, weights_only=True)
    assert not isinstance(refused.value, CheckpointError)
