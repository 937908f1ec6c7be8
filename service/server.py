"""The HTTP server: uvicorn with a bounded request head and deadlines for idle and slow clients.

uvicorn's httptools protocol buffers a request head of any size and keeps a connection open for
as long as bytes keep trickling in, or for ever when none come. `GuardedHttpProtocol` closes
those gaps with three rules, each a setting:

- an idle connection (new, or between requests) is closed after `keep_alive_timeout_s`;
- a request's line and headers must all arrive within `header_timeout_s` of its first byte and
  be at most `max_header_bytes` long (408 and 431 otherwise, then the connection is closed);
- its body must arrive within `body_timeout_s` of its headers, or the connection is closed.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, ClassVar

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from service.settings import ServiceSettings


@dataclass(frozen=True)
class ConnectionLimits:
    max_header_bytes: int
    header_timeout_s: float
    body_timeout_s: float

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> ConnectionLimits:
        return cls(settings.max_header_bytes, settings.header_timeout_s, settings.body_timeout_s)


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits above; `protocol_class` binds the limits."""

    limits: ClassVar[ConnectionLimits]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reading_head = False
        self._head_bytes = 0
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # uvicorn arms its keep-alive timer only after a response, so a connection that never
        # sends a byte would stay open for ever.
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if not self._reading_head:
            return
        # Counted after parsing, so only bytes of a head that is still incomplete count (a chunk
        # that also ends the previous request is counted whole: a few KB of slack at most).
        # httptools keeps the unfinished head in memory, so refusing here bounds that memory.
        self._head_bytes += len(data)
        if self._head_bytes > self.limits.max_header_bytes:
            self._answer_and_close(
                431,
                f"the request line and headers are larger than the limit of "
                f"{self.limits.max_header_bytes:,} bytes",
            )

    # httptools parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading_head = True
        self._head_bytes = 0
        self._arm(self.limits.header_timeout_s, self._head_too_slow)

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._arm(self.limits.body_timeout_s, self._body_too_slow)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    # deadlines

    def _arm(self, seconds: float, callback: Any) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, callback)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _head_too_slow(self) -> None:
        self._answer_and_close(
            408, f"the request line and headers took longer than {self.limits.header_timeout_s:g} s"
        )

    def _body_too_slow(self) -> None:
        # The app may be waiting for the rest of the body: it sees a disconnect. A response it
        # has already started cannot be followed by another, so this only closes.
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()

    def _answer_and_close(self, status: int, detail: str) -> None:
        """Answer a request the app never saw, if no response is under way, and hang up."""
        self._disarm()
        self._reading_head = False
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:
            body = json.dumps({"detail": detail}).encode()
            head = (
                f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
                "content-type: application/json\r\n"
                f"content-length: {len(body)}\r\n"
                "connection: close\r\n\r\n"
            )
            self.transport.write(head.encode() + body)
        self.transport.close()


def protocol_class(limits: ConnectionLimits) -> type[GuardedHttpProtocol]:
    return type("GuardedHttpProtocol", (GuardedHttpProtocol,), {"limits": limits})


def uvicorn_config(app: Any, settings: ServiceSettings, **options: Any) -> uvicorn.Config:
    """The one way this service configures uvicorn (the CLI and the tests' servers use it)."""
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        http=protocol_class(ConnectionLimits.from_settings(settings)),
        timeout_keep_alive=settings.keep_alive_timeout_s,
        **options,
    )
