"""What goes over the wire: request and response bodies, and what the OpenAPI schema says of them.

The routes that read their own bodies (see `service.deps.json_body`) describe them here with
`openapi_extra`, so the schema promises exactly what they accept; clients and the schema fuzzer
in tests/service/test_fuzz.py hold the service to it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

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
# response bodies


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


class Batching(BaseModel):
    max_batch_size: int
    max_batch_delay_ms: float


class ModelInfo(BaseModel):
    """GET /model: the served checkpoint's header, and where and how it is served."""

    format_version: int
    config: dict[str, Any] = Field(description="the networks' shape (model.config.VAEGANConfig)")
    preset: str | None = Field(
        description="the named preset the networks were built from (paper64, medium64, ...); "
        "null for a custom network"
    )
    objective: str = Field(description="what the weights were trained for: vaegan, vae, gan or ali")
    preprocessing: dict[str, Any]
    step: int = Field(description="training steps behind the weights")
    dataset: dict[str, Any]
    recipe: dict[str, Any] = Field(
        description="every training setting, as recorded (the command line among them)"
    )
    recipe_name: str | None = Field(
        description="the named recipe the training was closest to and what differed "
        '("authors", "authors + gamma=0.001"); null when the checkpoint does not record it'
    )
    evaluation: dict[str, Any]
    attributes: list[dict[str, Any]] = Field(
        description="name, example counts and norm of each attribute vector"
    )
    created_at: str
    software: dict[str, Any]
    path: str
    sha256: str
    device: str
    dtype: str
    batching: Batching


class Readiness(BaseModel):
    status: Literal["ready", "loading", "failed"]
    detail: str | None = None


IMAGE_ANSWER: dict[int | str, dict[str, Any]] = {
    200: {
        "model": ImagesBody,
        "description": "one PNG (an image, or a grid or strip of them); with "
        "`Accept: application/json`, base64 PNGs and their latents",
        "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
    }
}

SAMPLE_ANSWER: dict[int | str, dict[str, Any]] = {
    200: {
        **IMAGE_ANSWER[200],
        "headers": {"X-Seed": {"description": "the seed used", "schema": {"type": "integer"}}},
    }
}


# --------------------------------------------------------------------------------------------
# multipart forms and bodies the routes read themselves


# Any format Pillow reads is accepted (the bytes are sniffed; the part's own type is ignored).
_ANY_IMAGE = {"contentType": "image/*"}
_UPLOAD = {"type": "string", "format": "binary"}
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


def image_parts(*names: str) -> dict[str, Any]:
    """openapi_extra for a FastAPI file route: which multipart parts are images."""
    encoding = dict.fromkeys(names, _ANY_IMAGE)
    return {"requestBody": {"content": {"multipart/form-data": {"encoding": encoding}}}}


def json_only(body: type[BaseModel]) -> dict[str, Any]:
    """openapi_extra for a route that reads a JSON body itself."""
    json_body = {"application/json": {"schema": body.model_json_schema()}}
    return {"requestBody": {"required": True, "content": json_body}}


def either_body(form: dict[str, Any], body: type[BaseModel]) -> dict[str, Any]:
    """openapi_extra for a route that reads an upload form or a JSON body itself."""
    images = [name for name, schema in form["properties"].items() if schema == _UPLOAD]
    extra = json_only(body)
    extra["requestBody"]["content"]["multipart/form-data"] = {
        "schema": form,
        "encoding": dict.fromkeys(images, _ANY_IMAGE),
    }
    return extra
