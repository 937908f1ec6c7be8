"""Every refusal the service answers: its exceptions, the one table from exception to HTTP
status, the handlers that write the answers, and the error answers the OpenAPI schema promises.

Code raises what is wrong (`TooLargeError`, a codec's `ImageTooLargeError`, a `QueueFullError`);
which status and headers that answers with is decided in `REFUSALS` alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from model.codec import (
    CorruptImageError,
    EmptyImageError,
    ImageDimensionsError,
    ImageError,
    ImageTooLargeError,
    UnsupportedImageError,
)
from service.batching import BatcherClosedError, QueueFullError
from service.schemas import ErrorBody
from service.uploads import ClientGoneError

# nginx's "client closed request": logged and counted, never seen by the client.
CLIENT_GONE = 499


class RequestError(HTTPException):
    """A request the service refuses, with a message written for its sender.

    An HTTPException because FastAPI answers any other exception raised while it reads a body
    (the body limit's, say) with a 400; the status and headers still come from `REFUSALS`.
    """

    def __init__(self, detail: str) -> None:
        refusal = refusal_for(type(self))
        super().__init__(refusal.status, detail, dict(refusal.headers))

    def __str__(self) -> str:
        return str(self.detail)


class UnauthorizedError(RequestError):
    """No API key, or the wrong one."""


class NotFoundError(RequestError):
    """What was asked for does not exist (this model's attribute vectors, a static file)."""


class NotSupportedError(RequestError):
    """The served checkpoint cannot do this."""


class TooLargeError(RequestError):
    """A body, a batch of images or of values over the limits."""


class UnsupportedMediaTypeError(RequestError):
    """A body of a content type the route does not read."""


class NotReadyError(RequestError):
    """The model is still loading, or failed to."""


@dataclass(frozen=True)
class Refusal:
    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    # Formatted with the exception as `error` and the service's settings as `settings`.
    detail: str = "{error}"


# Looked up along the exception's MRO: the nearest class listed answers.
REFUSALS: dict[type[Exception], Refusal] = {
    RequestError: Refusal(422),
    UnauthorizedError: Refusal(401, {"WWW-Authenticate": "Bearer"}),
    NotFoundError: Refusal(404),
    NotSupportedError: Refusal(409),
    TooLargeError: Refusal(413),
    UnsupportedMediaTypeError: Refusal(415),
    NotReadyError: Refusal(503, {"Retry-After": "5"}),
    ClientGoneError: Refusal(CLIENT_GONE),
    # the image codec's (model/codec.py)
    ImageError: Refusal(400),
    EmptyImageError: Refusal(400),
    CorruptImageError: Refusal(400),
    UnsupportedImageError: Refusal(415),
    ImageTooLargeError: Refusal(413),
    ImageDimensionsError: Refusal(422),
    # the micro-batcher's and the request timeout's
    QueueFullError: Refusal(
        503, {"Retry-After": "1"}, "the server is busy: {error}; retry shortly"
    ),
    BatcherClosedError: Refusal(503, {"Retry-After": "5"}),
    TimeoutError: Refusal(
        504, detail="the request took longer than the {settings.request_timeout_s:g} s limit"
    ),
}


def refusal_for(error: type[Exception]) -> Refusal:
    return next(REFUSALS[cls] for cls in error.__mro__ if cls in REFUSALS)


def install_error_handlers(app: FastAPI) -> None:
    for error in REFUSALS:
        app.add_exception_handler(error, _refuse)
    app.exception_handler(RequestValidationError)(_invalid)


async def _refuse(request: Request, exc: Exception) -> JSONResponse:
    refusal = refusal_for(type(exc))
    detail = refusal.detail.format(error=exc, settings=request.app.state.settings)
    # Messages may quote what was sent: cut them, so that no refusal is bigger than a few KB.
    return JSONResponse(
        {"detail": shorten(detail, 2000)}, status_code=refusal.status, headers=dict(refusal.headers)
    )


async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
    # FastAPI's own answer lists every problem with the input it found, however many.
    return JSONResponse({"detail": problems(exc)}, status_code=422)


# --------------------------------------------------------------------------------------------
# messages that quote what was sent


_SHOWN_PROBLEMS = 5


def shorten(text: str, limit: int = 100) -> str:
    """`text` cut to `limit` characters: messages quote what was sent, which may be huge."""
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def first_few(names: list[str]) -> str:
    """The first few of `names`, quoted and cut short, then how many more."""
    shown = ", ".join(repr(shorten(name, 40)) for name in names[:_SHOWN_PROBLEMS])
    more = len(names) - _SHOWN_PROBLEMS
    return f"{shown} and {more} more" if more > 0 else shown


def problems(error: ValidationError | RequestValidationError) -> list[dict[str, Any]]:
    """The first few problems, without the input each one would echo, then how many more."""
    if isinstance(error, ValidationError):
        errors = error.errors(include_url=False, include_context=False, include_input=False)
    else:
        errors = list(error.errors())
    shown: list[dict[str, Any]] = [
        {"type": e["type"], "loc": list(e["loc"]), "msg": shorten(str(e["msg"]), 200)}
        for e in errors[:_SHOWN_PROBLEMS]
    ]
    if len(errors) > _SHOWN_PROBLEMS:
        more = len(errors) - _SHOWN_PROBLEMS
        shown.append({"type": "more", "loc": [], "msg": f"and {more} more problems"})
    return shown


# --------------------------------------------------------------------------------------------
# what the OpenAPI schema promises


_MEANINGS = {
    400: "an empty or damaged image, or a body that cannot be parsed",
    401: "a missing or wrong API key",
    404: "this model has no attribute vectors",
    409: "the served checkpoint cannot do this (the learned metric needs a VAE-GAN checkpoint)",
    413: "a body, an image or a batch over the limits",
    415: "an upload in no supported image format, or a body of the wrong content type",
    422: "a request the model cannot serve; the detail says why",
    503: "the model is loading, the queue is full or the service is stopping (see Retry-After)",
    504: "the request took longer than the time limit",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses` for a route: each status, what it means, and its body."""
    return {s: {"model": ErrorBody, "description": _MEANINGS[s]} for s in statuses}
