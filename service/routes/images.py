"""The model's operations: faces in (uploads or latents), faces or latents out."""

from __future__ import annotations

import base64
import secrets
from typing import Annotated, Any

from fastapi import APIRouter, File, Query, Request, UploadFile
from fastapi.responses import JSONResponse, Response

from service.deps import (
    API_DEPENDENCIES,
    RuntimeDep,
    at_most,
    floats,
    json_body,
    one_integer,
    read_form,
    single_files,
    split,
    upload,
)
from service.errors import RequestError, error_responses
from service.middleware import is_json
from service.runtime import Rendered, Runtime
from service.schemas import (
    EDIT_FORM,
    IMAGE_ANSWER,
    INTERPOLATE_FORM,
    SAMPLE_ANSWER,
    DecodeBody,
    EditBody,
    Encoded,
    InterpolateBody,
    Similarity,
    either_body,
    image_parts,
    json_only,
)

router = APIRouter(tags=["images"], dependencies=API_DEPENDENCIES, responses=error_responses(401))

# Statuses of the routes that decode uploads and run the model.
_UPLOAD_ERRORS = error_responses(400, 413, 415, 422, 503, 504)


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


@router.post(
    "/reconstruct",
    summary="Reconstruct a face",
    response_class=Response,
    responses=IMAGE_ANSWER | _UPLOAD_ERRORS,
    openapi_extra=image_parts("image"),
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
    responses=SAMPLE_ANSWER | error_responses(422, 503, 504),
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
    openapi_extra=image_parts("image"),
)
async def encode(runtime: RuntimeDep, image: Annotated[list[UploadFile], File()]) -> dict[str, Any]:
    mu, logvar = await runtime.encode([await part.read() for part in image])
    return {"mu": mu.tolist(), "logvar": logvar.tolist()}


@router.post(
    "/decode",
    summary="Decode latents to images",
    response_class=Response,
    responses=IMAGE_ANSWER | error_responses(400, 413, 415, 422, 503, 504),
    openapi_extra=json_only(DecodeBody),
)
async def decode(request: Request, runtime: RuntimeDep) -> Response:
    body = await json_body(request, runtime, DecodeBody)
    latents = runtime.latents_from(body.latents)
    return await respond(request, runtime, Rendered(await runtime.decode(latents), latents))


@router.post(
    "/attribute-edit",
    summary="Add or remove attributes (+Smiling, -Eyeglasses)",
    response_class=Response,
    responses=IMAGE_ANSWER | _UPLOAD_ERRORS | error_responses(404),
    openapi_extra=either_body(EDIT_FORM, EditBody),
)
async def attribute_edit(request: Request, runtime: RuntimeDep) -> Response:
    # Each attribute costs a vector sum on the event loop: as many as strengths at most.
    limit = runtime.settings.max_strengths
    if is_json(request.headers):
        body = await json_body(request, runtime, EditBody)
        _not_both_strengths(body.strength is not None, body.strengths is not None)
        names, strengths, strip = _as_list(body.attribute), _as_list(body.strength), body.strengths
        at_most(len(names), "attributes", limit)
        z = await runtime.latent_of(None, body.latent)
    else:
        form = await read_form(request)
        _not_both_strengths(bool(form.getlist("strength")), bool(form.getlist("strengths")))
        parts = split(form.getlist("attribute"), "attributes", limit)
        names = [name.strip() for name in parts if name.strip()]
        strengths = floats(form.getlist("strength"), "strength", limit)
        strip = floats(form.getlist("strengths"), "strengths", limit) or None
        z = await runtime.latent_of(await upload(form, "image"), None)
    rendered = await runtime.attribute_edit(z, names, strengths or None, strip)
    return await respond(request, runtime, rendered)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _not_both_strengths(strength: bool, strengths: bool) -> None:
    if strength and strengths:
        raise RequestError("send 'strength' (one image) or 'strengths' (a strip), not both")


@router.post(
    "/interpolate",
    summary="Walk the latent space between two faces",
    response_class=Response,
    responses=IMAGE_ANSWER | _UPLOAD_ERRORS,
    openapi_extra=either_body(INTERPOLATE_FORM, InterpolateBody),
)
async def interpolate(request: Request, runtime: RuntimeDep) -> Response:
    if is_json(request.headers):
        body = await json_body(request, runtime, InterpolateBody)
        z_a, z_b = runtime.latents_from([body.latent_a, body.latent_b])
        steps = body.steps
    else:
        form = await read_form(request)
        mu, _ = await runtime.encode([await upload(form, "image_a"), await upload(form, "image_b")])
        z_a, z_b = mu[0], mu[1]
        steps = one_integer(form.getlist("steps"), "steps", default=8)
    return await respond(request, runtime, await runtime.interpolate(z_a, z_b, steps))


@router.post(
    "/similarity",
    summary="The learned (Dis_l) and the pixel distance",
    description="409 when the checkpoint has no learned metric: ALI, or a plain VAE.",
    response_model=Similarity,
    responses={**_UPLOAD_ERRORS, **error_responses(409)},
    openapi_extra=image_parts("image_a", "image_b"),
    dependencies=[single_files("image_a", "image_b")],
)
async def similarity(
    runtime: RuntimeDep,
    image_a: Annotated[UploadFile, File()],
    image_b: Annotated[UploadFile, File()],
) -> dict[str, float]:
    return await runtime.similarity(await image_a.read(), await image_b.read())
