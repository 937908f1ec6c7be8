"""Pure ASGI middleware, so that it sees every request and every byte: `RequestMiddleware` tags,
times, counts and logs each request; `BodyLimitMiddleware` refuses bodies over the limit before
they are read whole. How they stack with service/uploads.py's is `create_app`'s.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import uuid
from collections.abc import Mapping
from typing import Any

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import CLIENT_GONE, TooLargeError
from service.metrics import ServiceMetrics

access_log = logging.getLogger("vaegan.access")
log = logging.getLogger("vaegan.service")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestMiddleware:
    """Gives each request an id (the client's X-Request-Id when it is sensible), answers HEAD
    wherever GET is answered, turns a crash into a 500, and records each request in the
    metrics and one JSON access-log line."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        if method == "HEAD":
            # Load balancers probe with HEAD. Routed as GET on a copy: uvicorn still reads the
            # original HEAD and sends the headers without the body.
            scope = {**scope, "method": "GET"}
        given = header_map(scope).get("x-request-id", "")
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        started = time.perf_counter()
        status = 500
        response_started = False
        received = 0

        async def send_tagged(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        async def receive_counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
            return message

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive_counted, send_tagged)
        except ClientDisconnect:
            status = CLIENT_GONE  # gone before its body arrived (or cut off by the body timeout)
        except Exception:
            if not response_started:
                await send_json(send_tagged, 500, {"detail": "internal error"})
            log.exception("request %s failed", request_id)
        finally:
            self.metrics.in_flight.dec()
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.request_seconds.labels(method, route, str(status)).observe(elapsed)
            if status >= 400:
                self.metrics.errors.labels(route, str(status)).inc()
            client = scope.get("client")
            access_log.info(
                json.dumps(
                    {
                        "request_id": request_id,
                        "method": method,
                        "path": scope.get("path"),
                        "route": route,
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 2),
                        "client": client[0] if client else None,
                        "bytes_in": received,
                        "pid": os.getpid(),  # which worker answered (service/workers.py)
                    }
                )
            )


class BodyLimitMiddleware:
    """Answers 413 to a body declared larger than the limit without reading it, and raises
    `TooLargeError` as soon as a body sent without a length (chunked) passes it."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, max_json_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_json_bytes = max_json_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = header_map(scope)
        # Only uploads need megabytes; a JSON body is parsed on the event loop, so it gets less.
        limit = self.max_json_bytes if is_json(headers) else self.max_body_bytes
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await send_json(send, 413, {"detail": _too_large(limit)})
            return
        received = 0

        async def receive_limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise TooLargeError(_too_large(limit))
            return message

        await self.app(scope, receive_limited, send)


def header_map(scope: Scope) -> dict[str, str]:
    """The request's headers by lower-case name; of a repeated header, the last value."""
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


def is_json(headers: Mapping[str, str]) -> bool:
    media_type = headers.get("content-type", "").partition(";")[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


def _too_large(limit: int) -> str:
    return f"the request body is larger than the limit of {limit:,} bytes"


async def send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
