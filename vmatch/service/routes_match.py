"""Matching routes: ``/hash`` (signals of an upload), ``match`` (an upload against a bank),
``lookup`` (a hash value or a hash file, no media), and ``/jobs/{id}`` (the jobs they queue).
The work runs as a job (``engine``); the report is ``vmatch match --json``'s.
"""

from __future__ import annotations

from typing import Optional

import anyio
from fastapi import Depends, FastAPI, Path as PathParam, Query, Request

from vmatch.service import engine, schemas
from vmatch.service.banks import BANK_NAME_RE
from vmatch.service.errors import ServiceError
from vmatch.service.keys import ApiKey
from vmatch.service.routing import ACCEPTED, ERRORS, MEDIA_BODY, TEXT_BODY, BankName, ModeQ, RouteContext, ScoreQ
from vmatch.signals.registry import VPDQSignal


def add_match_routes(app: FastAPI, ctx: RouteContext) -> None:
    state, config = ctx.state, ctx.state.config
    any_key, match_key = ctx.keys.any_key, ctx.keys.match_key

    # -------------------------------------------------------------------------- hashing, matching, lookup
    @app.post("/hash", response_model=schemas.HashResult, tags=["hashing"],
              summary="Signals of a video (MD5/SHA-1/SHA-256, vPDQ, CNN summary), without matching",
              openapi_extra=MEDIA_BODY, responses={**ACCEPTED, **ERRORS})
    async def hash_video(
        request: Request,
        bank: Optional[str] = Query(None, description="Use this bank's model (default: the server's default model).",
                                    pattern=BANK_NAME_RE.pattern),
        mode: schemas.Mode = ModeQ,
        key: ApiKey = Depends(match_key),
    ):
        spec = (await anyio.to_thread.run_sync(state.banks.get, bank)).bank.spec if bank else config.default_model

        def work_for(up):
            return lambda deadline: engine.hash_upload(
                state.embedders, spec, up.path, up.display_name, fps=config.fps, deadline=deadline,
                metrics=state.metrics, delete=up.delete)

        return await ctx.upload_job(request, "hash", work_for, key=key, bank=bank, mode=mode)

    @app.post("/banks/{bank}/match", response_model=schemas.MatchReportOut, response_model_exclude_none=True,
              tags=["matching"], summary="Match an uploaded video against a bank (the report of `vmatch match --json`)",
              openapi_extra=MEDIA_BODY, responses={**ACCEPTED, **ERRORS})
    async def match_video(
        request: Request,
        bank: str = BankName,
        mode: schemas.Mode = ModeQ,
        min_score: Optional[float] = ScoreQ("List matches scoring at least this (default: the threshold)."),
        threshold: Optional[float] = ScoreQ("Decision threshold (default: the model's calibration)."),
        key: ApiKey = Depends(match_key),
    ):
        h = await anyio.to_thread.run_sync(state.banks.get, bank)

        def work_for(up):
            return lambda deadline: engine.match_upload(
                h, state.embedders, up.path, up.display_name, fps=config.fps, threshold=threshold,
                min_score=min_score, deadline=deadline, metrics=state.metrics, delete=up.delete)

        return await ctx.upload_job(request, "match", work_for, key=key, bank=bank, mode=mode)

    @app.get("/banks/{bank}/lookup", response_model=schemas.MatchReportOut, response_model_exclude_none=True,
             tags=["matching"], summary="Look a hash value up (md5, sha1 exact; pdq within 31 bits)", responses=ERRORS)
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
              openapi_extra=TEXT_BODY, responses={**ACCEPTED, **ERRORS})
    async def lookup_file(
        request: Request,
        bank: str = BankName,
        signal_type: schemas.FileSignalType = Query(
            VPDQSignal.name, description="vpdq: a vPDQ hash file (vpdq or python-threatexchange format); cnn: a .vmsig file."),
        min_score: Optional[float] = ScoreQ("cnn: list matches scoring at least this."),
        threshold: Optional[float] = ScoreQ("cnn: decision threshold."),
        mode: schemas.Mode = ModeQ,
        key: ApiKey = Depends(match_key),
    ):
        from vmatch.signals.cnn import MAX_EXPANDED_BYTES

        h = await anyio.to_thread.run_sync(state.banks.get, bank)
        # A hash file is read whole into memory: at most what a .vmsig may expand to.
        up, data = await ctx.upload_text(request, limit=min(config.max_upload_bytes, MAX_EXPANDED_BYTES))
        work = lambda deadline: engine.lookup_file(  # noqa: E731
            h, state.embedders, signal_type, data, up.filename or "body", threshold=threshold, min_score=min_score,
            deadline=deadline)
        # Parsing and matching run as a job, under the queue's bounds (--workers, --queue-size, --job-timeout).
        return await ctx.run_job("lookup", work, key=key, bank=bank, mode=mode, duration=0.0)

    # -------------------------------------------------------------------------- jobs
    @app.get("/jobs/{job_id}", response_model=schemas.JobOut, tags=["jobs"],
             summary="A job's state and, once done, its result (visible to the key that made it, or admin)",
             responses=ERRORS)
    async def get_job(job_id: str = PathParam(description="Job id from a 202 answer.", max_length=64),
                      key: ApiKey = Depends(any_key)):
        job = state.jobs.get(job_id)
        if job is None or (job.owner != key.key_id and "admin" not in key.scopes):
            raise ServiceError(404, "job_not_found", f"no job {job_id!r:.80} (finished jobs are kept {config.job_ttl:g} s)")
        return job.to_dict()
