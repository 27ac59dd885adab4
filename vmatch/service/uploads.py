"""Request bodies streamed to a temporary file, with the size limit enforced while streaming.

Accepted bodies: ``multipart/form-data`` (the media in the part named ``file``; other parts are
small text fields), or the raw bytes with ``Content-Type`` ``application/octet-stream``, ``video/*``
(media) or ``text/plain`` (hash lists). A declared ``Content-Length`` above the limit is refused
before anything is read (413); otherwise the running byte count is checked on every chunk (413 as
soon as it passes). The temp file is deleted on any error; on success the caller owns it and must
delete it (:meth:`Upload.delete`) as soon as it is hashed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from starlette.requests import ClientDisconnect

from vmatch.service.errors import ServiceError

log = logging.getLogger(__name__)

#: Status recorded for a request whose client left before the answer (nginx's 499).
CLIENT_CLOSED = 499

MEDIA_TYPES = ("application/octet-stream", "video/*", "multipart/form-data")
TEXT_TYPES = ("text/plain", "application/octet-stream", "multipart/form-data")
_MAX_FIELD = 64 * 1024
_MAX_PARTS = 16


@dataclass
class Upload:
    path: Path
    size: int
    filename: str | None
    content_type: str
    fields: dict[str, str] = field(default_factory=dict)

    def delete(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    @property
    def display_name(self) -> str:
        """The client's file name (never the server's temp path)."""
        return self.filename or "upload"


def _accepts(ctype: str, allowed: tuple[str, ...]) -> bool:
    for a in allowed:
        if a.endswith("/*") and ctype.startswith(a[:-1]):
            return True
        if ctype == a:
            return True
    return False


def _too_large(limit: int, got: int | None = None) -> ServiceError:
    what = f"{got} bytes" if got is not None else "more"
    return ServiceError(413, "upload_too_large",
                        f"the request body is {what}; the limit is {limit} bytes (--max-upload-mb)")


async def receive_upload(request, *, limit: int, upload_dir: Path, allowed: tuple[str, ...] = MEDIA_TYPES,
                         part: str = "file") -> Upload:
    """Stream the body of ``request`` (a Starlette Request) to a file in ``upload_dir``."""
    ctype_full = request.headers.get("content-type", "")
    ctype = ctype_full.split(";")[0].strip().lower()
    if not ctype:
        raise ServiceError(415, "unsupported_media_type",
                           f"missing Content-Type; send one of {', '.join(allowed)}")
    if not _accepts(ctype, allowed):
        raise ServiceError(415, "unsupported_media_type",
                           f"Content-Type {ctype!r} is not accepted here; send one of {', '.join(allowed)}")
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            n = int(declared)
        except ValueError:
            raise ServiceError(400, "bad_content_length", f"Content-Length {declared!r} is not a number") from None
        if n > limit:
            raise _too_large(limit, n)
    upload_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="up-", dir=upload_dir)
    path = Path(name)
    counted = _Counted(request)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                if ctype == "multipart/form-data":
                    size, filename, fields, part_type = await _multipart(counted, ctype_full, out, limit, part)
                else:
                    size, filename, fields, part_type = 0, None, {}, ctype
                    async for chunk in counted.stream():
                        size += len(chunk)
                        if size > limit:
                            raise _too_large(limit)
                        out.write(chunk)
            except ClientDisconnect:
                raise _client_closed(request, counted.received) from None
        if size == 0:
            raise ServiceError(400, "empty_upload", "the upload is empty (0 bytes); send the file's content")
        return Upload(path=path, size=size, filename=filename, content_type=part_type, fields=fields)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        raise


class _Counted:
    """The request's body stream, counting the bytes received (for the log line of a client that
    leaves mid-upload)."""

    def __init__(self, request) -> None:
        self.request = request
        self.received = 0

    async def stream(self):
        async for chunk in self.request.stream():
            self.received += len(chunk)
            yield chunk


def _client_closed(request, received: int) -> ServiceError:
    """A client that closed its connection mid-upload is not a server error: one log line (no
    traceback) and status 499 (nginx's "client closed request") in the metrics; nobody reads the
    answer. The caller deletes the partial file."""
    declared = request.headers.get("content-length")
    of = f" of {declared}" if declared else ""
    log.warning("client %s closed the connection during the upload to %s %s after %d%s bytes; upload discarded",
                _client(request), request.method, request.url.path, received, of)
    return ServiceError(CLIENT_CLOSED, "client_closed_request",
                        f"the client closed the connection after {received}{of} bytes of the upload")


def _client(request) -> str:
    client = request.client
    return f"{client.host}:{client.port}" if client else "?"


async def _multipart(request, ctype_full: str, out, limit: int, part_name: str):
    from python_multipart.exceptions import FormParserError
    from python_multipart.multipart import MultipartParser, parse_options_header

    _, params = parse_options_header(ctype_full)
    boundary = params.get(b"boundary")
    if not boundary:
        raise ServiceError(400, "bad_multipart", "multipart/form-data without a boundary parameter")
    state = {"headers": [], "hname": b"", "hvalue": b"", "name": None, "filename": None, "ptype": "",
             "is_file": False, "seen_file": False, "buf": bytearray(), "parts": 0}
    fields: dict[str, str] = {}
    size = 0

    def on_part_begin():
        state.update(headers=[], name=None, filename=None, ptype="", is_file=False, buf=bytearray())
        state["parts"] += 1
        if state["parts"] > _MAX_PARTS:
            raise ServiceError(400, "bad_multipart", f"more than {_MAX_PARTS} parts in the form")

    def on_header_field(data, start, end):
        state["hname"] += data[start:end]

    def on_header_value(data, start, end):
        state["hvalue"] += data[start:end]

    def on_header_end():
        state["headers"].append((state["hname"].lower(), state["hvalue"]))
        state["hname"], state["hvalue"] = b"", b""

    def on_headers_finished():
        disp = next((v for k, v in state["headers"] if k == b"content-disposition"), b"")
        _, opts = parse_options_header(disp)
        name = opts.get(b"name")
        if name is None:
            raise ServiceError(400, "bad_multipart", "a form part has no Content-Disposition name")
        state["name"] = name.decode("utf-8", "replace")
        fn = opts.get(b"filename")
        state["filename"] = os.path.basename(fn.decode("utf-8", "replace")) if fn is not None else None
        state["ptype"] = next((v.decode("latin-1") for k, v in state["headers"] if k == b"content-type"), "")
        if state["name"] == part_name:
            if state["seen_file"]:
                raise ServiceError(400, "bad_multipart", f"more than one {part_name!r} part")
            state["is_file"] = state["seen_file"] = True

    def on_part_data(data, start, end):
        nonlocal size
        chunk = data[start:end]
        if state["is_file"]:
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            out.write(chunk)
        else:
            state["buf"] += chunk
            if len(state["buf"]) > _MAX_FIELD:
                raise ServiceError(413, "field_too_large", f"form field {state['name']!r} is over {_MAX_FIELD} bytes")

    def on_part_end():
        if state["is_file"]:
            fields["__filename__"] = state["filename"] or ""
            fields["__type__"] = state["ptype"]
        elif state["name"] is not None:
            fields[state["name"]] = state["buf"].decode("utf-8", "replace")

    parser = MultipartParser(boundary, {
        "on_part_begin": on_part_begin, "on_part_data": on_part_data, "on_part_end": on_part_end,
        "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end, "on_headers_finished": on_headers_finished,
    })
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except FormParserError as e:
        raise ServiceError(400, "bad_multipart", f"malformed multipart/form-data body ({e})") from None
    if not state["seen_file"]:
        raise ServiceError(400, "missing_file", f"the form has no part named {part_name!r} holding the file")
    filename = fields.pop("__filename__", "") or None
    ptype = fields.pop("__type__", "")
    return size, filename, fields, ptype
