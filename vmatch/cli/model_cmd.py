"""Command line, model artifacts: ``vmatch export-model`` (the embed stage as one ONNX file, for
clients that compute signals without torch: :mod:`vmatch.onnx_embed`)."""

from __future__ import annotations

import json

from vmatch.cli.common import EXIT_OK


def cmd_export_model(args) -> int:
    from vmatch.models import file_sha256
    from vmatch.onnx_embed import export_onnx, OnnxEmbedder

    path = export_onnx(args.out, args.model)
    loaded = OnnxEmbedder(path)  # what a client will load: the file must open and name its model
    print(json.dumps({"path": str(path), "model": loaded.spec.name, "model_id": loaded.spec.model_id,
                      "dim": loaded.dim, "input_size": list(loaded.spec.input_size),
                      "bytes": path.stat().st_size, "sha256": file_sha256(path)}), flush=True)
    return EXIT_OK
