"""Status routes: liveness (``/status/live``, no key), readiness (``/status``) and ``/metrics``.
"""

from __future__ import annotations

import anyio
from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse

from vmatch import __version__
from vmatch.service import schemas
from vmatch.service.keys import ApiKey
from vmatch.service.routing import RouteContext


def add_status_routes(app: FastAPI, ctx: RouteContext) -> None:
    state = ctx.state
    any_key, admin_key = ctx.keys.any_key, ctx.keys.admin_key

    @app.get("/status/live", response_model=schemas.Live, tags=["status"], summary="Liveness: the process is up")
    async def live():
        return {"status": "up"}

    @app.get("/status", response_model=schemas.Status, tags=["status"],
             responses={503: {"model": schemas.Status, "description": "Not ready (model loading, a bank unreadable)."}},
             summary="Readiness: banks loaded, index fresh, model ready")
    async def status(key: ApiKey = Depends(any_key)):
        banks = await anyio.to_thread.run_sync(state.banks.status)
        ready = state.model_ready and not state.banks.errors
        body = {"status": "ready" if ready else "not_ready", "model_ready": state.model_ready,
                "models_loaded": state.embedders.loaded(), "banks": banks, "bank_errors": dict(state.banks.errors),
                "queue": {"queued": state.jobs.queued, "running": state.jobs.running,
                          "capacity": state.jobs.capacity, "workers": state.jobs.workers},
                "version": __version__}
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics", response_class=PlainTextResponse, tags=["status"],
             summary="Prometheus metrics (text format 0.0.4); needs an admin key")
    async def metrics(key: ApiKey = Depends(admin_key)):
        return PlainTextResponse(state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
