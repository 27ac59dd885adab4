"""The FastAPI application: ``create_app(config)`` builds it; ``vmatch serve`` runs it with uvicorn.

Endpoints (README, "HTTP service"): status (``/status/live``, ``/status``, ``/metrics``:
``routes_status``), banks (create, list, info, delete), references (upload, server-side path,
list, get, remove), hash lists (import: ``routes_bank``), ``/hash`` (signals of an upload),
``match`` (an upload against a bank), ``lookup`` (a hash value or a hash file, no media),
``/jobs/{id}`` (``routes_match``), the private mode (a bank's blinded table, voucher bundles,
their results: ``routes_private``).

Every endpoint but ``/status/live`` needs ``Authorization: Bearer <key>`` (401 without a valid
key, 403 without the scope: ``auth``). Errors are ``{"error": code, "detail": sentence}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from vmatch import __version__
from vmatch.service import schemas
from vmatch.service.auth import KeyChecks
from vmatch.service.config import ServiceConfig
from vmatch.service.errors import ServiceError
from vmatch.service.logs import redact_logs
from vmatch.service.middleware import Observe
from vmatch.service.routes_bank import add_bank_routes
from vmatch.service.routes_match import add_match_routes
from vmatch.service.routes_private import add_private_routes
from vmatch.service.routes_status import add_status_routes
from vmatch.service.routing import RouteContext
from vmatch.service.state import ServiceState

log = logging.getLogger("vmatch.service")


def create_app(config: ServiceConfig) -> FastAPI:
    """Build the service for ``config`` (every option and limit; see :class:`ServiceConfig`)."""
    state = ServiceState(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        # PyAV's log callback is never installed here (no av.logging.set_level, no Capture): with
        # it, an FFmpeg decoder thread waits for the GIL while the job thread holding the GIL
        # waits for that decoder thread, and the whole process hangs (issue 17).
        with redact_logs():  # uvicorn has configured its loggers by now
            state.clean_uploads()
            await anyio.to_thread.run_sync(state.banks.load_all)
            loader = None
            if config.preload_model:
                loader = asyncio.get_running_loop().run_in_executor(None, state.load_model)
            try:
                yield
            finally:
                if loader is not None:
                    with contextlib.suppress(Exception):
                        await loader
                await anyio.to_thread.run_sync(state.jobs.shutdown)
                await anyio.to_thread.run_sync(state.banks.close_all)
                state.clean_uploads()

    app = FastAPI(
        title="vmatch matching service",
        version=__version__,
        description="Near-duplicate video matching for platforms: banks of reference videos and hashes, "
        "matching of uploads and hashes, in the conventions of Meta's Hasher-Matcher-Actioner. "
        "Every endpoint but `/status/live` needs `Authorization: Bearer <key>` (`vmatch key create`).",
        lifespan=lifespan,
        responses={401: {"model": schemas.ErrorBody}, 403: {"model": schemas.ErrorBody}},
    )
    app.state.vmatch = state
    app.add_middleware(Observe, state=state)
    keys = KeyChecks.build(state.keys)
    _add_error_handlers(app, keys)
    ctx = RouteContext(state, keys)
    add_status_routes(app, ctx)
    add_bank_routes(app, ctx)
    add_match_routes(app, ctx)
    add_private_routes(app, ctx)
    return app


def _add_error_handlers(app: FastAPI, keys: KeyChecks) -> None:
    """Every error answered as ``{"error": code, "detail": sentence}``."""

    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, e: ServiceError):
        return JSONResponse(e.to_dict(), status_code=e.status, headers=e.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, e: RequestValidationError):
        # FastAPI decodes a JSON body before it runs the route's dependencies, so a malformed body
        # would be answered 422 to a caller without a key: authenticate first (401/403 win).
        try:
            await keys.authenticate(request)
        except ServiceError as auth_error:
            return JSONResponse(auth_error.to_dict(), status_code=auth_error.status, headers=auth_error.headers)
        parts = []
        for err in e.errors()[:5]:
            loc = ".".join(str(x) for x in err.get("loc", ()) if x != "body") or "body"
            parts.append(f"{loc}: {err.get('msg', 'invalid')}")
        return JSONResponse({"error": "invalid_request", "detail": "; ".join(parts)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, e: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(e.status_code, "http_error")
        return JSONResponse({"error": code, "detail": str(e.detail)}, status_code=e.status_code,
                            headers=getattr(e, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, e: Exception):
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse({"error": "internal_error", "detail": f"unexpected {type(e).__name__}; see the server log"},
                            status_code=500)
