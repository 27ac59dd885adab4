"""Where and how the CNN runs: the device (CPU or CUDA), the network's arithmetic (fp32, bf16, fp16)
and the CPU heap settings that keep its activation buffers mapped.

Where it sits: **embed**; :class:`vmatch.embed.TorchEmbedder` resolves its device and precision here, and the
CLI, the service and the Ray actors call :func:`tune_cpu_allocator`. torch is imported inside the functions
that need it, never at import.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

from vmatch.errors import UsageError

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


def tune_cpu_allocator(*, trim_threshold: int = 1 << 30) -> bool:
    """Keep large buffers on the glibc heap instead of mmapping and unmapping them on every forward pass.

    glibc serves allocations above its mmap threshold with fresh ``mmap`` calls and returns them to the kernel
    when freed, so every CNN forward pass page-faults its activation buffers in again (measured: up to 3.7x
    slower on a 2-core CPU). This sets ``M_MMAP_MAX = 0`` and ``M_TRIM_THRESHOLD = trim_threshold`` through
    ``mallopt``, the same as the environment variables ``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=...``.
    It affects the whole process (freed memory stays reserved), so it is an explicit call for the CLI and
    long-running workers, never done at import.

    Args:
        trim_threshold: Bytes of free heap top kept before glibc trims it (default 1 GiB; at most 2**31 - 1).

    Returns:
        True when both settings were applied; False on non-glibc platforms (no-op) or if ``mallopt`` refused.
    """
    if not isinstance(trim_threshold, int) or not 0 < trim_threshold < 2**31:
        raise UsageError(f"trim_threshold must be an int in (0, 2**31), got {trim_threshold!r}")
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok_mmap = mallopt(_M_MMAP_MAX, 0)
    ok_trim = mallopt(_M_TRIM_THRESHOLD, trim_threshold)
    return bool(ok_mmap) and bool(ok_trim)


def resolve_device(device: str) -> str:
    """Turn a device request into a concrete torch device string.

    Args:
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

    Returns:
        ``"cpu"`` or ``"cuda:N"``.

    Raises:
        UsageError: unknown device, CUDA asked for but not available, or GPU index out of range.
    """
    import torch

    if not isinstance(device, str):
        raise UsageError(f"device must be a string ('auto', 'cpu', 'cuda', 'cuda:N'), got {device!r}")
    name = device.strip().lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return "cpu"
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise UsageError(
                f"device {device!r} was asked for but CUDA is not available here (torch {torch.__version__}, "
                "no usable NVIDIA GPU/driver); use device='cpu' or 'auto'"
            )
        if name == "cuda":
            return f"cuda:{torch.cuda.current_device()}"
        index_text = name[len("cuda:"):]
        if not index_text.isdigit():
            raise UsageError(f"device {device!r}: expected 'cuda:N' with N a GPU index")
        index = int(index_text)
        count = torch.cuda.device_count()
        if index >= count:
            raise UsageError(f"device {device!r}: only {count} CUDA device(s) visible (indices 0..{count - 1})")
        return f"cuda:{index}"
    raise UsageError(f"unknown device {device!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'")


#: Values of the ``precision`` option of :class:`TorchEmbedder`.
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN runs bf16 natively on this CPU (AVX512-BF16 or AMX); emulated bf16 is slower than fp32."""
    import torch

    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # pragma: no cover - torch builds without the query
        return False


def resolve_precision(precision: str, device: str) -> str:
    """The network arithmetic ``"fp32"``, ``"bf16"`` or ``"fp16"`` for a ``precision`` option on ``device``.

    Args:
        precision: One of :data:`PRECISIONS`.
        device: A resolved device (``"cpu"`` or ``"cuda:N"``, see :func:`resolve_device`).

    Returns:
        ``"auto"`` resolves to fp32 on CPU and to bf16 (else fp16) on CUDA.

    Raises:
        UsageError: unknown value, fp16 on CPU, or bf16 on a device without native bf16.
    """
    import torch

    if precision not in PRECISIONS:
        raise UsageError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    cuda = device.startswith("cuda")
    if precision == "auto":
        if not cuda:
            return "fp32"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if precision == "fp16" and not cuda:
        raise UsageError("precision 'fp16' runs on CUDA only; on CPU use 'fp32' or, where supported, 'bf16'")
    if precision == "bf16":
        if cuda and not torch.cuda.is_bf16_supported():
            raise UsageError(f"{device} has no bf16; use precision 'fp16' or 'fp32'")
        if not cuda and not cpu_has_native_bf16():
            raise UsageError(
                "this CPU has no native bf16 (AVX512-BF16 or AMX), where bf16 would be slower than fp32; "
                "use precision 'fp32'"
            )
    return precision
