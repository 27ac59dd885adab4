"""The CNN signal of a video as a file: frame embeddings with their timestamps, without the media.

Where it sits: ``vmatch hash`` (on a client device, say) -> **signal file** -> ``vmatch lookup``
on the server, which matches it exactly as ``vmatch match`` would match the video itself.

Format ``vmatch-cnn-signal``, version 1: a ZIP archive written by :func:`numpy.savez_compressed`,
read with ``allow_pickle=False`` (no code can hide in it), holding

* ``header.json`` (UTF-8 JSON as a uint8 array): ``{"format": "vmatch-cnn-signal", "version": 1,
  "model_id": ..., "model": <ModelSpec dict>, "video_id": ..., "duration": seconds, "fps": sampling
  rate, "n_blank": dropped blank frames, "sha256": content hash of the file or ""}``;
* ``timestamps``: float64 [N], presentation times in seconds;
* ``features``: float16 [N, D], the L2-normalised frame embeddings (float16 halves the size; the
  match scores it gives differ from float32 by less than 1e-3).

A 60 s video at 1 frame/s with the default 256-d model takes about 30 KB.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from vmatch.errors import ModelMismatchError, UsageError
from vmatch.types import VideoEmbedding

FORMAT = "vmatch-cnn-signal"
VERSION = 1
SUFFIX = ".vmsig"


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
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        header=np.frombuffer(json.dumps(header, sort_keys=True).encode("utf-8"), dtype=np.uint8),
        timestamps=np.asarray(emb.timestamps, dtype="<f8"),
        features=np.asarray(emb.features, dtype="<f2"),
    )
    return buf.getvalue()


def loads(data: bytes, *, source: str = "<bytes>") -> tuple[VideoEmbedding, dict]:
    """Parse a signal; returns the embedding and the header. Raises UsageError naming ``source``."""
    if not data.startswith(b"PK"):
        raise UsageError(f"{source}: not a {FORMAT} file (not a ZIP archive); make one with `vmatch hash`")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            missing = {"header", "timestamps", "features"} - set(z.files)
            if missing:
                raise UsageError(f"{source}: not a {FORMAT} file (missing {sorted(missing)})")
            header = json.loads(bytes(z["header"]).decode("utf-8"))
            ts = z["timestamps"].astype(np.float64)
            feats = z["features"].astype(np.float32)
    except UsageError:
        raise
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, UnicodeDecodeError, KeyError) as e:
        raise UsageError(f"{source}: not a readable {FORMAT} file ({e})") from e
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise UsageError(f"{source}: not a {FORMAT} file")
    if header.get("version") != VERSION:
        raise UsageError(
            f"{source}: {FORMAT} version {header.get('version')!r} is not supported (this vmatch reads "
            f"version {VERSION}); recompute it with this vmatch's `vmatch hash`"
        )
    norms = np.linalg.norm(feats, axis=1, keepdims=True) if feats.size else feats[:, :1]
    feats = feats / np.maximum(norms, 1e-12) if feats.size else feats
    try:
        emb = VideoEmbedding(
            video_id=str(header.get("video_id", "")),
            timestamps=ts,
            features=feats.reshape(ts.shape[0], -1) if feats.size else np.zeros((0, feats.shape[-1]), np.float32),
            duration=float(header["duration"]),
            model_id=str(header["model_id"]),
            sha256=str(header.get("sha256", "")),
            n_blank=int(header.get("n_blank", 0)),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise UsageError(f"{source}: inconsistent {FORMAT} file ({e})") from e
    return emb, header


def write(path: str | os.PathLike, emb: VideoEmbedding, *, model: dict, fps: float) -> Path:
    """Write atomically (temporary file + rename): a reader never sees half a signal."""
    p = Path(path)
    tmp = p.with_name(f".{p.name}.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(dumps(emb, model=model, fps=fps))
        os.replace(tmp, p)
    finally:
        if tmp.exists():
            tmp.unlink()
    return p


def read(path: str | os.PathLike) -> tuple[VideoEmbedding, dict]:
    """Read a signal file (see :func:`loads`)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise UsageError(f"{p}: cannot read ({e.strerror or e})") from e
    return loads(data, source=str(p))


def check_model(emb: VideoEmbedding, bank_model_id: str, *, source: str) -> None:
    """Refuse a signal of another model than the bank's (scores would be meaningless)."""
    if emb.model_id != bank_model_id:
        raise ModelMismatchError(
            f"{source}: signal made with model {emb.model_id}, the bank holds model {bank_model_id}; "
            "recompute it with `vmatch hash --model <the bank's model>`"
        )
