"""Request and response bodies of the service (pydantic), every field described.

Match reports have exactly the fields of ``vmatch match --json`` (README, "Command line").
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from vmatch.signals.registry import LIST_SIGNAL_TYPES, STORED_SIGNAL_TYPES, signal_type_names

Mode = Literal["auto", "sync", "async"]
#: Hash-list values (``GET .../lookup``): md5, sha1, pdq.
ListSignalType = Literal[LIST_SIGNAL_TYPES]
#: What a bank stores values of (``POST .../hashes``): md5, sha1, pdq, vpdq.
StoredSignalType = Literal[STORED_SIGNAL_TYPES]
#: Hash files matched whole (``POST .../lookup``): vpdq, cnn.
FileSignalType = Literal[signal_type_names(in_lists=False)]


class ErrorBody(BaseModel):
    error: str = Field(description="Short machine-readable code, e.g. `upload_too_large`, `video_too_long`.")
    detail: str = Field(description="A sentence naming the problem and, where useful, how to fix it.")


class Live(BaseModel):
    status: Literal["up"] = Field(description="The process is up and serving HTTP.")


class BankState(BaseModel):
    name: str = Field(description="Bank name.")
    model_id: str = Field(description="Model of every embedding in the bank.")
    references: int = Field(description="References in the bank (hash-only ones included).")
    generation: int = Field(description="Generation of the bank's database (bumped by every change).")
    snapshot_generation: Optional[int] = Field(description="Generation of the in-memory search snapshot (null: not loaded yet).")
    index_file_generation: Optional[int] = Field(description="Generation of the FAISS file on disk (null: none yet).")
    fresh: bool = Field(description="The in-memory snapshot reflects the database's current generation.")


class QueueState(BaseModel):
    queued: int = Field(description="Jobs waiting for a worker.")
    running: int = Field(description="Jobs running.")
    capacity: int = Field(description="Most jobs queued + running; beyond it requests get 503 + Retry-After.")
    workers: int = Field(description="Worker threads.")


class Status(BaseModel):
    status: Literal["ready", "not_ready"] = Field(description="`ready` when the model is loaded and every bank opened.")
    model_ready: bool = Field(description="The default model's embedder is loaded.")
    models_loaded: list[str] = Field(description="Model ids whose embedders are loaded.")
    banks: list[BankState] = Field(description="The banks loaded and their index freshness.")
    bank_errors: dict[str, str] = Field(description="Banks under the root that could not be opened, with the reason.")
    queue: QueueState = Field(description="Job queue depth.")
    version: str = Field(description="vmatch version.")


class BankCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="Bank name: 1-64 letters, digits, `_` or `-`, starting with a letter or digit.",
                      examples=["known-videos"], pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
    model: Optional[str] = Field(default=None, description="Model registry name (default: the server's default model).")


class BankInfo(BaseModel):
    name: str = Field(description="Bank name.")
    model_id: str = Field(description="Model of every embedding in the bank.")
    references: int = Field(description="References with frames (found by the CNN).")
    hash_only_references: int = Field(description="References known only by hashes (imported lists, vPDQ files).")
    frames: int = Field(description="Indexed reference frames.")
    seconds: float = Field(description="Seconds of reference video indexed.")
    generation: int = Field(description="Generation of the bank (bumped by every change).")
    hashes: dict[str, int] = Field(description="Stored hashes by signal type.")
    created_at: str = Field(description="Creation time (UTC, ISO 8601).")


class BankList(BaseModel):
    banks: list[BankInfo] = Field(description="Every bank under the bank root.")


class Deleted(BaseModel):
    deleted: str = Field(description="What was deleted (bank name or reference id).")


class Reference(BaseModel):
    reference: str = Field(description="Reference id.")
    duration: float = Field(description="Seconds of video.")
    n_frames: int = Field(description="Embedded frames (0 for hash-only references).")
    sha256: str = Field(description="SHA-256 of the source file (empty for hash-only references).")
    added_at: str = Field(description="When it was stored (UTC, ISO 8601).")
    source_name: str = Field(description="File name it came from (the media itself is never stored).")
    extra: dict = Field(description="Sampling rate, blank frames dropped, hash-only flag.")


class ReferenceAdded(Reference):
    md5: str = Field(description="MD5 of the source file (stored: a byte-identical upload matches with `signal_type` md5).")
    sha1: str = Field(description="SHA-1 of the source file.")
    vpdq_frames: int = Field(description="vPDQ frames stored (0 unless `vpdq=true`).")


class ReferenceList(BaseModel):
    bank: str = Field(description="Bank name.")
    references: list[Reference] = Field(description="References ordered by id.")


class FromPath(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = Field(description="File path on the server, relative to (or inside) the server's --media-root.",
                      examples=["clips/known.mp4"])
    id: Optional[str] = Field(default=None, description="Reference id (default: the file name without extension).")
    vpdq: bool = Field(default=False, description="Also store the video's vPDQ hash (a second decode).")


class SegmentOut(BaseModel):
    query_start: float = Field(description="Start of the copy in the query, seconds.")
    query_end: float = Field(description="End of the copy in the query, seconds.")
    reference_start: float = Field(description="Start of the copied part in the reference, seconds.")
    reference_end: float = Field(description="End of the copied part in the reference, seconds.")
    score: float = Field(description="Segment score.")


class MatchOut(BaseModel):
    reference: str = Field(description="Reference id found in the query.")
    score: float = Field(description="Pair score (cnn: best segment score; md5/sha1: 1; vpdq: query match %/100; pdq: 1 - distance/256).")
    signal_type: str = Field(description="Signal that found it: cnn, md5, sha1, vpdq or pdq.")
    query_match_percent: Optional[float] = Field(default=None, description="vpdq only: % of query frames matched.")
    compared_match_percent: Optional[float] = Field(default=None, description="vpdq only: % of reference frames matched.")
    distance: Optional[float] = Field(default=None, description="pdq only: Hamming distance of the closest frame.")
    query_time: Optional[float] = Field(default=None, description="pdq only: time of that query frame, seconds.")
    segments: list[SegmentOut] = Field(description="Copied segments, best first (cnn, md5, sha1).")


class MatchReportOut(BaseModel):
    query: str = Field(description="The query's name (the uploaded file name, or the hash looked up).")
    duration: float = Field(description="Seconds of query video.")
    threshold: float = Field(description="Decision threshold used (the model's calibration unless overridden).")
    matches: list[MatchOut] = Field(description="Matches sorted by score, best first.")


class JobAccepted(BaseModel):
    job_id: str = Field(description="Id of the job; poll `GET /jobs/{job_id}`.")
    status: str = Field(description="Job status at the time of the answer (queued or running).")
    location: str = Field(description="URL path of the job.")


class JobOut(BaseModel):
    id: str = Field(description="Job id.")
    kind: str = Field(description="match, add_reference, hash, lookup, private_publish or private_match.")
    bank: Optional[str] = Field(description="Bank concerned, if any.")
    status: Literal["queued", "running", "done", "failed"] = Field(description="Job state.")
    created_at: str = Field(description="When it was queued (UTC).")
    started_at: Optional[str] = Field(description="When it started running.")
    finished_at: Optional[str] = Field(description="When it finished.")
    result: Optional[dict] = Field(description="The answer the synchronous request would have given (status done).")
    error: Optional[ErrorBody] = Field(description="Why it failed (status failed).")
    http_status: Optional[int] = Field(description="HTTP status the synchronous request would have had (failed jobs).")


class CnnSummary(BaseModel):
    model_id: str = Field(description="Model that made the embedding.")
    frames: int = Field(description="Sampled frames embedded (blank ones dropped).")
    dim: int = Field(description="Embedding dimension.")
    fps: float = Field(description="Sampling rate, frames per second.")
    blank_frames: int = Field(description="Sampled frames dropped as blank.")


class VpdqSummary(BaseModel):
    frames: int = Field(description="vPDQ frames.")
    lines: list[str] = Field(description="The vPDQ hash file's lines, `frame_number,quality,pdq_hex,timestamp` (vpdq's format).")


class HashResult(BaseModel):
    file: str = Field(description="Uploaded file name.")
    duration: float = Field(description="Seconds of video.")
    md5: str = Field(description="MD5 of the file.")
    sha1: str = Field(description="SHA-1 of the file.")
    sha256: str = Field(description="SHA-256 of the file.")
    cnn: CnnSummary = Field(description="Summary of the CNN embedding.")
    vpdq: VpdqSummary = Field(description="The vPDQ hash.")


class ImportResult(BaseModel):
    added: int = Field(description="Hashes (or vPDQ frames) newly stored.")
    lines: int = Field(description="Good lines (or frames) read.")
    problems: list[str] = Field(description="Malformed lines, each `NAME:LINE: reason; line skipped`.")


# ---------------------------------------------------------------------------------------- private mode
class PrivateTable(BaseModel):
    version: int = Field(description="Version of the table (1, 2, ... per bank); devices may send vouchers made against any published one.")
    commitment: str = Field(description="SHA-256 (hex) of the table file: what devices check and what their bundles name.")
    keys: int = Field(description="Distinct blinded match keys in it.")
    slots: int = Field(description="Cuckoo table slots (the rest hold random points).")
    bytes: int = Field(description="Size of the table file.")
    threshold: int = Field(description="Matching frames a video needs before the server can read any of them.")
    keys_per_frame: int = Field(description="Vouchers a device makes per sampled frame.")


class PrivateAccepted(BaseModel):
    accepted: str = Field(description="The bundle's id (hex). The same answer for every accepted bundle, "
                                      "whatever the bank holds: it never says whether the video matched.")


class PrivateResultOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    bundle: str = Field(description="Bundle id (hex).")
    table: str = Field(description="Commitment of the table the vouchers were made against.")
    vouchers: int = Field(description="Vouchers in the bundle.")
    status: Literal["opened", "below_threshold"] = Field(
        description="opened: at least `threshold` frames matched and their frames were matched; below_threshold: "
                    "nothing could be read (no count of what opened is kept).")
    opened_frames: Optional[int] = Field(default=None, description="opened: frames the server could read.")
    report: Optional[MatchReportOut] = Field(default=None, description="opened: the match report of the opened frames "
                                             "(the fields of `vmatch match --json`; query: the bundle id).")


class PrivateResults(BaseModel):
    bank: str = Field(description="Bank name.")
    results: list[PrivateResultOut] = Field(description="Processed bundles, in the order they were received.")
