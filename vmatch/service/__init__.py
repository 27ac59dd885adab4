"""The HTTP matching service: ``vmatch serve`` (FastAPI + uvicorn).

Where it sits: around the engine (decode -> embed -> bank -> align -> report); platforms upload
videos or hashes, curators maintain banks. In the conventions of Meta's Hasher-Matcher-Actioner:
banks, content, hashing, lookup and status endpoints.

Modules:
    config         ServiceConfig: every limit and option, passed to the app factory (no globals)
    keys           API keys (scopes match / curate / admin), stored hashed in SQLite under the bank root
    metrics        counters, gauges and histograms in Prometheus text format
    jobs           bounded worker pool + job records (202 + GET /jobs/{id}), per-job time limit
    uploads        request bodies streamed to a temp file with a running size limit (413); a client
                   leaving mid-upload is status 499
    logs           redaction of secret-looking query parameters in every log record
    errors         ServiceError (status, code, sentence) and the mapping of vmatch's errors
    embedders      model names to specs; one embedder per model in the process
    banks          the banks of the bank root: one open bank and one lock each, summaries, readiness
    limits         checks before any heavy work: frame size, duration, frames; paths in the media root
    engine         the heavy work of the jobs (embed, hash, match, lookup, add, import), through
                   vmatch.match as the CLI does
    private        the private (PSI) mode's work: publish and serve a bank's table, accept voucher
                   bundles (the same answer for each), process them as jobs, read the results
    state          ServiceState: everything one app owns (config, keys, metrics, banks, jobs)
    schemas        request / response models (pydantic) with field descriptions
    auth           the bearer-key checks of the routes, by scope
    middleware     request counts and latency per route; the JSON body limit
    routing        what the routes share: OpenAPI declarations, uploads, running a job
    routes_status  /status/live, /status, /metrics
    routes_bank    banks, references, hash-list imports
    routes_match   /hash, match, lookup, /jobs/{id}
    routes_private /banks/{bank}/private/table, .../vouchers, .../results
    app            create_app(config): the app, its lifespan, error bodies, the routes

Only ``app``, ``auth``, ``middleware``, ``routing``, the ``routes_*``, ``schemas`` and ``uploads``
import the web stack (FastAPI, pydantic, Starlette); ``keys`` and ``config`` are used by the CLI.
The service process never installs PyAV's log callback (``av.logging.set_level``): with it,
FFmpeg's decoder threads deadlock against the GIL.
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
