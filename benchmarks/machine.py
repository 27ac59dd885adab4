"""The machine a benchmark ran on, in one line (CPU model, cores, torch threads, GPU, load)."""

from __future__ import annotations

import os
import platform


def machine() -> str:
    cpu = platform.processor() or platform.machine() or "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
        torch_part = f"torch {torch.__version__} ({torch.get_num_threads()} threads)"
    except Exception:  # pragma: no cover - torch is a dependency
        gpu, torch_part = "torch unavailable", "no torch"
    load = f", load average {os.getloadavg()[0]:.1f} at start" if hasattr(os, "getloadavg") else ""
    return (f"{platform.system()} {platform.machine()}, {cpu}, {n} cores available, {torch_part}, {gpu}, "
            f"Python {platform.python_version()}{load}")
