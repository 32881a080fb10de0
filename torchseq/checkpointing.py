"""Checkpoint files that are complete or absent, and loads that name the file they cannot read.

A process killed while it writes a checkpoint (a pre-empted job, an out-of-memory kill, Ctrl-C twice)
must not leave a half-written file where the next run resumes from. :func:`atomic_save` writes to a
hidden ``.<name>.<random>.partial`` file in the checkpoint's own folder, fsyncs it, and renames it over
the target with :func:`os.replace`, which is atomic within one file system; so the target holds either
the previous checkpoint or the new one, and after a power cut too (the folder is fsynced as well).

:class:`AtomicCheckpointIO` is the Lightning plugin that routes a trainer's checkpoint saves and loads
(``ModelCheckpoint``, ``trainer.save_checkpoint``, ``fit/validate/test(ckpt_path=…)``) through these
functions; the ``torchseq`` command installs it (:func:`use_atomic_checkpoints`). For a trainer of
your own: ``L.Trainer(plugins=[AtomicCheckpointIO()])``.

A file that is truncated or corrupt anyway (copied half-way, written by another tool) fails to load with
a :class:`CheckpointError` that names it, instead of torch's bare ``PytorchStreamReader failed …``.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import secrets
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.fabric.utilities.cloud_io import _is_local_file_protocol

#: Suffix of a checkpoint being written; never ``.ckpt``, so ``ckpt_path="last"`` cannot pick one up.
PARTIAL_SUFFIX = ".partial"


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be read (truncated or corrupt); the message names the file."""


def atomic_save(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save(obj, path)`` such that ``path`` never holds a partly written file.

    Writes a hidden partial file beside ``path``, fsyncs it, renames it over ``path`` and fsyncs the
    folder. A process killed part-way leaves ``path`` as it was, plus the partial file, which the next
    save to ``path`` removes.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_partial_files(path)
    partial = path.with_name(f".{path.name}.{secrets.token_hex(4)}{PARTIAL_SUFFIX}")
    try:
        with partial.open("xb") as file:
            torch.save(obj, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
        raise
    fsync_folder(path.parent)


def remove_partial_files(path: Path) -> None:
    """Delete what writers of ``path`` that were killed mid-write left behind."""
    for leftover in path.parent.glob(f".{path.name}.*{PARTIAL_SUFFIX}"):
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()


def fsync_folder(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (a no-op where folders cannot be opened, e.g. Windows)."""
    with contextlib.suppress(OSError):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def load_checkpoint_file(
    path: str | os.PathLike[str], map_location: Any = None, weights_only: bool | None = None
) -> Any:
    """``torch.load(path, …)``, raising :class:`CheckpointError` naming ``path`` if the file is broken.

    A missing or unreadable file keeps its own ``FileNotFoundError``/``PermissionError`` (they name it);
    so does ``weights_only=True`` refusing a type, which is not damage but a safety check.
    """
    try:
        return torch.load(path, map_location=map_location, weights_only=weights_only)
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except pickle.UnpicklingError as error:
        if "Weights only load failed" in str(error):
            raise
        raise broken(path, error) from error
    except (RuntimeError, EOFError, OSError) as error:
        raise broken(path, error) from error


def check_checkpoint_file(path: str | os.PathLike[str]) -> None:
    """Raise :class:`CheckpointError` naming ``path`` if it is cut short; cheap for torch's zip format.

    A truncated zip file has lost its central directory, which sits at the end; reading that directory
    is all :func:`zipfile.is_zipfile` does. Files in torch's older, non-zip format are loaded in full.
    """
    if not zipfile.is_zipfile(path):
        load_checkpoint_file(path, map_location="cpu", weights_only=True)


def broken(path: str | os.PathLike[str], error: BaseException) -> CheckpointError:
    size = Path(path).stat().st_size
    return CheckpointError(
        f"cannot load the checkpoint {os.fspath(path)!r} ({size:,} bytes): the file is truncated or "
        f"corrupt ({type(error).__name__}: {error}). Resume from an earlier checkpoint or delete this one."
    )


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's ``TorchCheckpointIO`` with :func:`atomic_save` writes and :func:`load_checkpoint_file`
    reads for local paths; remote (fsspec) paths are left to Lightning."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike[str], storage_options: Any = None
    ) -> None:
        if storage_options is not None or not _is_local_file_protocol(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        atomic_save(checkpoint, path)

    def load_checkpoint(
        self,
        path: str | os.PathLike[str],
        map_location: Callable | None = lambda storage, location: storage,
        weights_only: bool | None = None,
    ) -> dict[str, Any]:
        if not _is_local_file_protocol(path):
            return super().load_checkpoint(path, map_location, weights_only)
        if not Path(path).is_file():
            raise FileNotFoundError(f"Checkpoint file not found: {path}")
        return load_checkpoint_file(path, map_location=map_location, weights_only=weights_only)


def use_atomic_checkpoints(trainer: L.Trainer) -> None:
    """Give ``trainer`` an :class:`AtomicCheckpointIO` unless it was configured with a plugin of its own."""
    if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
        trainer.strategy.checkpoint_io = AtomicCheckpointIO()
