"""The FastAPI application: ``create_app(config)`` builds it; ``vmatch serve`` runs it with uvicorn.

Endpoints (README, "HTTP service"): status (``/status/live``, ``/status``, ``/metrics``), banks
(create, list, info, delete), references (upload, server-side path, list, get, remove), hash lists
(import), ``/hash`` (signals of an upload), ``match`` (an upload against a bank), ``lookup`` (a
hash value or a hash file, no media), ``/jobs/{id}``.

Every endpoint but ``/status/live`` needs ``Authorization: Bearer <key>`` (401 without a valid
key, 403 without the scope). Errors are ``{"error": code, "detail": sentence}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Literal, Optional

import anyio
from fastapi import Depends, FastAPI, Path as PathParam, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from vmatch import __version__
from vmatch.service import engine, schemas
from vmatch.service.config import ServiceConfig
from vmatch.service.errors import ServiceError
from vmatch.service.jobs import JobQueue, QueueFull
from vmatch.service.keys import ApiKey, KeyStore
from vmatch.service.logs import redact_logs
from vmatch.service.metrics import Metrics
from vmatch.service.uploads import MEDIA_TYPES, TEXT_TYPES, Upload, receive_upload

log = logging.getLogger("vmatch.service")

_ERRORS = {s: {"model": schemas.ErrorBody} for s in (400, 401, 403, 404, 413, 415, 422, 503)}
_MEDIA_BODY = {
    "requestBody": {
        "required": True,
        "description": "The video: a multipart form with the file in the part `file`, or the raw bytes "
                       "(`application/octet-stream` or `video/*`).",
        "content": {
            "multipart/form-data": {"schema": {"type": "object", "required": ["file"],
                                               "properties": {"file": {"type": "string", "format": "binary"}}}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}
_TEXT_BODY = {
    "requestBody": {
        "required": True,
        "description": "The hash file: raw text (`text/plain`), raw bytes, or a multipart form with the file in `file`.",
        "content": {
            "text/plain": {"schema": {"type": "string"}},
            "multipart/form-data": {"schema": {"type": "object", "required": ["file"],
                                               "properties": {"file": {"type": "string", "format": "binary"}}}},
        },
    }
}


class _State:
    """Everything one app instance owns (no module-level mutable state)."""

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self.metrics = Metrics()
        self.keys = KeyStore(config.bank_root)
        self.embedders = engine.Embedders(config.device, config.cnn_threads)
        self.banks = engine.Banks(config.bank_root, config.device)
        self.jobs = JobQueue(workers=config.workers, queue_size=config.queue_size, timeout=config.job_timeout,
                             ttl=config.job_ttl, max_kept=config.max_jobs_kept, metrics=self.metrics)
        self.probe_limiter = anyio.CapacityLimiter(max(2, config.workers))
        self.model_ready = False
        self.model_error: str | None = None
        self.metrics.gauge("vmatch_job_queue_depth", "Jobs waiting for a worker.", lambda: self.jobs.queued)
        self.metrics.gauge("vmatch_jobs_running", "Jobs running.", lambda: self.jobs.running)
        self.metrics.gauge("vmatch_job_queue_capacity", "Most jobs queued + running.", lambda: self.jobs.capacity)
        self.metrics.gauge("vmatch_banks_loaded", "Banks open.", lambda: len(self.banks.names()))

    def clean_uploads(self) -> None:
        d = self.config.upload_dir
        d.mkdir(parents=True, exist_ok=True)
        for f in d.iterdir():
            with contextlib.suppress(OSError):
                f.unlink()

    def load_model(self) -> None:
        try:
            self.embedders.get(self.config.default_model)
            self.model_ready = True
        except Exception as e:  # reported by /status
            self.model_error = str(e)
            log.error("the default model cannot be loaded: %s", e)


# ------------------------------------------------------------------------------------------ middleware
class _Observe:
    """Counts requests and their latency per route template; enforces the body limits (413) of
    requests that do not stream their own upload (JSON bodies)."""

    def __init__(self, app, state: _State) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        status = {"code": 500, "started": False}
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        limit = self.state.config.max_json_bytes if ctype in ("application/json", "application/x-www-form-urlencoded") else None

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                status["started"] = True
            await send(message)

        received = 0

        async def receive_wrapper():
            nonlocal received
            message = await receive()
            if limit is not None and message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise ServiceError(413, "body_too_large", f"the JSON body is over {limit} bytes")
            return message

        try:
            if limit is not None and headers.get("content-length", "").isdigit() and int(headers["content-length"]) > limit:
                raise ServiceError(413, "body_too_large", f"the JSON body is {headers['content-length']} bytes; the limit is {limit}")
            await self.app(scope, receive_wrapper, send_wrapper)
        except ServiceError as e:
            if status["started"]:
                raise
            await JSONResponse(e.to_dict(), status_code=e.status, headers=e.headers)(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            self.state.metrics.requests.inc(method, path, str(status["code"]))
            self.state.metrics.latency.observe(time.perf_counter() - t0, method, path)


# ------------------------------------------------------------------------------------------ the app
def create_app(config: ServiceConfig) -> FastAPI:
    """Build the service for ``config`` (every option and limit; see :class:`ServiceConfig`)."""
    state = _State(config)

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
    app.add_middleware(_Observe, state=state)
    bearer = HTTPBearer(auto_error=False, description="An API key made with `vmatch key create`.")

    # -------------------------------------------------------------------------- errors
    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, e: ServiceError):
        return JSONResponse(e.to_dict(), status_code=e.status, headers=e.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, e: RequestValidationError):
        # FastAPI decodes a JSON body before it runs the route's dependencies, so a malformed body
        # would be answered 422 to a caller without a key: authenticate first (401/403 win).
        try:
            await authenticate_route(request)
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

    # -------------------------------------------------------------------------- auth
    def require(scope: str | None):
        async def check(cred: Optional[HTTPAuthorizationCredentials] = Depends(bearer)) -> ApiKey:
            if cred is None:
                raise ServiceError(401, "missing_api_key", "send `Authorization: Bearer <key>` (create one with `vmatch key create`)",
                                   headers={"WWW-Authenticate": "Bearer"})
            key = await anyio.to_thread.run_sync(state.keys.verify, cred.credentials)
            if key is None:
                raise ServiceError(401, "invalid_api_key", "the API key is unknown or revoked",
                                   headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
            if scope is not None and not key.allows(scope):
                raise ServiceError(403, "insufficient_scope",
                                   f"this endpoint needs a key with scope {scope!r}; the key has {', '.join(key.scopes)}")
            return key

        return check

    any_key, match_key, curate_key, admin_key = require(None), require("match"), require("curate"), require("admin")
    key_checks = (any_key, match_key, curate_key, admin_key)

    async def authenticate_route(request: Request) -> None:
        """Run the key check the matched route declares (ServiceError 401/403), if it has one."""
        dependant = getattr(request.scope.get("route"), "dependant", None)
        for dep in getattr(dependant, "dependencies", ()):
            if dep.call in key_checks:
                await dep.call(await bearer(request))

    # -------------------------------------------------------------------------- helpers
    async def upload_video(request: Request) -> Upload:
        up = await receive_upload(request, limit=config.max_upload_bytes, upload_dir=config.upload_dir,
                                  allowed=MEDIA_TYPES)
        state.metrics.upload_bytes.inc(by=up.size)
        return up

    async def upload_text(request: Request, limit: int | None = None) -> tuple[Upload, bytes]:
        """A small text upload (hash list, vPDQ file, .vmsig), read and deleted at once; the
        :class:`Upload` is returned for its names only."""
        up = await receive_upload(request, limit=limit or config.max_upload_bytes, upload_dir=config.upload_dir,
                                  allowed=TEXT_TYPES)
        try:
            return up, up.path.read_bytes()
        finally:
            up.delete()

    async def checked(up: Upload):
        return await anyio.to_thread.run_sync(engine.check_video, up.path, up.display_name, config,
                                              limiter=state.probe_limiter)

    async def run_job(kind: str, work, *, key: ApiKey, bank: str | None, mode: str, duration: float,
                      ok_status: int = 200, on_refused=None):
        try:
            job = state.jobs.submit(kind, work, owner=key.key_id, bank=bank, on_refused=on_refused)
        except QueueFull as e:
            raise ServiceError(503, "queue_full", f"the job queue is full ({state.jobs.capacity} jobs); retry in {e.retry_after} s",
                               headers={"Retry-After": str(e.retry_after)}) from None
        accepted = JSONResponse({"job_id": job.id, "status": job.status, "location": f"/jobs/{job.id}"},
                                status_code=202, headers={"Location": f"/jobs/{job.id}"})
        if mode == "async" or (mode == "auto" and duration > config.sync_max_duration):
            return accepted
        fut = asyncio.wrap_future(job.future)
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout=None if mode == "sync" else config.sync_wait)
        except asyncio.TimeoutError:
            return accepted
        if job.error is not None:
            raise job.error
        return JSONResponse(job.result, status_code=ok_status)

    # -------------------------------------------------------------------------- status
    @app.get("/status/live", response_model=schemas.Live, tags=["status"], summary="Liveness: the process is up")
    async def live():
        return {"status": "up"}

    @app.get("/status", response_model=schemas.Status, tags=["status"],
             responses={503: {"model": schemas.Status, "description": "Not ready (model loading, a bank unreadable)."}},
             summary="Readiness: banks loaded, index fresh, model ready")
    async def status(key: ApiKey = Depends(any_key)):
        def collect():
            out = []
            for name in state.banks.names():
                try:
                    h = state.banks.get(name)
                except ServiceError:
                    continue
                with h.lock:
                    if h.deleted:
                        continue
                    b = h.bank
                    gen = b.generation
                    snap = b._snapshot
                    files = b._index_files()
                    nrefs = len(b.list())
                    out.append({"name": name, "model_id": b.model_id, "references": nrefs, "generation": gen,
                                "snapshot_generation": snap.generation if snap is not None else None,
                                "index_file_generation": files[-1][0] if files else None,
                                "fresh": snap is not None and snap.generation == gen})
            return out

        banks = await anyio.to_thread.run_sync(collect)
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

    # -------------------------------------------------------------------------- banks
    def bank_info(h: engine.BankHandle) -> dict:
        with h.lock:
            h.check_alive()
            i = h.bank.info()
        return {"name": h.name, "model_id": i["model_id"], "references": i["references"],
                "hash_only_references": i["hash_only_references"], "frames": i["frames"], "seconds": i["seconds"],
                "generation": i["generation"], "hashes": i["hashes"], "created_at": i["created_at"]}

    BankName = PathParam(description="Bank name.", pattern=engine.BANK_NAME_RE.pattern)

    @app.get("/banks", response_model=schemas.BankList, tags=["banks"], summary="List banks")
    async def list_banks(key: ApiKey = Depends(any_key)):
        def run():
            out = []
            for n in state.banks.names():
                with contextlib.suppress(ServiceError):
                    out.append(bank_info(state.banks.get(n)))
            return out

        return {"banks": await anyio.to_thread.run_sync(run)}

    @app.post("/banks", response_model=schemas.BankInfo, status_code=201, tags=["banks"], summary="Create a bank",
              responses={409: {"model": schemas.ErrorBody}, **_ERRORS})
    async def create_bank(body: schemas.BankCreate, key: ApiKey = Depends(curate_key)):
        def run():
            from vmatch.errors import UsageError

            model = body.model or config.default_model
            # The test model only where the operator chose it (default model, or allow_test_models).
            allowed = config.allow_test_models or model == config.default_model
            try:
                spec = engine.resolve_model(model, allow_test=allowed)
            except UsageError as e:
                raise ServiceError(400, "unknown_model", str(e)) from None
            return bank_info(state.banks.create(body.name, spec))

        return await anyio.to_thread.run_sync(run)

    @app.get("/banks/{bank}", response_model=schemas.BankInfo, tags=["banks"], summary="A bank's summary",
             responses=_ERRORS)
    async def get_bank(bank: str = BankName, key: ApiKey = Depends(any_key)):
        return await anyio.to_thread.run_sync(lambda: bank_info(state.banks.get(bank)))

    @app.delete("/banks/{bank}", response_model=schemas.Deleted, tags=["banks"],
                summary="Delete a bank and everything in it; needs an admin key", responses=_ERRORS)
    async def delete_bank(bank: str = BankName, key: ApiKey = Depends(admin_key)):
        await anyio.to_thread.run_sync(state.banks.delete, bank)
        return {"deleted": bank}

    # -------------------------------------------------------------------------- references
    @app.get("/banks/{bank}/references", response_model=schemas.ReferenceList, tags=["references"],
             summary="List a bank's references", responses=_ERRORS)
    async def list_references(bank: str = BankName, key: ApiKey = Depends(curate_key)):
        def run():
            h = state.banks.get(bank)
            with h.lock:
                h.check_alive()
                return [r.to_dict() for r in h.bank.list()]

        return {"bank": bank, "references": await anyio.to_thread.run_sync(run)}

    @app.get("/banks/{bank}/references/{ref_id}", response_model=schemas.Reference, tags=["references"],
             summary="One reference", responses=_ERRORS)
    async def get_reference(bank: str = BankName, ref_id: str = PathParam(description="Reference id."),
                            key: ApiKey = Depends(curate_key)):
        def run():
            h = state.banks.get(bank)
            with h.lock:
                h.check_alive()
                r = h.bank.get(ref_id)
            if r is None:
                raise ServiceError(404, "reference_not_found", f"no reference {ref_id!r:.100} in bank {bank!r}")
            return r.to_dict()

        return await anyio.to_thread.run_sync(run)

    @app.delete("/banks/{bank}/references/{ref_id}", response_model=schemas.Deleted, tags=["references"],
                summary="Remove a reference (its frames and hashes)", responses=_ERRORS)
    async def remove_reference(bank: str = BankName, ref_id: str = PathParam(description="Reference id."),
                               key: ApiKey = Depends(curate_key)):
        def run():
            h = state.banks.get(bank)
            with h.lock:
                h.check_alive()
                try:
                    removed = h.bank.remove([ref_id])
                    if removed:
                        h.bank.save_index()
                except Exception as e:
                    from vmatch.errors import VmatchError
                    from vmatch.service.errors import from_vmatch

                    if isinstance(e, VmatchError):
                        raise from_vmatch(e) from e
                    raise
            if not removed:
                raise ServiceError(404, "reference_not_found", f"no reference {ref_id!r:.100} in bank {bank!r}")

        await anyio.to_thread.run_sync(run)
        return {"deleted": ref_id}

    def _ref_id(given: Optional[str], filename: Optional[str]) -> str:
        from vmatch.bank import validate_ref_id
        from vmatch.errors import UsageError

        rid = given if given is not None else (Path(filename).stem if filename else None)
        if not rid:
            raise ServiceError(400, "missing_id", "give the reference id (?id=...) or upload a file with a file name")
        try:
            return validate_ref_id(rid)
        except UsageError as e:
            raise ServiceError(400, "invalid_id", str(e)) from None

    def ScoreQ(description: str):  # noqa: N802 - a FastAPI parameter declaration
        """A score parameter: a finite number in [-1, 1] (NaN and 1e400, i.e. infinity, are 422)."""
        return Query(None, ge=-1.0, le=1.0, allow_inf_nan=False, description=description)

    ModeQ = Query("auto", description="auto: answer in the request for videos up to --sync-max-duration seconds, "
                  "else 202 + job id; sync: always wait; async: always 202 + job id.")

    @app.post("/banks/{bank}/references", response_model=schemas.ReferenceAdded, status_code=201,
              tags=["references"], summary="Add a reference video by upload (replaces one of the same id)",
              openapi_extra=_MEDIA_BODY,
              responses={202: {"model": schemas.JobAccepted, "description": "Queued: poll the job."}, **_ERRORS})
    async def add_reference_upload(
        request: Request,
        bank: str = BankName,
        id: Optional[str] = Query(None, description="Reference id (default: the uploaded file name without extension).",
                                  max_length=255),
        vpdq: bool = Query(False, description="Also store the video's vPDQ hash (a second decode)."),
        mode: schemas.Mode = ModeQ,
        key: ApiKey = Depends(curate_key),
    ):
        h = await anyio.to_thread.run_sync(state.banks.get, bank)
        up = await upload_video(request)
        try:
            rid = _ref_id(id if id is not None else up.fields.get("id"), up.filename)
            info = await checked(up)
            work = lambda deadline: engine.add_reference(  # noqa: E731
                h, state.embedders, up.path, up.display_name, rid, fps=config.fps, vpdq=vpdq, deadline=deadline,
                metrics=state.metrics, delete=up.delete)
            return await run_job("add_reference", work, key=key, bank=bank, mode=mode, duration=info.duration,
                                 ok_status=201, on_refused=up.delete)
        except BaseException:
            up.delete()
            raise

    @app.post("/banks/{bank}/references/from-path", response_model=schemas.ReferenceAdded, status_code=201,
              tags=["references"], summary="Add a reference video from a file on the server (inside --media-root)",
              responses={202: {"model": schemas.JobAccepted, "description": "Queued: poll the job."}, **_ERRORS})
    async def add_reference_path(body: schemas.FromPath, bank: str = BankName, mode: schemas.Mode = ModeQ,
                                 key: ApiKey = Depends(curate_key)):
        h = await anyio.to_thread.run_sync(state.banks.get, bank)
        p = engine.resolve_media_path(config, body.path)
        rid = _ref_id(body.id, p.name)
        info = await anyio.to_thread.run_sync(engine.check_video, p, body.path, config, limiter=state.probe_limiter)
        work = lambda deadline: engine.add_reference(  # noqa: E731
            h, state.embedders, p, body.path, rid, fps=config.fps, vpdq=body.vpdq, deadline=deadline,
            metrics=state.metrics, delete=None)
        return await run_job("add_reference", work, key=key, bank=bank, mode=mode, duration=info.duration, ok_status=201)

    @app.post("/banks/{bank}/hashes", response_model=schemas.ImportResult, tags=["references"],
              summary="Import a hash list (`<signal_type> <value> <id>` lines) or one vPDQ file (`signal_type=vpdq&id=`)",
              openapi_extra=_TEXT_BODY, responses=_ERRORS)
    async def import_hashes(
        request: Request,
        bank: str = BankName,
        signal_type: Optional[Literal["md5", "sha1", "pdq", "vpdq"]] = Query(
            None, description="Type of lines without one (`<value> <id>`); vpdq: the body is one vPDQ hash file."),
        id: Optional[str] = Query(None, description="With signal_type=vpdq: the reference id (default: the file name).",
                                  max_length=255),
        key: ApiKey = Depends(curate_key),
    ):
        h = await anyio.to_thread.run_sync(state.banks.get, bank)
        up, data = await upload_text(request)
        name = up.filename or "body"
        if signal_type == "vpdq":
            from vmatch.signals.hashlist import vpdq_id_from_name

            try:
                text = data.decode("utf-8-sig")
            except UnicodeDecodeError:
                raise ServiceError(400, "invalid_hash_file", f"{up.display_name}: not UTF-8 text") from None

            rid = _ref_id(id if id is not None else (vpdq_id_from_name(up.filename) if up.filename else None), None)
            return await anyio.to_thread.run_sync(engine.import_vpdq, h, text, name, rid)
        if id is not None:
            raise ServiceError(400, "invalid_request", "id is only for signal_type=vpdq (hash lists carry their ids)")
        # the raw bytes: a byte order mark is dropped and a line that is not UTF-8 costs that line only
        return await anyio.to_thread.run_sync(engine.import_hash_list, h, data, name, signal_type)

    # -------------------------------------------------------------------------- hashing, matching, lookup
    @app.post("/hash", response_model=schemas.HashResult, tags=["hashing"],
              summary="Signals of a video (MD5/SHA-1/SHA-256, vPDQ, CNN summary), without matching",
              openapi_extra=_MEDIA_BODY,
              responses={202: {"model": schemas.JobAccepted, "description": "Queued: poll the job."}, **_ERRORS})
    async def hash_video(
        request: Request,
        bank: Optional[str] = Query(None, description="Use this bank's model (default: the server's default model).",
                                    pattern=engine.BANK_NAME_RE.pattern),
        mode: schemas.Mode = ModeQ,
        key: ApiKey = Depends(match_key),
    ):
        spec = (await anyio.to_thread.run_sync(state.banks.get, bank)).bank.spec if bank else config.default_model
        up = await upload_video(request)
        try:
            info = await checked(up)
            work = lambda deadline: engine.hash_upload(  # noqa: E731
                state.embedders, spec, up.path, up.display_name, fps=config.fps, deadline=deadline,
                metrics=state.metrics, delete=up.delete)
            return await run_job("hash", work, key=key, bank=bank, mode=mode, duration=info.duration,
                                 on_refused=up.delete)
        except BaseException:
            up.delete()
            raise

    @app.post("/banks/{bank}/match", response_model=schemas.MatchReportOut, response_model_exclude_none=True,
              tags=["matching"], summary="Match an uploaded video against a bank (the report of `vmatch match --json`)",
              openapi_extra=_MEDIA_BODY,
              responses={202: {"model": schemas.JobAccepted, "description": "Queued: poll the job."}, **_ERRORS})
    async def match_video(
        request: Request,
        bank: str = BankName,
        mode: schemas.Mode = ModeQ,
        min_score: Optional[float] = ScoreQ("List matches scoring at least this (default: the threshold)."),
        threshold: Optional[float] = ScoreQ("Decision threshold (default: the model's calibration)."),
        key: ApiKey = Depends(match_key),
    ):
        h = await anyio.to_thread.run_sync(state.banks.get, bank)
        up = await upload_video(request)
        try:
            info = await checked(up)
            work = lambda deadline: engine.match_upload(  # noqa: E731
                h, state.embedders, up.path, up.display_name, fps=config.fps, threshold=threshold,
                min_score=min_score, deadline=deadline, metrics=state.metrics, delete=up.delete)
            return await run_job("match", work, key=key, bank=bank, mode=mode, duration=info.duration,
                                 on_refused=up.delete)
        except BaseException:
            up.delete()
            raise

    @app.get("/banks/{bank}/lookup", response_model=schemas.MatchReportOut, response_model_exclude_none=True,
             tags=["matching"], summary="Look a hash value up (md5, sha1 exact; pdq within 31 bits)", responses=_ERRORS)
    async def lookup(
        bank: str = BankName,
        signal_type: schemas.ListSignalType = Query(..., description="md5, sha1 or pdq."),
        value: str = Query(..., description="The hash, hex.", max_length=256),
        key: ApiKey = Depends(match_key),
    ):
        h = await anyio.to_thread.run_sync(state.banks.get, bank)
        return await anyio.to_thread.run_sync(engine.lookup_value, h, state.embedders, signal_type, value)

    @app.post("/banks/{bank}/lookup", response_model=schemas.MatchReportOut, response_model_exclude_none=True,
              tags=["matching"], summary="Match a hash file without media: a vPDQ file, or a CNN signal (.vmsig from `vmatch hash`)",
              openapi_extra=_TEXT_BODY,
              responses={202: {"model": schemas.JobAccepted, "description": "Queued: poll the job."}, **_ERRORS})
    async def lookup_file(
        request: Request,
        bank: str = BankName,
        signal_type: Literal["vpdq", "cnn"] = Query("vpdq", description="vpdq: a vPDQ hash file (vpdq or "
                                                            "python-threatexchange format); cnn: a .vmsig file."),
        min_score: Optional[float] = ScoreQ("cnn: list matches scoring at least this."),
        threshold: Optional[float] = ScoreQ("cnn: decision threshold."),
        mode: schemas.Mode = ModeQ,
        key: ApiKey = Depends(match_key),
    ):
        from vmatch.signals.cnn import MAX_EXPANDED_BYTES

        h = await anyio.to_thread.run_sync(state.banks.get, bank)
        # A hash file is read whole into memory: at most what a .vmsig may expand to.
        up, data = await upload_text(request, limit=min(config.max_upload_bytes, MAX_EXPANDED_BYTES))
        work = lambda deadline: engine.lookup_file(  # noqa: E731
            h, state.embedders, signal_type, data, up.filename or "body", threshold=threshold, min_score=min_score,
            deadline=deadline)
        # Parsing and matching run as a job, under the queue's bounds (--workers, --queue-size, --job-timeout).
        return await run_job("lookup", work, key=key, bank=bank, mode=mode, duration=0.0)

    # -------------------------------------------------------------------------- jobs
    @app.get("/jobs/{job_id}", response_model=schemas.JobOut, tags=["jobs"],
             summary="A job's state and, once done, its result (visible to the key that made it, or admin)",
             responses=_ERRORS)
    async def get_job(job_id: str = PathParam(description="Job id from a 202 answer.", max_length=64),
                      key: ApiKey = Depends(any_key)):
        job = state.jobs.get(job_id)
        if job is None or (job.owner != key.key_id and "admin" not in key.scopes):
            raise ServiceError(404, "job_not_found", f"no job {job_id!r:.80} (finished jobs are kept {config.job_ttl:g} s)")
        return job.to_dict()

    return app
