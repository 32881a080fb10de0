"""The kernels' loops compiled from C++ (``loops.cpp``), built once per machine on first use.

Python pays a dispatch of a few microseconds for every op of every step; the C++ loops pay none for
their own GEMM of small batches and one for oneDNN's, and compute the pointwise part of the step in one
vectorised pass; their threads split the batch rows once per call. They work on the same buffers and
do the same arithmetic as the Python loops of :mod:`torchseq.kernels.lstm` and
:mod:`torchseq.kernels.gru`, which stay as the fallback and run wherever the native module is
unavailable.

The module is compiled with ``torch.utils.cpp_extension.load`` (the system's C++ compiler and the
``ninja`` package, a dependency; about 30 s, once) into
torch's extension cache (``TORCH_EXTENSIONS_DIR``, default ``~/.cache/torch_extensions``), with
``-march=native``: the name carries a digest of the source, the compiler flags and the CPU's feature
flags, so another CPU gets its own build. A failed build warns once, naming the reason, and the Python
loops run. ``TORCHSEQ_NATIVE=0`` turns the native loops off (``native_loops_enabled(False)`` in code).
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import sysconfig
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from types import ModuleType

import torch

from torchseq.kernels.base import RecurrentProduct

#: The hand-written kernels' loops, and the loops of the compiled generic fast path (step_loops.cpp).
SOURCES = (Path(__file__).with_name("loops.cpp"), Path(__file__).with_name("step_loops.cpp"))
# -fopenmp: at::parallel_for splits a loop's batch rows over torch's threads (the OpenMP runtime is the
# one torch loaded, libgomp.so.1).
FLAGS = ["-O3", "-march=native", "-fopenmp", "-fno-math-errno", "-fno-trapping-math"]

_enabled = os.environ.get("TORCHSEQ_NATIVE", "1") != "0"


def cpu_features() -> str:
    """The CPU's feature flags (what a build for ``-march=native`` depends on)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor()
    return next((line for line in text.splitlines() if line.startswith(("flags", "Features"))), "")


@cache
def _build() -> ModuleType | None:
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # its note on CUDA_HOME
    from torch.utils import cpp_extension

    sources = [source.read_text() for source in SOURCES]
    key = "\n".join([*sources, " ".join(FLAGS), cpu_features(), torch.__version__])
    name = f"torchseq_loops_{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    scripts, path = sysconfig.get_path("scripts"), os.environ.get("PATH", "").split(os.pathsep)
    if scripts not in path:  # where pip put the ninja dependency, when the environment is not activated
        os.environ["PATH"] = os.pathsep.join([*path, scripts])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # cpp_extension's notes on CUDA and compiler versions
            return cpp_extension.load(
                name, [str(source) for source in SOURCES], extra_cflags=FLAGS, extra_ldflags=["-fopenmp"],
                verbose=False,
            )
    except Exception as reason:  # no compiler, a failed build: the Python loops run instead
        warnings.warn(f"torchseq's native loops are unavailable, the Python loops run: {reason}",
                      stacklevel=3)
        return None


def native_loops() -> ModuleType | None:
    """The compiled module (built on the first call), or None when off or unavailable."""
    return _build() if _enabled else None


def native_loop_for(
    x: torch.Tensor, recurrent: RecurrentProduct, projection: RecurrentProduct | None = None
) -> ModuleType | None:
    """The compiled loops where they apply: on CPU and without a projection. They read the step's
    operand as :class:`RecurrentProduct` laid it out (``native_operand``: oneDNN-packed for a large
    float32 weight) and lay an unpacked one out for their own GEMM (MKL-packed, else contiguous Wᵀ)."""
    if x.device.type != "cpu" or projection is not None:
        return None
    return native_loops()


def native_loops_enabled() -> bool:
    return _enabled


@contextmanager
def use_native_loops(enabled: bool) -> Iterator[None]:
    """Run a block with the native loops on or off (the Python loops compute the same)."""
    global _enabled
    previous, _enabled = _enabled, enabled
    try:
        yield
    finally:
        _enabled = previous
