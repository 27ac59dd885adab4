"""Bank routes: banks (create, list, info, delete), their references (upload, server-side path,
list, get, remove) and hash-list imports. Heavy work runs as a job (``engine``).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Optional

import anyio
from fastapi import Depends, FastAPI, Path as PathParam, Query, Request

from vmatch.errors import UsageError, VmatchError
from vmatch.service import engine, schemas
from vmatch.service.embedders import resolve_model
from vmatch.service.errors import ServiceError, from_vmatch
from vmatch.service.keys import ApiKey
from vmatch.service.limits import check_video, resolve_media_path
from vmatch.service.routing import ACCEPTED, ERRORS, MEDIA_BODY, TEXT_BODY, BankName, ModeQ, RouteContext
from vmatch.signals.registry import VPDQSignal


def _ref_id(given: Optional[str], filename: Optional[str]) -> str:
    from vmatch.bank import validate_ref_id

    rid = given if given is not None else (Path(filename).stem if filename else None)
    if not rid:
        raise ServiceError(400, "missing_id", "give the reference id (?id=...) or upload a file with a file name")
    try:
        return validate_ref_id(rid)
    except UsageError as e:
        raise ServiceError(400, "invalid_id", str(e)) from None


def add_bank_routes(app: FastAPI, ctx: RouteContext) -> None:
    state, config = ctx.state, ctx.state.config
    any_key, curate_key, admin_key = ctx.keys.any_key, ctx.keys.curate_key, ctx.keys.admin_key

    # -------------------------------------------------------------------------- banks
    @app.get("/banks", response_model=schemas.BankList, tags=["banks"], summary="List banks")
    async def list_banks(key: ApiKey = Depends(any_key)):
        def run():
            out = []
            for n in state.banks.names():
                with contextlib.suppress(ServiceError):
                    out.append(state.banks.get(n).summary())
            return out

        return {"banks": await anyio.to_thread.run_sync(run)}

    @app.post("/banks", response_model=schemas.BankInfo, status_code=201, tags=["banks"], summary="Create a bank",
              responses={409: {"model": schemas.ErrorBody}, **ERRORS})
    async def create_bank(body: schemas.BankCreate, key: ApiKey = Depends(curate_key)):
        def run():
            model = body.model or config.default_model
            # The test model only where the operator chose it (default model, or allow_test_models).
            allowed = config.allow_test_models or model == config.default_model
            try:
                spec = resolve_model(model, allow_test=allowed)
            except UsageError as e:
                raise ServiceError(400, "unknown_model", str(e)) from None
            return state.banks.create(body.name, spec).summary()

        return await anyio.to_thread.run_sync(run)

    @app.get("/banks/{bank}", response_model=schemas.BankInfo, tags=["banks"], summary="A bank's summary",
             responses=ERRORS)
    async def get_bank(bank: str = BankName, key: ApiKey = Depends(any_key)):
        return await anyio.to_thread.run_sync(lambda: state.banks.get(bank).summary())

    @app.delete("/banks/{bank}", response_model=schemas.Deleted, tags=["banks"],
                summary="Delete a bank and everything in it; needs an admin key", responses=ERRORS)
    async def delete_bank(bank: str = BankName, key: ApiKey = Depends(admin_key)):
        await anyio.to_thread.run_sync(state.banks.delete, bank)
        return {"deleted": bank}

    # -------------------------------------------------------------------------- references
    @app.get("/banks/{bank}/references", response_model=schemas.ReferenceList, tags=["references"],
             summary="List a bank's references", responses=ERRORS)
    async def list_references(bank: str = BankName, key: ApiKey = Depends(curate_key)):
        def run():
            with state.banks.held(bank) as b:
                return [r.to_dict() for r in b.list()]

        return {"bank": bank, "references": await anyio.to_thread.run_sync(run)}

    def no_reference(ref_id: str, bank: str) -> ServiceError:
        return ServiceError(404, "reference_not_found", f"no reference {ref_id!r:.100} in bank {bank!r}")

    @app.get("/banks/{bank}/references/{ref_id}", response_model=schemas.Reference, tags=["references"],
             summary="One reference", responses=ERRORS)
    async def get_reference(bank: str = BankName, ref_id: str = PathParam(description="Reference id."),
                            key: ApiKey = Depends(curate_key)):
        def run():
            with state.banks.held(bank) as b:
                r = b.get(ref_id)
            if r is None:
                raise no_reference(ref_id, bank)
            return r.to_dict()

        return await anyio.to_thread.run_sync(run)

    @app.delete("/banks/{bank}/references/{ref_id}", response_model=schemas.Deleted, tags=["references"],
                summary="Remove a reference (its frames and hashes)", responses=ERRORS)
    async def remove_reference(bank: str = BankName, ref_id: str = PathParam(description="Reference id."),
                               key: ApiKey = Depends(curate_key)):
        def run():
            with state.banks.held(bank) as b:
                try:
                    removed = b.remove([ref_id])
                    if removed:
                        b.save_index()
                except VmatchError as e:
                    raise from_vmatch(e) from e
            if not removed:
                raise no_reference(ref_id, bank)

        await anyio.to_thread.run_sync(run)
        return {"deleted": ref_id}

    @app.post("/banks/{bank}/references", response_model=schemas.ReferenceAdded, status_code=201,
              tags=["references"], summary="Add a reference video by upload (replaces one of the same id)",
              openapi_extra=MEDIA_BODY, responses={**ACCEPTED, **ERRORS})
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

        def work_for(up):
            rid = _ref_id(id if id is not None else up.fields.get("id"), up.filename)
            return lambda deadline: engine.add_reference(
                h, state.embedders, up.path, up.display_name, rid, fps=config.fps, vpdq=vpdq, deadline=deadline,
                metrics=state.metrics, delete=up.delete)

        return await ctx.upload_job(request, "add_reference", work_for, key=key, bank=bank, mode=mode, ok_status=201)

    @app.post("/banks/{bank}/references/from-path", response_model=schemas.ReferenceAdded, status_code=201,
              tags=["references"], summary="Add a reference video from a file on the server (inside --media-root)",
              responses={**ACCEPTED, **ERRORS})
    async def add_reference_path(body: schemas.FromPath, bank: str = BankName, mode: schemas.Mode = ModeQ,
                                 key: ApiKey = Depends(curate_key)):
        h = await anyio.to_thread.run_sync(state.banks.get, bank)
        p = resolve_media_path(config, body.path)
        rid = _ref_id(body.id, p.name)
        info = await anyio.to_thread.run_sync(check_video, p, body.path, config, limiter=state.probe_limiter)
        work = lambda deadline: engine.add_reference(  # noqa: E731
            h, state.embedders, p, body.path, rid, fps=config.fps, vpdq=body.vpdq, deadline=deadline,
            metrics=state.metrics, delete=None)
        return await ctx.run_job("add_reference", work, key=key, bank=bank, mode=mode, duration=info.duration,
                                 ok_status=201)

    @app.post("/banks/{bank}/hashes", response_model=schemas.ImportResult, tags=["references"],
              summary="Import a hash list (`<signal_type> <value> <id>` lines) or one vPDQ file (`signal_type=vpdq&id=`)",
              openapi_extra=TEXT_BODY, responses=ERRORS)
    async def import_hashes(
        request: Request,
        bank: str = BankName,
        signal_type: Optional[schemas.StoredSignalType] = Query(
            None, description="Type of lines without one (`<value> <id>`); vpdq: the body is one vPDQ hash file."),
        id: Optional[str] = Query(None, description="With signal_type=vpdq: the reference id (default: the file name).",
                                  max_length=255),
        key: ApiKey = Depends(curate_key),
    ):
        h = await anyio.to_thread.run_sync(state.banks.get, bank)
        up, data = await ctx.upload_text(request)
        name = up.filename or "body"
        if signal_type == VPDQSignal.name:
            try:
                text = data.decode("utf-8-sig")
            except UnicodeDecodeError:
                raise ServiceError(400, "invalid_hash_file", f"{up.display_name}: not UTF-8 text") from None

            rid = _ref_id(id if id is not None else (VPDQSignal.ref_id_from_name(up.filename) if up.filename else None),
                          None)
            return await anyio.to_thread.run_sync(engine.import_vpdq, h, text, name, rid)
        if id is not None:
            raise ServiceError(400, "invalid_request", "id is only for signal_type=vpdq (hash lists carry their ids)")
        # the raw bytes: a byte order mark is dropped and a line that is not UTF-8 costs that line only
        return await anyio.to_thread.run_sync(engine.import_hash_list, h, data, name, signal_type)
