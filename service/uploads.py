"""Decoding a request's uploads at a bounded cost.

The codec bounds one image (model/codec.py); this bounds a request: its images' pixels
together (read from their headers, before any is decoded), how many of them are decoded at
once, and for how long. A request's decoding runs as one pool task per image and stops taking
new ones when the client has gone or the request's time is up, so an abandoned request does
not keep the pool from the others. Large decodes hand their memory back to the system.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import Executor
from contextvars import ContextVar
from typing import Any, TypeVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from model.codec import ImageHeader

T = TypeVar("T")


class ClientGoneError(Exception):
    """The client closed the connection before its answer was ready (logged as a 499: see
    service/errors.py)."""


# --------------------------------------------------------------------------------------------
# noticing that the client has gone


class _Connection:
    """One request's view of its connection. Once the app has read the whole body, the next
    ASGI message can only say that the client disconnected (or that the answer was sent): a
    watcher waits for it, started only when work asks whether the client is still there."""

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._body_read = False
        self._watcher: asyncio.Future[Message] | None = None

    async def receive(self) -> Message:
        if self._watcher is not None:
            # The watcher holds the one pending receive(); share its answer.
            return await asyncio.shield(self._watcher)
        message = await self._receive()
        if message["type"] == "http.request" and not message.get("more_body", False):
            self._body_read = True
        return message

    def gone(self) -> asyncio.Future[Message] | None:
        """A task that finishes when the client disconnects; None before the body is read."""
        if not self._body_read:
            return None
        if self._watcher is None:
            self._watcher = asyncio.ensure_future(self._receive())
        return self._watcher

    def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()


_connection: ContextVar[_Connection | None] = ContextVar("vaegan_connection", default=None)


class DisconnectMiddleware:
    """Pure ASGI: lets the work done for a request find out that its client has gone."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        connection = _Connection(receive)
        token = _connection.set(connection)
        try:
            await self.app(scope, connection.receive, send)
        finally:
            _connection.reset(token)
            connection.close()


async def unless_client_gone(work: Awaitable[T]) -> T:
    """Await `work`, or cancel it and raise ClientGoneError when the client disconnects first.
    Outside a request (or before its body is read) this is a plain await."""
    connection = _connection.get()
    watcher = connection.gone() if connection is not None else None
    task = asyncio.ensure_future(work)
    if watcher is None:
        return await task
    try:
        either: set[asyncio.Future[Any]] = {task, watcher}
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        message = watcher.result()
        if message["type"] == "http.disconnect":
            raise ClientGoneError("the client closed the connection before the answer was ready")
        return await task  # the body was somehow followed by more data: keep working
    finally:
        # Cancelling the gather of pool futures drops the images not yet started.
        if not task.done():
            task.cancel()


# --------------------------------------------------------------------------------------------
# decoding a request's images


def batches(headers: Sequence[ImageHeader], max_pixels: int) -> Iterator[list[int]]:
    """Indices of the images to decode together: in order, as many at a time as fit in
    `max_pixels` (one image at the pixel limit decodes alone), so a request's decoding holds
    at most about one large image's memory at a time while small images still go in parallel."""
    batch: list[int] = []
    pixels = 0
    for index, header in enumerate(headers):
        if batch and pixels + header.pixels > max_pixels:
            yield batch
            batch, pixels = [], 0
        batch.append(index)
        pixels += header.pixels
    if batch:
        yield batch


async def decode_all(
    pool: Executor,
    decode: Callable[[bytes, ImageHeader], T],
    uploads: Sequence[bytes],
    headers: Sequence[ImageHeader],
    max_pixels_at_once: int,
) -> list[T]:
    """`decode` each upload on `pool`, batch after batch, giving up (and dropping the images not
    yet started) when the client goes or the caller is cancelled, e.g. by its timeout."""
    loop = asyncio.get_running_loop()
    results: list[T] = []
    for batch in batches(headers, max_pixels_at_once):
        work = asyncio.gather(
            *(loop.run_in_executor(pool, decode, uploads[i], headers[i]) for i in batch)
        )
        results.extend(await unless_client_gone(work))
    return results


# --------------------------------------------------------------------------------------------
# memory


# A decode this large leaves tens of MB of freed blocks in glibc's per-thread arenas.
TRIM_AFTER_PIXELS = 4_000_000


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim: Callable[[int], int] = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None  # not glibc (musl, macOS): nothing to do
    return trim


def release_free_memory() -> None:
    """Hand memory freed by large decodes back to the system. glibc keeps freed memory in the
    arena of the thread that used it, and with several pool threads a spike's worth of memory
    stays resident long after the spike; malloc_trim returns what is free (a few ms)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
