"""The embed stage without torch: an ONNX export of the CNN and an onnxruntime embedder (issue 16).

Where it sits: decode -> sample -> **embed** (on a device that carries no torch) -> signal.

A client that computes signals on the user's device (``vmatch hash``, the private mode's vouchers)
should not need torch (~5 GB). :func:`export_onnx` (run once where torch is, ``vmatch
export-model``) writes one self-contained ONNX file of the whole embed stage of a model: uint8 RGB
frames ``[N, H, W, 3]`` in, L2-normalised float32 embeddings ``[N, dim]`` out, with the input scaling
``(x - 127) / 128``, the network (BatchNorm folded), GeM pooling, the mirrored pass when the model
averages it, the first L2 normalisation, the projection and the last L2 normalisation inside the
graph. The model's spec is stored in the file's metadata, so :class:`OnnxEmbedder` (numpy and
onnxruntime only) knows which model it implements: its signals carry the same ``model_id`` as the
torch embedder's and match the same banks. The border crop of a model that has it
(:func:`vmatch.preprocess.crop_borders`, numpy) runs before the graph, as in
:class:`vmatch.embed.TorchEmbedder`.

Agreement with torch is measured, not assumed: tests/test_onnx.py checks cosine >= 0.999 per frame.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from vmatch.errors import ModelError, UsageError
from vmatch.models import ModelSpec

#: Metadata keys of an exported file.
META_SPEC = "vmatch_model_spec"
META_MODEL_ID = "vmatch_model_id"
META_FORMAT = "vmatch_onnx_format"
FORMAT = "vmatch-onnx-embedder v1"
#: ONNX operator set of the export (onnxruntime >= 1.12 runs it).
OPSET = 17


def _graph_module(embedder):
    """A torch module computing :meth:`TorchEmbedder.embed` from uint8 frames (fp32, CPU), with the
    embedder's own pooling and projection functions."""
    import torch

    from vmatch.embed.pooling import apply_projection, gem_pool

    model = embedder._model.to(memory_format=torch.contiguous_format).eval()
    spec = embedder.spec
    mean = embedder._proj_mean
    comps = embedder._proj_components

    class EmbedGraph(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = model
            self.mean = None if mean is None else torch.nn.Buffer(mean.detach().cpu().clone())
            self.components = None if comps is None else torch.nn.Buffer(comps.detach().cpu().clone())

        def forward(self, frames: torch.Tensor) -> torch.Tensor:
            x = ((frames.float() - 127.0) / 128.0).permute(0, 3, 1, 2)
            pooled = gem_pool(self.net.forward_features(x), spec.gem_p)
            if spec.hflip_tta:
                pooled = (pooled + gem_pool(self.net.forward_features(torch.flip(x, dims=(3,))), spec.gem_p)) * 0.5
            return apply_projection(pooled, self.mean, self.components)

    return EmbedGraph().eval()


def export_onnx(
    path: str | os.PathLike,
    spec: ModelSpec | str | None = None,
    *,
    models_dir: str | os.PathLike | None = None,
) -> Path:
    """Write the embed stage of ``spec`` (default: the default model) to the ONNX file ``path``.

    Needs torch and the ``onnx`` package (``pip install 'vmatch[onnx]'``). The file is written
    under a temporary name and renamed into place once checked, so a failed export leaves nothing.

    Raises:
        UsageError: ``onnx`` is not installed, or the model is the test model (no network to export).
        ModelError: the model's weights or projection are missing.
    """
    from vmatch.embed import FAKE_MODEL_NAME, TorchEmbedder
    from vmatch.models import DEFAULT_MODEL, get_model_spec

    try:
        import onnx
    except ImportError as e:
        raise UsageError("exporting a model needs the onnx package: pip install 'vmatch[onnx]'") from e
    import torch

    if spec is None or isinstance(spec, str):
        spec = get_model_spec(DEFAULT_MODEL if spec is None else spec)
    if spec.name == FAKE_MODEL_NAME:
        raise UsageError(f"model {spec.name!r} is the weight-free test embedder: there is no network to export")
    out = Path(path)
    if out.is_dir():
        raise UsageError(f"{out}: is a directory; name the .onnx file to write")
    embedder = TorchEmbedder(spec, device="cpu", models_dir=models_dir)
    module = _graph_module(embedder)
    h, w = spec.input_size
    example = torch.zeros((2, h, w, 3), dtype=torch.uint8)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            # The SAME padding of the strided convolutions is computed from the input size, a
            # constant of the model (only the batch axis is dynamic): the traced values are right.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            # The TorchScript-based exporter (deprecated upstream from torch 2.9, present in the
            # torch <= 2.14.1 this project pins): 7 s here, against ~170 s for the torch.export-based
            # one on the same 2-core CPU, with the same embeddings (both measured, 2026-12-03).
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(module, (example,), str(tmp), input_names=["frames"], output_names=["embeddings"],
                              dynamic_axes={"frames": {0: "n"}, "embeddings": {0: "n"}}, opset_version=OPSET,
                              dynamo=False)
        model = onnx.load(str(tmp))
        for key, value in ((META_FORMAT, FORMAT), (META_SPEC, spec.to_json()), (META_MODEL_ID, spec.model_id)):
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.checker.check_model(model)
        onnx.save(model, str(tmp))
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


class OnnxEmbedder:
    """Runs an exported embed stage with onnxruntime on CPU: the :class:`vmatch.embed.Embedder`
    protocol (``embed(frames) -> [N, dim]``) without torch.

    Attributes:
        spec: The model the file implements (from its metadata).
        device: Always ``"cpu"``.
        dim: Output dimension.
        batch_size: Frames per run of the graph.
        path: The ONNX file.
    """

    def __init__(self, path: str | os.PathLike, *, batch_size: int = 32, threads: int | None = None) -> None:
        """Load ``path`` (written by :func:`export_onnx`).

        Raises:
            UsageError: onnxruntime is not installed, or a bad batch size or thread count.
            ModelError: the file is missing, not ONNX, or not a vmatch embedder export (named, with why).
        """
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise UsageError("the ONNX embedder needs onnxruntime: pip install 'vmatch[client]'") from e
        for value, what in ((batch_size, "batch_size"), (threads, "threads")):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise UsageError(f"{what} must be an int >= 1, got {value!r}")
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"{self.path}: no such ONNX model file (write one with `vmatch export-model`)")
        options = ort.SessionOptions()
        options.inter_op_num_threads = 1
        if threads is not None:
            options.intra_op_num_threads = threads
        try:
            self._session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types for unreadable graphs
            raise ModelError(f"{self.path}: not a loadable ONNX model ({type(e).__name__}: {e})") from e
        meta = self._session.get_modelmeta().custom_metadata_map
        if meta.get(META_FORMAT) != FORMAT or META_SPEC not in meta:
            raise ModelError(f"{self.path}: not a vmatch embedder export (no {META_FORMAT!r} metadata); "
                             "write one with `vmatch export-model`")
        self.spec = ModelSpec.from_json(meta[META_SPEC])
        if self.spec.model_id != meta.get(META_MODEL_ID):
            raise ModelError(f"{self.path}: its model spec does not give its recorded model_id "
                             f"{meta.get(META_MODEL_ID)!r} (the file was altered)")
        self.device = "cpu"
        self.dim = self.spec.dim
        self.batch_size = batch_size
        self._input = self._session.get_inputs()[0].name

    def __repr__(self) -> str:
        return f"OnnxEmbedder(model_id={self.spec.model_id!r}, path={str(self.path)!r}, dim={self.dim})"

    def embed(self, frames: np.ndarray) -> np.ndarray:
        """Embed uint8 RGB frames ``[N, H, W, 3]`` (``(H, W) == spec.input_size``) -> float32 ``[N, dim]``.

        Raises:
            UsageError: wrong type, dtype or size.
        """
        from vmatch.embed import check_frames

        frames = check_frames(frames, self.spec.input_size)
        if self.spec.crop_borders and frames.shape[0]:
            from vmatch.preprocess import crop_borders

            frames = np.stack([crop_borders(f) for f in frames])
        out = np.empty((frames.shape[0], self.dim), np.float32)
        for start in range(0, frames.shape[0], self.batch_size):
            chunk = np.ascontiguousarray(frames[start: start + self.batch_size])
            out[start: start + chunk.shape[0]] = self._session.run(None, {self._input: chunk})[0]
        return out
