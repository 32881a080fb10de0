"""What the numbers were measured on: CPU, cores, threads, GPU, library versions, precision settings."""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

import torch


def cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        match = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.MULTILINE)
        if match:
            return match.group(1).strip()
    return platform.processor() or platform.machine()


def physical_cores() -> int | None:
    """Distinct (physical id, core id) pairs in /proc/cpuinfo; None where it is not available."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        return None
    cores = set()
    for block in cpuinfo.read_text().split("\n\n"):
        socket = re.search(r"^physical id\s*:\s*(\d+)", block, re.MULTILINE)
        core = re.search(r"^core id\s*:\s*(\d+)", block, re.MULTILINE)
        if socket and core:
            cores.add((socket.group(1), core.group(1)))
    return len(cores) or None


def describe(device: torch.device, dtype: torch.dtype) -> dict:
    info = {
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "physical_cores": physical_cores(),
        "torch_threads": torch.get_num_threads(),
        "load_average_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "mkldnn": torch.backends.mkldnn.is_available(),
        "device": str(device),
        "dtype": str(dtype).replace("torch.", ""),
    }
    if device.type == "cuda":
        info |= {
            "gpu": torch.cuda.get_device_name(device),
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
            "tf32_cudnn": torch.backends.cudnn.allow_tf32,
        }
    return info


def machine_tag(info: dict) -> str:
    """A folder name for the results: the GPU (or CPU) model, slugged, and the thread count on CPU."""
    base = f"cuda-{info['gpu']}" if "gpu" in info else f"cpu-{info['cpu']}-{info['torch_threads']}t"
    return re.sub(r"[^a-z0-9]+", "-", base.lower()).strip("-")
