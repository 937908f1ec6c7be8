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

# How long a refused client has to read its answer before the connection is closed.
_HANG_UP_S = 1.0
# On SIGTERM, how long in-flight requests have to finish (Docker's and Kubernetes' grace periods
# are set longer).
DRAIN_S = 10


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
        self._in_body = False  # between a request's headers and its end
        self._head_bytes = 0  # of the request head being read
        self._messages = 0  # requests read whole
        self._deadline: asyncio.TimerHandle | None = None
        self._hanging_up = False

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
        # httptools keeps an unfinished head in memory, however long: outside a body, feed it
        # at most the bytes the head may still have, and refuse when they do not finish it.
        while data and not self._hanging_up and not self.transport.is_closing():
            if self._in_body:
                # A pipelined head after the body's end goes in uncounted, but it is counted
                # from the next chunk on: memory stays bounded by the limit plus one read.
                super().data_received(data)
                return
            room = self.limits.max_header_bytes - self._head_bytes
            if room <= 0:
                self._answer_and_close(
                    431,
                    "the request line and headers are larger than the limit of "
                    f"{self.limits.max_header_bytes:,} bytes",
                )
                return
            piece, data = data[:room], data[room:]
            messages = self._messages
            super().data_received(piece)
            if self._messages != messages:
                self._head_bytes = 0  # the rest of the piece is the next request's: uncounted
            elif not self._in_body:
                self._head_bytes += len(piece)  # all of it head: the head is not finished

    # httptools parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm(self.limits.header_timeout_s, self._head_too_slow)

    def on_headers_complete(self) -> None:
        self._in_body = True
        self._arm(self.limits.body_timeout_s, self._body_too_slow)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_body = False
        self._head_bytes = 0
        self._messages += 1
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
        if self.transport.is_closing() or self._hanging_up:
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self.transport.close()
            return
        body = json.dumps({"detail": detail}).encode()
        head = (
            f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
            "content-type: application/json\r\n"
            f"content-length: {len(body)}\r\n"
            "connection: close\r\n\r\n"
        )
        self.transport.write(head.encode() + body)
        # Closing with the client's bytes still unread would send a reset, which can destroy
        # the answer before the client reads it: signal the end, drop what still comes in for
        # a moment, then close.
        self._hanging_up = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(_HANG_UP_S, self.transport.close)


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
