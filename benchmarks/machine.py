"""The machine a benchmark ran on, in one line (CPU model, cores, torch threads, GPU, load), and
the writer of a benchmark's section of RESULTS.md."""

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


def replace_section(path, begin: str, end: str, body: str) -> None:
    """Put ``body`` between the marker lines ``begin`` and ``end`` of the Markdown file ``path``
    (appended with its markers when absent); written to a temporary file and renamed, so the file
    is never half-written."""
    from pathlib import Path

    path = Path(path)
    text = path.read_text() if path.exists() else ""
    block = f"{begin}\n{body}{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
