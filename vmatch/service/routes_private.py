"""Private-mode routes (PSI, :mod:`vmatch.private`): a bank's blinded table (publish, fetch),
voucher bundles from devices, and the results the server could read.

The answer to a bundle is the same for every accepted one and comes before it is processed, so
the device learns nothing of the bank from it (``vmatch.service.private``).
"""

from __future__ import annotations

from typing import Literal, Optional

import anyio
from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response

from vmatch.service import private, schemas
from vmatch.service.errors import ServiceError
from vmatch.service.keys import ApiKey
from vmatch.service.routing import ACCEPTED, ERRORS, BankName, ModeQ, RouteContext

#: What a bundle may be sent as: the raw ``.vmpv`` bytes, or a form with it in the part ``file``.
BUNDLE_TYPES = ("application/octet-stream", "multipart/form-data")
BUNDLE_BODY = {
    "requestBody": {
        "required": True,
        "description": "The voucher bundle (`.vmpv`, from `vmatch private voucher` or `vmatch.private.make_vouchers`): "
                       "the raw bytes (`application/octet-stream`) or a multipart form with it in the part `file`.",
        "content": {
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {"schema": {"type": "object", "required": ["file"],
                                               "properties": {"file": {"type": "string", "format": "binary"}}}},
        },
    }
}
TABLE_HEADER = "X-Vmatch-Table-Commitment"
TABLE_FILE = {
    200: {
        "description": "The table file (`.vmpt`); check its SHA-256 against the commitment you were given.",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        "headers": {TABLE_HEADER: {"description": "SHA-256 (hex) of the body: the table's commitment.",
                                   "schema": {"type": "string"}},
                    "X-Vmatch-Table-Version": {"description": "The table's version.", "schema": {"type": "integer"}}},
    }
}
CONFLICT = {409: {"model": schemas.ErrorBody, "description": "A replayed bundle (its id was received before)."}}
UNAVAILABLE = {501: {"model": schemas.ErrorBody, "description": "The private mode's libraries are not installed."}}


def add_private_routes(app: FastAPI, ctx: RouteContext) -> None:
    state = ctx.state
    match_key, curate_key = ctx.keys.match_key, ctx.keys.curate_key

    @app.get("/banks/{bank}/private/table", response_class=Response, tags=["private"],
             summary="The bank's latest private table (what devices make vouchers against)",
             responses={**TABLE_FILE, **ERRORS, **UNAVAILABLE})
    async def get_private_table(bank: str = BankName, key: ApiKey = Depends(match_key)):
        private.check_available()
        h = await anyio.to_thread.run_sync(state.banks.get, bank)
        data, commitment, version = await anyio.to_thread.run_sync(private.latest_table, h)
        return Response(data, media_type="application/octet-stream", headers={
            TABLE_HEADER: commitment, "X-Vmatch-Table-Version": str(version), "ETag": f'"{commitment}"',
            "Content-Disposition": f'attachment; filename="table-{version:06d}.vmpt"'})

    @app.post("/banks/{bank}/private/table", response_model=schemas.PrivateTable, status_code=201, tags=["private"],
              summary="Publish the bank's next private table (from every reference frame it holds now)",
              responses={**ACCEPTED, **ERRORS, **UNAVAILABLE})
    async def publish_private_table(
        bank: str = BankName,
        threshold: Optional[int] = Query(None, ge=1, le=1000,
                                         description="Matching frames that open a video (default 3)."),
        mode: schemas.Mode = ModeQ,
        key: ApiKey = Depends(curate_key),
    ):
        private.check_available()
        h = await anyio.to_thread.run_sync(state.banks.get, bank)
        work = lambda deadline: private.publish_table(h, threshold=threshold, deadline=deadline)  # noqa: E731
        # Blinding is a scalar multiplication per slot: a job, under the queue's bounds and time limit.
        return await ctx.run_job("private_publish", work, key=key, bank=bank, mode=mode, duration=0.0, ok_status=201)

    @app.post("/banks/{bank}/private/vouchers", response_model=schemas.PrivateAccepted, status_code=202,
              tags=["private"], openapi_extra=BUNDLE_BODY, responses={**CONFLICT, **ERRORS, **UNAVAILABLE},
              summary="Submit a device's voucher bundle; the answer never says whether it matched")
    async def submit_vouchers(request: Request, bank: str = BankName, key: ApiKey = Depends(match_key)):
        private.check_available()
        h = await anyio.to_thread.run_sync(state.banks.get, bank)
        up, data = await ctx.upload_text(request, allowed=BUNDLE_TYPES)
        name = up.filename or "bundle"
        bundle, table, alpha = await anyio.to_thread.run_sync(private.accept_bundle, h, data, name)
        work = lambda deadline: private.match_bundle(  # noqa: E731
            h, state.embedders, bundle, table, alpha, name, deadline=deadline)
        try:
            ctx.submit("private_match", work, owner=private.JOB_OWNER, bank=bank)
        except ServiceError:
            await anyio.to_thread.run_sync(private.release_bundle, h, bundle)
            raise
        return JSONResponse({"accepted": bundle.bundle_id.hex()}, status_code=202)

    @app.get("/banks/{bank}/private/results", response_model=schemas.PrivateResults, tags=["private"],
             summary="The bundles processed and what the server could read of them", responses={**ERRORS, **UNAVAILABLE})
    async def private_results(
        bank: str = BankName,
        status: Optional[Literal["opened", "below_threshold"]] = Query(None, description="Only bundles of this status."),
        key: ApiKey = Depends(curate_key),
    ):
        private.check_available()
        h = await anyio.to_thread.run_sync(state.banks.get, bank)
        results = await anyio.to_thread.run_sync(private.private_results, h, status)
        # the reports whole (every field of `vmatch match --json`), as the match routes answer them
        return JSONResponse({"bank": bank, "results": results})
