"""The FastAPI application: routes over `Runtime`, with protection and observability around them."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Annotated, Any, Literal

from fastapi import (
    APIRouter,
    Depends,
    FastAPI,
    File,
    HTTPException,
    Query,
    Request,
    UploadFile,
)
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field, ValidationError
from starlette.requests import ClientDisconnect

from model.checkpoint import Checkpoint, load_checkpoint, software_versions
from model.codec import (
    CorruptImageError,
    EmptyImageError,
    ImageDimensionsError,
    ImageError,
    ImageTooLargeError,
    UnsupportedImageError,
)
from model.device import select_device
from service.batching import BatcherClosedError, QueueFullError
from service.metrics import ServiceMetrics
from service.predictor import Predictor
from service.runtime import Rendered, RequestError, Runtime
from service.settings import ServiceSettings
from service.uploads import DisconnectMiddleware

access_log = logging.getLogger("vaegan.access")
log = logging.getLogger("vaegan.service")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


# --------------------------------------------------------------------------------------------
# middleware: request id, access log, metrics, body limit


class RequestMiddleware:
    """Pure ASGI so it sees every byte: tags, times and logs each request, refuses bodies over
    the limit with 413 before reading them whole, and answers HEAD wherever GET is answered."""

    def __init__(
        self, app: Any, metrics: ServiceMetrics, max_body_bytes: int, max_json_bytes: int
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.max_json_bytes = max_json_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        if method == "HEAD":
            # Load balancers probe with HEAD. Routed as GET on a copy: uvicorn still reads the
            # original HEAD and sends the headers without the body.
            scope = {**scope, "method": "GET"}
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        given = headers.get("x-request-id", "")
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        started = time.perf_counter()
        status = 500
        response_started = False

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

        received = 0
        # Only uploads need megabytes; a JSON body is parsed on the event loop, so it gets less.
        limit = self.max_json_bytes if _is_json(headers) else self.max_body_bytes

        async def receive_limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, _too_large(limit))
            return message

        self.metrics.in_flight.inc()
        try:
            declared = headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                await _send_json(send_tagged, 413, {"detail": _too_large(limit)})
            else:
                await self.app(scope, receive_limited, send_tagged)
        except ClientDisconnect:
            status = 499  # gone before its body arrived (or cut off by the body timeout)
        except Exception:
            if not response_started:
                await _send_json(send_tagged, 500, {"detail": "internal error"})
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
                    }
                )
            )


def _too_large(limit: int) -> str:
    return f"the request body is larger than the limit of {limit:,} bytes"


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
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


# --------------------------------------------------------------------------------------------
# dependencies


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime | None = request.app.state.runtime
    if runtime is None or not runtime.ready:
        error = request.app.state.load_error
        raise HTTPException(
            503,
            f"the model failed to load: {error}" if error else "the model is still loading",
            headers={"Retry-After": "5"},
        )
    return runtime


async def require_api_key(request: Request) -> None:
    settings: ServiceSettings = request.app.state.settings
    if settings.api_key is None:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    expected = settings.api_key.get_secret_value().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected):
        raise HTTPException(
            401,
            "missing or wrong API key: send 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )


async def single_query_values(request: Request) -> None:
    """Refuse `?n=1&n=64`: which one was meant is a guess, and FastAPI would take the last."""
    counts = Counter(name for name, _ in request.query_params.multi_items())
    repeated = sorted(name for name, count in counts.items() if count > 1)
    if repeated:
        raise RequestError(f"query parameter {_some(repeated)} given more than once; send it once")


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


async def respond(request: Request, runtime: Runtime, rendered: Rendered) -> Response:
    extra = rendered.extra or {}
    headers = {"X-Seed": str(extra["seed"])} if "seed" in extra else {}
    if wants_json(request):
        pngs = await runtime.pngs(rendered)
        body: dict[str, Any] = {"images": [base64.b64encode(png).decode() for png in pngs]}
        if rendered.latents is not None:
            body["latents"] = rendered.latents.tolist()
        body |= extra
        return JSONResponse(body, headers=headers)
    return Response(await runtime.png(rendered), media_type="image/png", headers=headers)


# --------------------------------------------------------------------------------------------
# request bodies


# Strict: true, false and "1.5" are not numbers (lax mode would read them as 1.0, 0.0 and 1.5).
Number = Annotated[float, Field(strict=True)]
# fail_fast: a list of a million bad numbers is one problem, found at the first, not a million.
Numbers = Annotated[list[Number], Field(fail_fast=True)]


class DecodeBody(BaseModel):
    latents: list[Numbers] = Field(
        fail_fast=True, description="latent vectors, each of the model's z size"
    )


class EditBody(BaseModel):
    latent: Numbers
    attribute: Annotated[list[str], Field(fail_fast=True)] | str
    strength: Numbers | Number | None = Field(
        None, description="default: each attribute's default_strength in GET /attributes"
    )
    strengths: Numbers | None = Field(
        None, description="a strip: one image per strength (instead of strength)"
    )


class InterpolateBody(BaseModel):
    latent_a: Numbers
    latent_b: Numbers
    steps: Annotated[int, Field(strict=True)] = 8


# --------------------------------------------------------------------------------------------
# what the OpenAPI schema promises: every status a route answers, with the shape of its body
# (clients and the schema fuzzer in tests/service/test_fuzz.py hold the service to it)


class ErrorBody(BaseModel):
    detail: str | list[dict[str, Any]] = Field(
        description="what was wrong, written for the sender; a list of problems where the request "
        "did not match this schema"
    )


class ImagesBody(BaseModel):
    """An image answer as JSON, for `Accept: application/json`."""

    images: list[str] = Field(description="base64 PNGs, one per image")
    latents: list[list[float]] | None = Field(None, description="each image's latent")
    seed: int | None = Field(None, description="/sample: the seed used")
    strengths: list[float] | None = Field(None, description="/attribute-edit: the strengths")


class Encoded(BaseModel):
    mu: list[list[float]]
    logvar: list[list[float]]


class Similarity(BaseModel):
    learned_distance: float
    pixel_mse: float


class Readiness(BaseModel):
    status: Literal["ready", "loading", "failed"]
    detail: str | None = None


_ERROR_MEANINGS = {
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


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {s: {"model": ErrorBody, "description": _ERROR_MEANINGS[s]} for s in statuses}


_IMAGE_ANSWER: dict[int | str, dict[str, Any]] = {
    200: {
        "model": ImagesBody,
        "description": "one PNG (an image, or a grid or strip of them); with "
        "`Accept: application/json`, base64 PNGs and their latents",
        "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
    }
}

_SAMPLE_ANSWER: dict[int | str, dict[str, Any]] = {
    200: {
        **_IMAGE_ANSWER[200],
        "headers": {"X-Seed": {"description": "the seed used", "schema": {"type": "integer"}}},
    }
}

# Any format Pillow reads is accepted (the bytes are sniffed; the part's own type is ignored).
_ANY_IMAGE = {"contentType": "image/*"}
_UPLOAD = {"type": "string", "format": "binary"}


def _image_parts(*names: str) -> dict[str, Any]:
    """openapi_extra for a FastAPI file route: which multipart parts are images."""
    encoding = dict.fromkeys(names, _ANY_IMAGE)
    return {"requestBody": {"content": {"multipart/form-data": {"encoding": encoding}}}}


def _json_only(body: type[BaseModel]) -> dict[str, Any]:
    """openapi_extra for a route that reads a JSON body itself (see `_json_body`)."""
    json_body = {"application/json": {"schema": body.model_json_schema()}}
    return {"requestBody": {"required": True, "content": json_body}}


def _either_body(form: dict[str, Any], body: type[BaseModel]) -> dict[str, Any]:
    """openapi_extra for a route that reads an upload form or a JSON body itself."""
    images = [name for name, schema in form["properties"].items() if schema == _UPLOAD]
    extra = _json_only(body)
    extra["requestBody"]["content"]["multipart/form-data"] = {
        "schema": form,
        "encoding": dict.fromkeys(images, _ANY_IMAGE),
    }
    return extra


_NUMBERS = {"type": "array", "items": {"type": "number"}}

EDIT_FORM = {
    "type": "object",
    "required": ["image", "attribute"],
    "properties": {
        "image": _UPLOAD,
        "attribute": {
            "type": "array",
            "items": {"type": "string"},
            "description": "attribute names: repeat the field or separate them with commas; "
            "a leading - removes the attribute (-Eyeglasses), + or none adds it",
        },
        "strength": {
            **_NUMBERS,
            "description": "one, or one per attribute (default: each attribute's "
            "default_strength in GET /attributes)",
        },
        "strengths": {**_NUMBERS, "description": "a strip: one image per strength"},
    },
}

INTERPOLATE_FORM = {
    "type": "object",
    "required": ["image_a", "image_b"],
    "properties": {
        "image_a": _UPLOAD,
        "image_b": _UPLOAD,
        "steps": {"type": "integer", "default": 8, "description": "images in the strip"},
    },
}


def _is_json(headers: Mapping[str, str]) -> bool:
    media_type = headers.get("content-type", "").partition(";")[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


def _short(text: str, limit: int = 100) -> str:
    """`text` cut to `limit` characters: messages quote what was sent, which may be huge."""
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


_SHOWN_PROBLEMS = 5


def _some(names: list[str]) -> str:
    """The first few of `names`, quoted and cut short, then how many more."""
    shown = ", ".join(repr(_short(name, 40)) for name in names[:_SHOWN_PROBLEMS])
    more = len(names) - _SHOWN_PROBLEMS
    return f"{shown} and {more} more" if more > 0 else shown


def _problems(error: ValidationError | RequestValidationError) -> list[dict[str, Any]]:
    """The first few problems, without the input each one would echo, then how many more."""
    if isinstance(error, ValidationError):
        errors = error.errors(include_url=False, include_context=False, include_input=False)
    else:
        errors = list(error.errors())
    shown: list[dict[str, Any]] = [
        {"type": e["type"], "loc": list(e["loc"]), "msg": _short(str(e["msg"]), 200)}
        for e in errors[:_SHOWN_PROBLEMS]
    ]
    if len(errors) > _SHOWN_PROBLEMS:
        more = len(errors) - _SHOWN_PROBLEMS
        shown.append({"type": "more", "loc": [], "msg": f"and {more} more problems"})
    return shown


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _at_most(count: int, what: str, limit: int) -> None:
    if count > limit:
        raise RequestError(f"{count} {what} sent; the limit is {limit}")


def _split(values: list[Any], what: str, limit: int) -> list[str]:
    """Form values, each one or several separated by commas, counted before they are split."""
    texts = [str(value) for value in values]
    _at_most(sum(text.count(",") + 1 for text in texts), what, limit)
    return [part for text in texts for part in text.split(",")]


def _floats(values: list[str], name: str, limit: int) -> list[float]:
    parsed = []
    for part in _split(values, f"values of {name!r}", limit):
        try:
            parsed.append(float(part))
        except ValueError:
            raise RequestError(f"{name} must be numbers, got {_short(repr(part))}") from None
    return parsed


def _not_both_strengths(strength: bool, strengths: bool) -> None:
    if strength and strengths:
        raise RequestError("send 'strength' (one image) or 'strengths' (a strip), not both")


def _json_value_limit(runtime: Runtime) -> int:
    """More values than any JSON request to this model needs: the largest is a /decode of
    max_samples latents."""
    return runtime.settings.max_samples * (runtime.predictor.latent_dim + 1) + 1024


async def _json_body(request: Request, runtime: Runtime, model: type[BaseModel]) -> Any:
    if not _is_json(request.headers):
        raise RequestError("send the body as application/json", 415)
    body = await request.body()
    # Parsing holds the GIL (a worker thread would stall the loop just the same) and costs
    # about a microsecond per value: bound the values, by counting their separators in C,
    # before parsing. The middleware has already bounded the bytes.
    values = body.count(b",") + body.count(b"[") + body.count(b"{")
    limit = _json_value_limit(runtime)
    if values > limit:
        raise RequestError(
            f"the JSON body holds over {limit:,} values, more than a request to this model "
            f"needs (at most {runtime.settings.max_samples} latents of "
            f"{runtime.predictor.latent_dim})",
            413,
        )
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, p['loc'])) or 'body'}: {p['msg']}" if p["loc"] else p["msg"]
            for p in _problems(exc)
        )
        raise RequestError(f"invalid JSON body: {problems}") from None


async def _form(request: Request) -> Any:
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        raise RequestError(
            "send multipart/form-data (an image file) or application/json (a latent)", 415
        )
    # The text fields here are names and numbers. Starlette's defaults (1,000 fields of 1 MB)
    # would let one request have megabytes of them parsed on the event loop.
    return await request.form(max_files=4, max_fields=32, max_part_size=16 * 1024)


def _one_integer(values: list[Any], name: str, default: int) -> int:
    if not values:
        return default
    if len(values) > 1:
        raise RequestError(f"send one {name}, got {len(values)}")
    try:
        return int(str(values[0]).strip())
    except ValueError:
        raise RequestError(
            f"{name} must be a whole number, got {_short(repr(values[0]))}"
        ) from None


def _refuse_repeated(form: Any, *fields: str) -> None:
    """FastAPI and Starlette keep the last of repeated parts; which one was meant is a guess."""
    repeated = [field for field in fields if len(form.getlist(field)) > 1]
    if repeated:
        raise RequestError(f"field {_some(repeated)} sent more than once; send one file each")


def single_files(*fields: str) -> Any:
    """A dependency refusing repeated parts of FastAPI-declared single-file fields (the form is
    parsed by then, and `request.form()` returns it again)."""

    async def check(request: Request) -> None:
        _refuse_repeated(await request.form(), *fields)

    return Depends(check)


async def _upload(form: Any, field: str) -> bytes:
    _refuse_repeated(form, field)
    value = form.get(field)
    if value is None or isinstance(value, str):
        raise RequestError(f"missing file field {field!r} (multipart/form-data)")
    data: bytes = await value.read()
    return data


# --------------------------------------------------------------------------------------------
# routes


router = APIRouter(
    dependencies=[Depends(require_api_key), Depends(single_query_values)],
    responses=_errors(401),
)
health = APIRouter()

# Statuses of the routes that decode uploads and run the model.
_UPLOAD_ERRORS = _errors(400, 413, 415, 422, 503, 504)


@router.post(
    "/reconstruct",
    summary="Reconstruct a face",
    response_class=Response,
    responses=_IMAGE_ANSWER | _UPLOAD_ERRORS,
    openapi_extra=_image_parts("image"),
    dependencies=[single_files("image")],
)
async def reconstruct(
    request: Request, runtime: RuntimeDep, image: Annotated[UploadFile, File()]
) -> Response:
    return await respond(request, runtime, await runtime.reconstruct(await image.read()))


@router.post(
    "/sample",
    summary="Sample faces from the prior",
    response_class=Response,
    responses=_SAMPLE_ANSWER | _errors(422, 503, 504),
)
async def sample(
    request: Request,
    runtime: RuntimeDep,
    n: int = Query(16, description="number of faces"),
    seed: int | None = Query(None, ge=0, le=2**63 - 1, description="same seed, same bytes"),
) -> Response:
    chosen = secrets.randbits(31) if seed is None else seed
    return await respond(request, runtime, await runtime.sample(n, chosen))


@router.post(
    "/encode",
    summary="Encode images to q(z|x)",
    response_model=Encoded,
    responses=_UPLOAD_ERRORS,
    openapi_extra=_image_parts("image"),
)
async def encode(runtime: RuntimeDep, image: Annotated[list[UploadFile], File()]) -> dict[str, Any]:
    mu, logvar = await runtime.encode([await upload.read() for upload in image])
    return {"mu": mu.tolist(), "logvar": logvar.tolist()}


@router.post(
    "/decode",
    summary="Decode latents to images",
    response_class=Response,
    responses=_IMAGE_ANSWER | _errors(400, 413, 415, 422, 503, 504),
    openapi_extra=_json_only(DecodeBody),
)
async def decode(request: Request, runtime: RuntimeDep) -> Response:
    # Read here rather than declared as a parameter: FastAPI would parse and validate the body
    # without our bounds and echo every bad element back (see `_json_body`).
    body = await _json_body(request, runtime, DecodeBody)
    latents = runtime.latents_from(body.latents)
    return await respond(request, runtime, Rendered(await runtime.decode(latents), latents))


@router.post(
    "/attribute-edit",
    summary="Add or remove attributes (+Smiling, -Eyeglasses)",
    response_class=Response,
    responses=_IMAGE_ANSWER | _UPLOAD_ERRORS | _errors(404),
    openapi_extra=_either_body(EDIT_FORM, EditBody),
)
async def attribute_edit(request: Request, runtime: RuntimeDep) -> Response:
    # Each attribute costs a vector sum on the event loop: as many as strengths at most.
    limit = runtime.settings.max_strengths
    if _is_json(request.headers):
        body = await _json_body(request, runtime, EditBody)
        _not_both_strengths(body.strength is not None, body.strengths is not None)
        names, strengths, strip = _as_list(body.attribute), _as_list(body.strength), body.strengths
        _at_most(len(names), "attributes", limit)
        z = await runtime.latent_of(None, body.latent)
    else:
        form = await _form(request)
        _not_both_strengths(bool(form.getlist("strength")), bool(form.getlist("strengths")))
        parts = _split(form.getlist("attribute"), "attributes", limit)
        names = [name.strip() for name in parts if name.strip()]
        strengths = _floats(form.getlist("strength"), "strength", limit)
        strip = _floats(form.getlist("strengths"), "strengths", limit) or None
        z = await runtime.latent_of(await _upload(form, "image"), None)
    rendered = await runtime.attribute_edit(z, names, strengths or None, strip)
    return await respond(request, runtime, rendered)


@router.post(
    "/interpolate",
    summary="Walk the latent space between two faces",
    response_class=Response,
    responses=_IMAGE_ANSWER | _UPLOAD_ERRORS,
    openapi_extra=_either_body(INTERPOLATE_FORM, InterpolateBody),
)
async def interpolate(request: Request, runtime: RuntimeDep) -> Response:
    if _is_json(request.headers):
        body = await _json_body(request, runtime, InterpolateBody)
        z_a, z_b = runtime.latents_from([body.latent_a, body.latent_b])
        steps = body.steps
    else:
        form = await _form(request)
        mu, _ = await runtime.encode(
            [await _upload(form, "image_a"), await _upload(form, "image_b")]
        )
        z_a, z_b = mu[0], mu[1]
        steps = _one_integer(form.getlist("steps"), "steps", default=8)
    return await respond(request, runtime, await runtime.interpolate(z_a, z_b, steps))


@router.post(
    "/similarity",
    summary="The learned (Dis_l) and the pixel distance",
    description="409 when the checkpoint has no learned metric: ALI, or a plain VAE.",
    response_model=Similarity,
    responses={**_UPLOAD_ERRORS, **_errors(409)},
    openapi_extra=_image_parts("image_a", "image_b"),
    dependencies=[single_files("image_a", "image_b")],
)
async def similarity(
    runtime: RuntimeDep,
    image_a: Annotated[UploadFile, File()],
    image_b: Annotated[UploadFile, File()],
) -> dict[str, float]:
    return await runtime.similarity(await image_a.read(), await image_b.read())


@router.get("/attributes", summary="Attribute vectors this model knows", responses=_errors(503))
async def attributes(runtime: RuntimeDep) -> dict[str, Any]:
    header = runtime.predictor.checkpoint.header
    return {
        "attributes": [
            {"name": name, **info, "default_strength": runtime.default_strength(name)}
            for name, info in header.attributes.items()
        ]
    }


@router.get("/model", summary="The served checkpoint", responses=_errors(503))
async def model_info(runtime: RuntimeDep) -> dict[str, Any]:
    predictor = runtime.predictor
    checkpoint = predictor.checkpoint
    return {
        **checkpoint.header.to_json(),
        "path": str(checkpoint.path),
        "sha256": checkpoint.sha256,
        "device": str(predictor.device),
        "dtype": str(predictor.dtype).removeprefix("torch."),
        "batching": {
            "max_batch_size": runtime.settings.max_batch_size,
            "max_batch_delay_ms": runtime.settings.max_batch_delay_ms,
        },
    }


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def metrics(request: Request) -> Response:
    service_metrics: ServiceMetrics = request.app.state.metrics
    return Response(service_metrics.render(), media_type=service_metrics.content_type)


@health.get("/health/live", summary="The process is up")
async def live() -> dict[str, str]:
    return {"status": "alive"}


@health.get(
    "/health/ready",
    summary="The model is loaded and warmed up",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "loading, or failed to load"}},
)
async def ready(request: Request) -> JSONResponse:
    runtime: Runtime | None = request.app.state.runtime
    if runtime is not None and runtime.ready:
        return JSONResponse({"status": "ready"})
    error = request.app.state.load_error
    return JSONResponse(
        {"status": "failed" if error else "loading", "detail": error},
        status_code=503,
        headers={"Retry-After": "5"},
    )


# --------------------------------------------------------------------------------------------
# the web page: static files shipped in the package, open without the API key (they hold no
# secret; the page sends the key with each API call it makes)


@dataclass(frozen=True)
class WebFile:
    body: bytes
    media_type: str
    etag: str


# Explicit types rather than `mimetypes`, whose answer for .js depends on the host's tables.
_WEB_MEDIA_TYPES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}

_WEB_HEADERS = {
    # Revalidate every time (cheap with the ETag), so a new release never mixes with old files.
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # The page loads nothing from elsewhere and shows results as data: URLs.
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'"
    ),
}


@cache  # read once, on the first request: the files are part of the installed release
def web_files() -> dict[str, WebFile]:
    folder = resources.files("service") / "web"
    files = {}
    for name, media_type in _WEB_MEDIA_TYPES.items():
        body = (folder / name).read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        files[name] = WebFile(body, media_type, etag)
    return files


def _web_response(request: Request, name: str) -> Response:
    file = web_files()[name]
    headers = {**_WEB_HEADERS, "ETag": file.etag}
    if file.etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(file.body, media_type=file.media_type, headers=headers)


web = APIRouter(include_in_schema=False)


@web.api_route("/", methods=["GET", "HEAD"])
async def page(request: Request) -> Response:
    return _web_response(request, "index.html")


@web.api_route("/static/{name}", methods=["GET", "HEAD"])
async def static(request: Request, name: str) -> Response:
    if name == "index.html" or name not in _WEB_MEDIA_TYPES:
        raise HTTPException(404, f"no static file {name!r}")
    return _web_response(request, name)


# --------------------------------------------------------------------------------------------
# the API's documentation: behind the API key, when one is set, unless VAEGAN_PROTECT_DOCS=false


async def require_api_key_for_docs(request: Request) -> None:
    if request.app.state.settings.protect_docs:
        await require_api_key(request)


docs = APIRouter(include_in_schema=False, dependencies=[Depends(require_api_key_for_docs)])


@docs.get("/openapi.json")
async def openapi(request: Request) -> JSONResponse:
    return JSONResponse(request.app.openapi())


@docs.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{request.app.title} - docs")


@docs.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    return get_redoc_html(openapi_url="/openapi.json", title=f"{request.app.title} - ReDoc")


# --------------------------------------------------------------------------------------------
# errors


_IMAGE_STATUS: dict[type[ImageError], int] = {
    EmptyImageError: 400,
    UnsupportedImageError: 415,
    CorruptImageError: 400,
    ImageTooLargeError: 413,
    ImageDimensionsError: 422,
}


def _install_error_handlers(app: FastAPI) -> None:
    # Messages may quote what was sent: cut them, so that no refusal is bigger than a few KB.
    @app.exception_handler(RequestError)
    async def request_error(_: Request, exc: RequestError) -> JSONResponse:
        return JSONResponse({"detail": _short(str(exc), 2000)}, status_code=exc.status)

    @app.exception_handler(ImageError)
    async def image_error(_: Request, exc: ImageError) -> JSONResponse:
        status = next((s for t, s in _IMAGE_STATUS.items() if isinstance(exc, t)), 400)
        return JSONResponse({"detail": _short(str(exc), 2000)}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own answer lists every problem with the input it found, however many.
        return JSONResponse({"detail": _problems(exc)}, status_code=422)

    @app.exception_handler(QueueFullError)
    async def queue_full(_: Request, exc: QueueFullError) -> JSONResponse:
        return JSONResponse(
            {"detail": f"the server is busy: {exc}; retry shortly"},
            status_code=503,
            headers={"Retry-After": "1"},
        )

    @app.exception_handler(BatcherClosedError)
    async def closing(_: Request, exc: BatcherClosedError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": "5"})

    @app.exception_handler(TimeoutError)
    async def timed_out(request: Request, _: TimeoutError) -> JSONResponse:
        limit = request.app.state.settings.request_timeout_s
        return JSONResponse(
            {"detail": f"the request took longer than the {limit:g} s limit"}, status_code=504
        )


# --------------------------------------------------------------------------------------------
# the app


def create_app(settings: ServiceSettings, checkpoint: Checkpoint | None = None) -> FastAPI:
    """The service for `settings`; a checkpoint already loaded (by the CLI) is used as is."""
    metrics = ServiceMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loader = asyncio.create_task(_load(app, settings, checkpoint, metrics))
        try:
            yield
        finally:
            loader.cancel()
            runtime: Runtime | None = app.state.runtime
            if runtime is not None:
                await runtime.close()

    app = FastAPI(
        title="vaegan",
        summary="A VAE-GAN (Larsen et al. 2016): encode, decode, sample and edit faces.",
        # The installed package's, as checkpoints record it.
        version=software_versions()["vaegan"],
        lifespan=lifespan,
        # Served by the `docs` router instead, so that they can require the API key.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        # Starlette builds the redirect's Location from the Host header, which anyone can set.
        redirect_slashes=False,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.runtime = None
    app.state.load_error = None
    app.include_router(health)
    app.include_router(web)
    app.include_router(docs)
    app.include_router(router)
    _install_error_handlers(app)
    app.add_middleware(DisconnectMiddleware)  # inside RequestMiddleware, which logs its 499s
    app.add_middleware(
        RequestMiddleware,
        metrics=metrics,
        max_body_bytes=settings.max_upload_bytes,
        max_json_bytes=settings.max_json_bytes,
    )
    return app


async def _load(
    app: FastAPI, settings: ServiceSettings, checkpoint: Checkpoint | None, metrics: ServiceMetrics
) -> None:
    """Load, place and warm up the model in the background: /health/live answers meanwhile."""
    try:
        if checkpoint is None:
            checkpoint = await asyncio.to_thread(load_checkpoint, settings.checkpoint)
        predictor = Predictor(
            checkpoint, select_device(settings.device), half=settings.half_precision
        )
        runtime = Runtime(settings, predictor, metrics)
        await runtime.start()
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        app.state.load_error = str(exc)
        log.error("the model could not be loaded: %s", exc)
        return
    metrics.model_info.info(
        {
            "sha256": checkpoint.sha256,
            "device": str(predictor.device),
            "image_size": str(checkpoint.config.image_size),
            "latent_dim": str(checkpoint.config.latent_dim),
            "step": str(checkpoint.header.step),
        }
    )
    app.state.runtime = runtime
    log.info("model %s ready on %s", checkpoint.path, predictor.device)
