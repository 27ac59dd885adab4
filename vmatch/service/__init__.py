"""The HTTP matching service: ``vmatch serve`` (FastAPI + uvicorn).

Where it sits: around the engine (decode -> embed -> bank -> align -> report); platforms upload
videos or hashes, curators maintain banks. In the conventions of Meta's Hasher-Matcher-Actioner:
banks, content, hashing, lookup and status endpoints.

Modules:
    config   ServiceConfig: every limit and option, passed to the app factory (no globals)
    keys     API keys (scopes match / curate / admin), stored hashed in SQLite under the bank root
    metrics  counters, gauges and histograms in Prometheus text format
    jobs     bounded worker pool + job records (202 + GET /jobs/{id}), per-job time limit
    uploads  request bodies streamed to a temp file with a running size limit (413); a client
             leaving mid-upload is status 499
    headers  frame sizes declared by MP4/QuickTime headers, read without FFmpeg
    logs     redaction of secret-looking query parameters in every log record
    engine   banks of the bank root, limits checks, the heavy work (embed, hash, match, lookup)
    schemas  request / response models (pydantic) with field descriptions
    app      create_app(config): routes, auth, error bodies

Only ``app``, ``schemas`` and ``uploads`` import the web stack (FastAPI, pydantic, Starlette);
``keys`` and ``config`` are used by the CLI. The service process never installs PyAV's log
callback (``av.logging.set_level``): with it, FFmpeg's decoder threads deadlock against the GIL.
"""

from __future__ import annotations

__all__ = ["ServiceConfig", "create_app"]


def __getattr__(name: str):
    if name == "ServiceConfig":
        from vmatch.service.config import ServiceConfig

        return ServiceConfig
    if name == "create_app":
        from vmatch.service.app import create_app

        return create_app
    raise AttributeError(f"module 'vmatch.service' has no attribute {name!r}")
