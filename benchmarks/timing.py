"""Clocks, interleaved medians and peak memory: the measuring instruments, independent of what is measured."""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Workload:
    """What one side runs: ``prepare`` (untimed, e.g. clearing gradients), then ``run`` (timed)."""

    run: Callable[[], None]
    prepare: Callable[[], None] = lambda: None


class Clock:
    """Milliseconds one call of ``run`` takes."""

    name = "clock"

    def measure(self, run: Callable[[], None]) -> float:
        raise NotImplementedError


class CpuClock(Clock):
    """``wall``: elapsed time (what a user waits). ``cpu``: this process's CPU time, which leaves out the
    time other processes hold the cores; on a shared machine with one thread it is the steadier measure."""

    def __init__(self, kind: str = "wall") -> None:
        if kind not in ("wall", "cpu"):
            raise ValueError(f"clock: expected 'wall' or 'cpu', got {kind!r}")
        self.name = kind
        self.now = time.perf_counter if kind == "wall" else time.process_time

    def measure(self, run: Callable[[], None]) -> float:
        start = self.now()
        run()
        return (self.now() - start) * 1e3


class CudaClock(Clock):
    """CUDA events around the call, after a synchronisation: queued work of earlier calls is not counted."""

    name = "cuda-events"

    def measure(self, run: Callable[[], None]) -> float:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        start.record()
        run()
        end.record()
        end.synchronize()
        return start.elapsed_time(end)


def make_clock(device: torch.device, kind: str) -> Clock:
    return CudaClock() if device.type == "cuda" else CpuClock(kind)


@dataclass
class Timing:
    """Per-call times (ms) of one side, the first call (warm-up, compilation included) apart.

    ``first_wall_ms`` is the first call in elapsed time whatever the clock: compilation runs partly in
    worker processes, whose CPU time the ``cpu`` clock would not see.
    """

    first_ms: float
    times_ms: list[float]
    first_wall_ms: float

    @property
    def median_ms(self) -> float:
        return statistics.median(self.times_ms)

    @property
    def spread(self) -> float:
        """Interquartile range over the median: how much to trust the median on a noisy machine."""
        if len(self.times_ms) < 4:
            return (max(self.times_ms) - min(self.times_ms)) / self.median_ms
        low, _, high = statistics.quantiles(self.times_ms, n=4)
        return (high - low) / self.median_ms


def time_interleaved(
    workloads: dict[str, Workload],
    clock: Clock,
    warmup: int,
    repeats: int,
    budget_s: float = 0.0,
    max_rounds: int = 100,
) -> dict[str, Timing]:
    """Time each side in rounds, interleaved (round r starts at side r mod n), after ``warmup`` calls:
    ``repeats`` rounds, then more while ``budget_s`` seconds of rounds last (at most ``max_rounds``).

    Interleaving spreads slow periods of a shared machine over all sides instead of one of them; the
    budget gives fast shapes many rounds, so that their medians ride out bursts of load.
    """
    names = list(workloads)
    first: dict[str, float] = {}
    first_wall: dict[str, float] = {}
    for name in names:
        workloads[name].prepare()
        start = time.perf_counter()
        first[name] = clock.measure(workloads[name].run)
        first_wall[name] = (time.perf_counter() - start) * 1e3
        for _ in range(warmup - 1):
            workloads[name].prepare()
            workloads[name].run()
    times: dict[str, list[float]] = {name: [] for name in names}
    started, round_ = time.perf_counter(), 0
    while round_ < repeats or (round_ < max_rounds and time.perf_counter() - started < budget_s):
        for offset in range(len(names)):
            name = names[(round_ + offset) % len(names)]
            workloads[name].prepare()
            times[name].append(clock.measure(workloads[name].run))
        round_ += 1
    return {name: Timing(first[name], times[name], first_wall[name]) for name in names}


def peak_memory_bytes(workload: Workload, device: torch.device) -> int | None:
    """Bytes allocated by one call above what was allocated before it, at its peak.

    CUDA: the caching allocator's own counter. CPU: every allocation and free of the call as recorded by
    the profiler, summed in time order. None where the profiler does not expose them.
    """
    workload.prepare()
    if device.type == "cuda":
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        workload.run()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated(device) - before
    return _cpu_peak_bytes(workload.run)


def _cpu_peak_bytes(run: Callable[[], None]) -> int | None:
    from torch.profiler import ProfilerActivity, profile

    try:
        from torch._C._profiler import _EventType
    except ImportError:  # a torch without the event tree
        return None
    with native_stderr_silenced(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as trace:
        run()
    events: list[tuple[int, int]] = []
    pending = list(trace.profiler.kineto_results.experimental_event_tree())
    while pending:
        event = pending.pop()
        if event.tag == _EventType.Allocation and event.extra_fields.device.type == "cpu":
            events.append((event.start_time_ns, event.extra_fields.alloc_size))
        pending.extend(event.children)
    live = peak = 0
    for _, size in sorted(events):
        live += size
        peak = max(peak, live)
    return peak


@contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Send the process's own stderr (file descriptor 2) to /dev/null for a block.

    torch 2.14's profiler backend (kineto) writes a "USDT: … profiler_start" and a "… profiler_stop" line
    straight to descriptor 2 for every profiled call: two per row and side would bury the table. Python
    exceptions still surface, after the block; ``sys.stderr`` is flushed first so nothing is lost. What
    native code writes there during the block (a C++ warning) is dropped too: the block is only the
    one profiled call, which the timed calls before it have already run with stderr open.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
