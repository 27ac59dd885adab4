"""What the routes share: the OpenAPI declarations of bodies and parameters, and
:class:`RouteContext` (the app's state and key checks, receiving uploads, running jobs).

Where it sits: ``app.create_app`` builds one context; ``routes_status``, ``routes_bank`` and
``routes_match`` add their routes with it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import anyio
from fastapi import Path as PathParam, Query, Request
from fastapi.responses import JSONResponse

from vmatch.service import schemas
from vmatch.service.auth import KeyChecks
from vmatch.service.banks import BANK_NAME_RE
from vmatch.service.errors import ServiceError
from vmatch.service.jobs import QueueFull
from vmatch.service.keys import ApiKey
from vmatch.service.limits import check_video
from vmatch.service.state import ServiceState
from vmatch.service.uploads import MEDIA_TYPES, TEXT_TYPES, Upload, receive_upload

ERRORS = {s: {"model": schemas.ErrorBody} for s in (400, 401, 403, 404, 413, 415, 422, 503)}
MEDIA_BODY = {
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
TEXT_BODY = {
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
#: A 202 answer: the request's work was queued as a job.
ACCEPTED = {202: {"model": schemas.JobAccepted, "description": "Queued: poll the job."}}

BankName = PathParam(description="Bank name.", pattern=BANK_NAME_RE.pattern)
ModeQ = Query("auto", description="auto: answer in the request for videos up to --sync-max-duration seconds, "
              "else 202 + job id; sync: always wait; async: always 202 + job id.")


def ScoreQ(description: str):  # noqa: N802 - a FastAPI parameter declaration
    """A score parameter: a finite number in [-1, 1] (NaN and 1e400, i.e. infinity, are 422)."""
    return Query(None, ge=-1.0, le=1.0, allow_inf_nan=False, description=description)


@dataclass(frozen=True)
class RouteContext:
    """One app's state and key checks, and the steps every heavy route takes."""

    state: ServiceState
    keys: KeyChecks

    async def upload_video(self, request: Request) -> Upload:
        config = self.state.config
        up = await receive_upload(request, limit=config.max_upload_bytes, upload_dir=config.upload_dir,
                                  allowed=MEDIA_TYPES)
        self.state.metrics.upload_bytes.inc(by=up.size)
        return up

    async def upload_text(self, request: Request, limit: int | None = None,
                          allowed: tuple[str, ...] = TEXT_TYPES) -> tuple[Upload, bytes]:
        """A small upload read whole (hash list, vPDQ file, .vmsig, voucher bundle), read and
        deleted at once; the :class:`Upload` is returned for its names only."""
        config = self.state.config
        up = await receive_upload(request, limit=limit or config.max_upload_bytes, upload_dir=config.upload_dir,
                                  allowed=allowed)
        try:
            return up, up.path.read_bytes()
        finally:
            up.delete()

    async def checked(self, up: Upload):
        return await anyio.to_thread.run_sync(check_video, up.path, up.display_name, self.state.config,
                                              limiter=self.state.probe_limiter)

    async def upload_job(self, request: Request, kind: str, work_for, *, key: ApiKey, bank: str | None, mode: str,
                         ok_status: int = 200):
        """Receive a video upload, check it (:func:`check_video`) and run ``work_for(upload)`` (the
        job's work; it may refuse the request first) as a job (:meth:`run_job`). The upload is
        deleted on every path that does not hand it to the job; the job deletes it once hashed."""
        up = await self.upload_video(request)
        try:
            work = work_for(up)
            info = await self.checked(up)
            return await self.run_job(kind, work, key=key, bank=bank, mode=mode, duration=info.duration,
                                      ok_status=ok_status, on_refused=up.delete)
        except BaseException:
            up.delete()
            raise

    def submit(self, kind: str, work, *, owner: str, bank: str | None, on_refused=None):
        """Queue ``work`` as a job (:meth:`JobQueue.submit`); 503 ``queue_full`` with Retry-After when refused."""
        jobs = self.state.jobs
        try:
            return jobs.submit(kind, work, owner=owner, bank=bank, on_refused=on_refused)
        except QueueFull as e:
            raise ServiceError(503, "queue_full", f"the job queue is full ({jobs.capacity} jobs); retry in {e.retry_after} s",
                               headers={"Retry-After": str(e.retry_after)}) from None

    async def run_job(self, kind: str, work, *, key: ApiKey, bank: str | None, mode: str, duration: float,
                      ok_status: int = 200, on_refused=None):
        """Queue ``work`` as a job; answer its result (``ok_status``) when it finishes in time for
        ``mode``, else 202 with the job id; 503 ``queue_full`` with Retry-After when refused."""
        config = self.state.config
        job = self.submit(kind, work, owner=key.key_id, bank=bank, on_refused=on_refused)
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
