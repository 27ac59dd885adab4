"""The CNN signal of a video as a file: frame embeddings with their timestamps, without the media.

Where it sits: ``vmatch hash`` (on a client device, say) -> **signal file** -> ``vmatch lookup``
on the server, which matches it exactly as ``vmatch match`` would match the video itself.

Format ``vmatch-cnn-signal``, version 2: a ZIP archive written by :func:`numpy.savez_compressed`,
read with ``allow_pickle=False`` (no code can hide in it), holding

* ``header.json`` (UTF-8 JSON as a uint8 array): ``{"format": "vmatch-cnn-signal", "version": 2,
  "model_id": ..., "model": <ModelSpec dict>, "video_id": ..., "duration": seconds, "fps": sampling
  rate, "n_blank": dropped blank frames, "sha256": content hash of the file or ""}``;
* ``timestamps``: float64 [N], presentation times in seconds;
* ``features``: float16 [N, D], the L2-normalised frame embeddings (float16 halves the size; the
  match scores it gives differ from float32 by less than 1e-3);
* version 2 adds the frames' local features, with which the server verifies candidate pairs
  exactly as ``vmatch match`` does (:mod:`vmatch.verify`): ``local_counts`` int32 [N] keypoints per
  frame, ``local_coords`` uint16 [K, 2] (1/16 px), ``local_desc`` uint8 [K, 32] ORB descriptors,
  ``local_static`` packed bits, and the same with ``local_m_`` for the mirrored frames and with
  ``local_s_`` for the frames' SIFT keypoints (``local_s_desc`` uint8 [K, 128]; no mirrored SIFT
  set: the server permutes the descriptors); a file without the SIFT set (written before it) is
  read and verified with ORB alone.

Version 1 files (no local features) are refused: their matches could not be verified.
A 60 s video at 1 frame/s with the default 256-d model takes about 30 KB of embeddings and up to
2.2 MB of ORB features (512 keypoints per frame and per mirror image, 36 bytes each) and 1.3 MB of
SIFT features (384 keypoints per frame at most, 132 bytes each); measured on five benchmark
queries: 2.0 MB a minute in all, SIFT 42 % of it.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

from vmatch.errors import ModelMismatchError, UsageError
from vmatch.signals.rules import CNN_FORMAT as FORMAT
from vmatch.signals.rules import CNN_SUFFIX as SUFFIX  # noqa: F401 - cnn.SUFFIX: the CLI
from vmatch.signals.rules import CNN_VERSION as VERSION
from vmatch.types import VideoEmbedding
#: Most frames a signal may hold: 100,000 (27 h at 1 frame/s).
MAX_FRAMES = 100_000
#: Widest frame embedding a signal may carry.
MAX_DIM = 4096
#: Most bytes a signal may expand to when decompressed (its arrays together): 3 hours at 1 frame/s
#: with the default model's 512 keypoints per frame and mirror image (~37 KB a frame).
MAX_EXPANDED_BYTES = 512 * 2**20
#: Most bytes of header.json.
MAX_HEADER_BYTES = 64 * 1024
_MEMBERS = ("header", "timestamps", "features")
_LOCAL_MEMBERS = tuple(f"local{m}_{k}" for m in ("", "_m") for k in ("counts", "coords", "desc", "static"))
#: dtypes (numpy ``dtype.str``) a member may have; :func:`dumps` writes the first of each.
_DTYPES = {"header": ("|u1",), "timestamps": ("<f8", "<f4"), "features": ("<f2", "<f4"),
           **{m: {"counts": ("<i4",), "coords": ("<u2",), "desc": ("|u1",), "static": ("|u1",)}[m.rsplit("_", 1)[1]]
              for m in _LOCAL_MEMBERS}}


def dumps(emb: VideoEmbedding, *, model: dict, fps: float) -> bytes:
    """Serialise ``emb`` (made by the model described by ``model``, a ModelSpec dict)."""
    header = {
        "format": FORMAT,
        "version": VERSION,
        "model_id": emb.model_id,
        "model": model,
        "video_id": emb.video_id,
        "duration": float(emb.duration),
        "fps": float(fps),
        "n_blank": int(emb.n_blank),
        "sha256": emb.sha256,
    }
    if emb.local is None or emb.local.mirrored is None:
        raise UsageError(f"{emb.video_id}: a signal needs the query's local features with their mirror images "
                         "(embed the video with keypoints='query')")
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        header=np.frombuffer(json.dumps(header, sort_keys=True).encode("utf-8"), dtype=np.uint8),
        timestamps=np.asarray(emb.timestamps, dtype="<f8"),
        features=np.asarray(emb.features, dtype="<f2"),
        **emb.local.to_arrays(),
    )
    return buf.getvalue()


def loads(data: bytes, *, source: str = "<bytes>", max_bytes: int = MAX_EXPANDED_BYTES) -> tuple[VideoEmbedding, dict]:
    """Parse a signal; returns the embedding and the header. Raises UsageError naming ``source``.

    Nothing is decompressed before its size is known: the ZIP's declared sizes of the three
    members must add up to at most ``max_bytes`` and each ``.npy`` header must declare an array
    that fits in its member (Python's ZIP reader stops at the declared size, so a member that
    inflates further is cut there and fails its CRC). ``np.load`` is not used: it would allocate
    whatever shape a header declares. Then the arrays are checked against each other: 1-D
    timestamps, finite and strictly increasing; features [N, D] with N = len(timestamps),
    1 <= D <= :data:`MAX_DIM`, finite; at most :data:`MAX_FRAMES` frames.
    """
    if not data.startswith(b"PK"):
        raise UsageError(f"{source}: not a {FORMAT} file (not a ZIP archive); make one with `vmatch hash`")
    arrays = _read_members(data, source, max_bytes)
    try:
        header = json.loads(bytes(arrays["header"]).decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise UsageError(f"{source}: not a readable {FORMAT} file (header.json: {e})") from e
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise UsageError(f"{source}: not a {FORMAT} file")
    if header.get("version") != VERSION:
        raise UsageError(
            f"{source}: {FORMAT} version {header.get('version')!r} is not supported (this vmatch reads "
            f"version {VERSION}); recompute it with this vmatch's `vmatch hash`"
        )
    ts, feats = _check_arrays(arrays["timestamps"], arrays["features"], header, source)
    from vmatch.verify import LocalFeatures

    local = LocalFeatures.from_arrays(arrays, source=source)
    if local is None or local.mirrored is None or len(local) != ts.shape[0] or len(local.mirrored) != ts.shape[0]:
        raise UsageError(f"{source}: inconsistent {FORMAT} file: local features missing or not one per frame")
    if feats.shape[0]:
        feats = feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)
    try:
        emb = VideoEmbedding(
            video_id=str(header.get("video_id", "")),
            timestamps=ts,
            features=feats,
            duration=float(header["duration"]),
            model_id=str(header["model_id"]),
            sha256=str(header.get("sha256", "")),
            n_blank=int(header.get("n_blank", 0)),
            local=local,
        )
    except (KeyError, TypeError, ValueError, OverflowError) as e:
        raise UsageError(f"{source}: inconsistent {FORMAT} file ({e})") from e
    return emb, header


def _read_members(data: bytes, source: str, max_bytes: int) -> dict[str, np.ndarray]:
    """The three arrays of a signal, each read only after its declared size was checked."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise UsageError(f"{source}: not a readable {FORMAT} file ({e})") from e
    with zf:
        infos = {i.filename: i for i in zf.infolist()}
        missing = [m for m in _MEMBERS if m + ".npy" not in infos]
        if missing:
            raise UsageError(f"{source}: not a {FORMAT} file (missing {missing})")
        members = _MEMBERS + tuple(m for m in _LOCAL_MEMBERS if m + ".npy" in infos)
        declared = sum(infos[m + ".npy"].file_size for m in members)
        if declared > max_bytes:
            raise UsageError(
                f"{source}: expands to {declared} bytes when decompressed; a {FORMAT} file may expand to at "
                f"most {max_bytes} bytes ({MAX_FRAMES} frames at most)"
            )
        if infos["header.npy"].file_size > MAX_HEADER_BYTES + 256:
            raise UsageError(f"{source}: header.json is over {MAX_HEADER_BYTES} bytes")
        out = {}
        for m in members:
            info = infos[m + ".npy"]
            try:
                with zf.open(info) as f:
                    out[m] = _read_npy(f, info.file_size, allowed=_DTYPES[m])
            except UsageError as e:
                raise UsageError(f"{source}: {m}: {e}") from None
            except zlib.error as e:
                raise UsageError(f"{source}: not a readable {FORMAT} file ({m}: compressed data is corrupt: {e})") from e
            except (ValueError, OSError, zipfile.BadZipFile, EOFError, NotImplementedError, RuntimeError) as e:
                raise UsageError(f"{source}: not a readable {FORMAT} file ({m}: {e})") from e
    return out


def _read_npy(f, member_size: int, *, allowed: tuple[str, ...]) -> np.ndarray:
    """One ``.npy`` array from an open member whose uncompressed size is ``member_size``: the
    header is parsed first, and the data is read only if the shape it declares fits."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
    elif version in ((2, 0), (3, 0)):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    else:
        raise UsageError(f".npy version {version} is not supported")
    if dtype.hasobject or dtype.str not in allowed:
        raise UsageError(f"dtype {dtype.str} is not allowed (expected {' or '.join(allowed)})")
    if len(shape) > 2 or any((not isinstance(n, int)) or n < 0 for n in shape):
        raise UsageError(f"shape {shape} is not allowed")
    count = 1
    for n in shape:
        count *= n
    nbytes = count * dtype.itemsize
    if nbytes > member_size:
        raise UsageError(f"declares {shape} ({nbytes} bytes), more than the {member_size} bytes it holds")
    raw = f.read(nbytes)
    if len(raw) != nbytes:
        raise UsageError(f"truncated: {len(raw)} of {nbytes} bytes")
    return np.frombuffer(raw, dtype=dtype).reshape(shape, order="F" if fortran else "C")


def _check_arrays(ts: np.ndarray, feats: np.ndarray, header: dict, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Timestamps [N] and features [N, D] as float64 / float32, or a UsageError saying what is wrong."""
    bad = f"{source}: inconsistent {FORMAT} file"
    if ts.ndim != 1:
        raise UsageError(f"{bad}: timestamps must be 1-D, got shape {ts.shape}")
    if feats.ndim != 2:
        raise UsageError(f"{bad}: features must be 2-D [frames, dim], got shape {feats.shape}")
    n, d = feats.shape
    if n != ts.shape[0]:
        raise UsageError(f"{bad}: {ts.shape[0]} timestamps for {n} feature rows")
    if n > MAX_FRAMES:
        raise UsageError(f"{bad}: {n} frames; a signal may hold at most {MAX_FRAMES}")
    if not 1 <= d <= MAX_DIM:
        raise UsageError(f"{bad}: features are {d}-d; expected 1 to {MAX_DIM}")
    model = header.get("model")
    if isinstance(model, dict) and "dim" in model and model["dim"] != d:
        raise UsageError(f"{bad}: features are {d}-d but its model {model.get('name', '?')!r} makes {model['dim']}-d ones")
    ts64 = ts.astype(np.float64)
    f32 = feats.astype(np.float32)
    if not (np.isfinite(ts64).all() and np.isfinite(f32).all()):
        raise UsageError(f"{bad}: timestamps or features hold NaN or infinite values")
    return ts64, f32


def write(path: str | os.PathLike, emb: VideoEmbedding, *, model: dict, fps: float) -> Path:
    """Write atomically (temporary file + rename): a reader never sees half a signal."""
    from vmatch.files import write_atomic

    return write_atomic(path, dumps(emb, model=model, fps=fps), what="the CNN signal")


def read(path: str | os.PathLike, *, max_bytes: int = MAX_EXPANDED_BYTES) -> tuple[VideoEmbedding, dict]:
    """Read a signal file (see :func:`loads`); a file larger than ``max_bytes`` is refused unread."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > max_bytes:
                raise UsageError(f"{p}: is {size} bytes; a {FORMAT} file is at most {max_bytes} bytes")
            data = f.read()
    except OSError as e:
        raise UsageError(f"{p}: cannot read ({e.strerror or e})") from e
    return loads(data, source=str(p), max_bytes=max_bytes)


def check_model(emb: VideoEmbedding, bank_model_id: str, *, source: str, dim: int | None = None) -> None:
    """Refuse a signal of another model than the bank's (scores would be meaningless), or one whose
    features are not the bank's ``dim`` wide (a damaged or forged file naming the right model)."""
    if emb.model_id != bank_model_id:
        raise ModelMismatchError(
            f"{source}: signal made with model {emb.model_id}, the bank holds model {bank_model_id}; "
            "recompute it with `vmatch hash --model <the bank's model>`"
        )
    if dim is not None and len(emb) and emb.dim != dim:
        raise UsageError(f"{source}: features are {emb.dim}-d, the bank's model {bank_model_id} makes {dim}-d ones")
