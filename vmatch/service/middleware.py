"""The service's ASGI middleware: request counts and latency per route, and the JSON body limit.

Where it sits: around every route of the app (``app.create_app`` installs it).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from fastapi.responses import JSONResponse

from vmatch.service.errors import ServiceError

if TYPE_CHECKING:
    from vmatch.service.state import ServiceState


class Observe:
    """Counts requests and their latency per route template; enforces the body limits (413) of
    requests that do not stream their own upload (JSON bodies)."""

    def __init__(self, app, state: ServiceState) -> None:
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
