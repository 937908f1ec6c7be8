"""What routes depend on: the runtime, the API key, and request bodies read within bounds.

The routes that accept a form or a JSON body read it here rather than declaring it as a
parameter: FastAPI would parse and validate it without the service's bounds and echo every bad
element back.
"""

from __future__ import annotations

import hmac
from collections import Counter
from collections.abc import Sequence
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from pydantic import BaseModel, ValidationError
from starlette.datastructures import FormData

from service.errors import (
    NotReadyError,
    RequestError,
    TooLargeError,
    UnauthorizedError,
    UnsupportedMediaTypeError,
    first_few,
    problems,
    shorten,
)
from service.middleware import is_json
from service.runtime import Runtime
from service.settings import ServiceSettings

Body = TypeVar("Body", bound=BaseModel)


# --------------------------------------------------------------------------------------------
# the runtime and the API key


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime | None = request.app.state.runtime
    if runtime is None or not runtime.ready:
        error = request.app.state.load_error
        raise NotReadyError(
            f"the model failed to load: {error}" if error else "the model is still loading"
        )
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def require_api_key(request: Request) -> None:
    settings: ServiceSettings = request.app.state.settings
    if settings.api_key is None:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    expected = settings.api_key.get_secret_value().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected):
        raise UnauthorizedError("missing or wrong API key: send 'Authorization: Bearer <key>'")


async def require_api_key_for_docs(request: Request) -> None:
    if request.app.state.settings.protect_docs:
        await require_api_key(request)


async def single_query_values(request: Request) -> None:
    """Refuse `?n=1&n=64`: which one was meant is a guess, and FastAPI would take the last."""
    counts = Counter(name for name, _ in request.query_params.multi_items())
    repeated = sorted(name for name, count in counts.items() if count > 1)
    if repeated:
        raise RequestError(
            f"query parameter {first_few(repeated)} given more than once; send it once"
        )


# Every API route's: the key, and no repeated query parameters.
API_DEPENDENCIES = [Depends(require_api_key), Depends(single_query_values)]


# --------------------------------------------------------------------------------------------
# JSON bodies


def _json_value_limit(runtime: Runtime) -> int:
    """More values than any JSON request to this model needs: the largest is a /decode of
    max_samples latents."""
    return runtime.settings.max_samples * (runtime.predictor.latent_dim + 1) + 1024


async def json_body(request: Request, runtime: Runtime, model: type[Body]) -> Body:
    if not is_json(request.headers):
        raise UnsupportedMediaTypeError("send the body as application/json")
    body = await request.body()
    # Parsing holds the GIL (a worker thread would stall the loop just the same) and costs
    # about a microsecond per value: bound the values, by counting their separators in C,
    # before parsing. The middleware has already bounded the bytes.
    values = body.count(b",") + body.count(b"[") + body.count(b"{")
    limit = _json_value_limit(runtime)
    if values > limit:
        raise TooLargeError(
            f"the JSON body holds over {limit:,} values, more than a request to this model "
            f"needs (at most {runtime.settings.max_samples} latents of "
            f"{runtime.predictor.latent_dim})"
        )
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        found = "; ".join(
            f"{'.'.join(map(str, p['loc'])) or 'body'}: {p['msg']}" if p["loc"] else p["msg"]
            for p in problems(exc)
        )
        raise RequestError(f"invalid JSON body: {found}") from None


# --------------------------------------------------------------------------------------------
# forms


async def read_form(request: Request) -> FormData:
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        raise UnsupportedMediaTypeError(
            "send multipart/form-data (an image file) or application/json (a latent)"
        )
    # The text fields here are names and numbers. Starlette's defaults (1,000 fields of 1 MB)
    # would let one request have megabytes of them parsed on the event loop.
    return await request.form(max_files=4, max_fields=32, max_part_size=16 * 1024)


def _refuse_repeated(form: FormData, *fields: str) -> None:
    """FastAPI and Starlette keep the last of repeated parts; which one was meant is a guess."""
    repeated = [field for field in fields if len(form.getlist(field)) > 1]
    if repeated:
        raise RequestError(f"field {first_few(repeated)} sent more than once; send one file each")


def single_files(*fields: str) -> Any:
    """A dependency refusing repeated parts of FastAPI-declared single-file fields (the form is
    parsed by then, and `request.form()` returns it again)."""

    async def check(request: Request) -> None:
        _refuse_repeated(await request.form(), *fields)

    return Depends(check)


async def upload(form: FormData, field: str) -> bytes:
    _refuse_repeated(form, field)
    value = form.get(field)
    if value is None or isinstance(value, str):
        raise RequestError(f"missing file field {field!r} (multipart/form-data)")
    return await value.read()


def at_most(count: int, what: str, limit: int) -> None:
    if count > limit:
        raise RequestError(f"{count} {what} sent; the limit is {limit}")


def split(values: Sequence[object], what: str, limit: int) -> list[str]:
    """Form values, each one or several separated by commas, counted before they are split."""
    texts = [str(value) for value in values]
    at_most(sum(text.count(",") + 1 for text in texts), what, limit)
    return [part for text in texts for part in text.split(",")]


def floats(values: Sequence[object], name: str, limit: int) -> list[float]:
    parsed = []
    for part in split(values, f"values of {name!r}", limit):
        try:
            parsed.append(float(part))
        except ValueError:
            raise RequestError(f"{name} must be numbers, got {shorten(repr(part))}") from None
    return parsed


def one_integer(values: Sequence[object], name: str, default: int) -> int:
    if not values:
        return default
    if len(values) > 1:
        raise RequestError(f"send one {name}, got {len(values)}")
    try:
        return int(str(values[0]).strip())
    except ValueError:
        raise RequestError(
            f"{name} must be a whole number, got {shorten(repr(values[0]))}"
        ) from None
