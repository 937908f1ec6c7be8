"""A small Python client for the vaegan service, sync (`VAEGANClient`) and async
(`AsyncVAEGANClient`).

    with VAEGANClient("http://127.0.0.1:8000", api_key="...") as client:
        face = client.reconstruct("face.jpg")            # a PIL image
        enc = client.encode("a.jpg", "b.jpg")             # numpy mu, logvar (2, z)
        smiling = client.attribute_edit("a.jpg", attributes="Smiling", strength=1.5)

Each endpoint is described once, as a `_Call`: the request to send and how to read the answer.
The two clients only differ in how they send it, so the request shapes cannot drift apart.
"""

from __future__ import annotations

import base64
import io
import mimetypes
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

import httpx
import numpy as np
import numpy.typing as npt
from PIL import Image

__all__ = [
    "AsyncVAEGANClient",
    "Encoding",
    "ImageInput",
    "LatentInput",
    "SampleResult",
    "VAEGANClient",
    "VAEGANError",
]

DEFAULT_URL = "http://127.0.0.1:8000"

ImageInput = bytes | bytearray | str | os.PathLike[str] | Image.Image
"""Image file bytes, a path to an image file, or a PIL image (sent as PNG)."""

LatentInput = Sequence[float] | npt.ArrayLike
Latents = Sequence[Sequence[float]] | npt.ArrayLike

T = TypeVar("T")


class VAEGANError(RuntimeError):
    """The service answered with an error status; `detail` is its `{"detail": ...}` value."""

    def __init__(self, status_code: int, detail: Any, request_id: str | None = None) -> None:
        suffix = f" (request {request_id})" if request_id else ""
        super().__init__(f"HTTP {status_code}: {detail}{suffix}")
        self.status_code = status_code
        self.detail = detail
        self.request_id = request_id


@dataclass
class SampleResult:
    images: list[Image.Image]
    latents: npt.NDArray[np.float32]  # (n, z)
    seed: int


@dataclass
class Encoding:
    mu: npt.NDArray[np.float32]  # (N, z)
    logvar: npt.NDArray[np.float32]  # (N, z)


# --------------------------------------------------------------------------------------------
# request building and response parsing, shared by both clients


@dataclass
class _Call(Generic[T]):
    """One request (`httpx.Client.build_request` arguments) and the parser of its answer."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    kwargs: dict[str, Any] = field(default_factory=dict)
    # Statuses handed to `parse` instead of raising (the health probes read 503 as "no").
    accept_status: tuple[int, ...] = ()
    # What to return when the server cannot be reached at all; None means raise.
    unreachable: Callable[[], T] | None = None


def _raise_for_status(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        body = response.json()
        detail = body["detail"] if isinstance(body, dict) and "detail" in body else body
    except ValueError:
        detail = response.text or response.reason_phrase
    raise VAEGANError(response.status_code, detail, response.headers.get("x-request-id"))


def _image_bytes(image: ImageInput) -> tuple[str, bytes, str]:
    """(filename, content, content type) of an upload."""
    if isinstance(image, Image.Image):
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return "image.png", buffer.getvalue(), "image/png"
    if isinstance(image, bytes | bytearray):
        data = bytes(image)
        return "image", data, _sniff(data)
    path = Path(image)
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return path.name, path.read_bytes(), content_type


def _sniff(data: bytes) -> str:
    # The server sniffs the bytes itself; this only makes the upload honest in logs and proxies.
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"


def _latent_rows(latents: Latents) -> list[list[float]]:
    array = np.atleast_2d(np.asarray(latents, dtype=np.float64))
    if array.ndim != 2:
        raise ValueError(f"latents must be (N, z), got shape {array.shape}")
    rows: list[list[float]] = array.tolist()
    return rows


def _latent(latent: LatentInput) -> list[float]:
    array = np.asarray(latent, dtype=np.float64)
    if array.ndim == 2 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 1:
        raise ValueError(f"a latent must be one vector (z,), got shape {array.shape}")
    values: list[float] = array.tolist()
    return values


def _floats(values: float | Sequence[float] | None) -> list[float]:
    if values is None:
        return []
    if isinstance(values, int | float):
        return [float(values)]
    return [float(v) for v in values]


def _png(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()  # decode now: the buffer goes away and errors belong to this call
    return image


def _image(response: httpx.Response) -> Image.Image:
    return _png(response.content)


def _json(response: httpx.Response) -> Any:
    return response.json()


def _sample_result(response: httpx.Response) -> SampleResult:
    body = response.json()
    return SampleResult(
        images=[_png(base64.b64decode(item)) for item in body["images"]],
        latents=np.asarray(body["latents"], dtype=np.float32),
        seed=int(body["seed"]),
    )


def _encoding(response: httpx.Response) -> Encoding:
    body = response.json()
    return Encoding(
        mu=np.asarray(body["mu"], dtype=np.float32),
        logvar=np.asarray(body["logvar"], dtype=np.float32),
    )


def _similarity(response: httpx.Response) -> dict[str, float]:
    return {str(k): float(v) for k, v in response.json().items()}


def _attributes(response: httpx.Response) -> list[dict[str, Any]]:
    attributes: list[dict[str, Any]] = response.json()["attributes"]
    return attributes


def _is_ok(response: httpx.Response) -> bool:
    return response.status_code == 200


def _false() -> bool:
    return False


def _text(response: httpx.Response) -> str:
    return response.text


class _Calls:
    """The endpoints as `_Call`s; both clients inherit these and only add the sending."""

    def __init__(self, base_url: str, api_key: str | None) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def _reconstruct(self, image: ImageInput) -> _Call[Image.Image]:
        return _Call("POST", "/reconstruct", _image, {"files": {"image": _image_bytes(image)}})

    def _sample(self, n: int, seed: int | None) -> _Call[Image.Image]:
        return _Call("POST", "/sample", _image, {"params": _sample_params(n, seed)})

    def _sample_images(self, n: int, seed: int | None) -> _Call[SampleResult]:
        return _Call(
            "POST",
            "/sample",
            _sample_result,
            {"params": _sample_params(n, seed), "headers": {"Accept": "application/json"}},
        )

    def _encode(self, images: Sequence[ImageInput]) -> _Call[Encoding]:
        if not images:
            raise ValueError("encode() needs at least one image")
        files = [("image", _image_bytes(image)) for image in images]
        return _Call("POST", "/encode", _encoding, {"files": files})

    def _decode(self, latents: Latents) -> _Call[Image.Image]:
        return _Call("POST", "/decode", _image, {"json": {"latents": _latent_rows(latents)}})

    def _attribute_edit(
        self,
        image: ImageInput | None,
        latent: LatentInput | None,
        attributes: str | Sequence[str],
        strength: float | Sequence[float] | None,
        strengths: Sequence[float] | None,
    ) -> _Call[Image.Image]:
        names = [attributes] if isinstance(attributes, str) else list(attributes)
        single = _floats(strength)
        strip = _floats(strengths) if strengths is not None else None
        if latent is not None and image is None:
            body = {
                "latent": _latent(latent),
                "attribute": names,
                "strength": single or None,
                "strengths": strip,
            }
            return _Call("POST", "/attribute-edit", _image, {"json": body})
        if image is None or latent is not None:
            raise ValueError("give either an image or a latent, not both or neither")
        form: dict[str, Any] = {"attribute": names}
        if single:
            form["strength"] = [repr(v) for v in single]
        if strip:
            form["strengths"] = ",".join(repr(v) for v in strip)
        files = {"image": _image_bytes(image)}
        return _Call("POST", "/attribute-edit", _image, {"files": files, "data": form})

    def _interpolate(
        self,
        image_a: ImageInput | None,
        image_b: ImageInput | None,
        steps: int,
        latent_a: LatentInput | None,
        latent_b: LatentInput | None,
    ) -> _Call[Image.Image]:
        # `is` checks only: numpy arrays compare elementwise.
        any_image = image_a is not None or image_b is not None
        any_latent = latent_a is not None or latent_b is not None
        if latent_a is not None and latent_b is not None and not any_image:
            body = {"latent_a": _latent(latent_a), "latent_b": _latent(latent_b), "steps": steps}
            return _Call("POST", "/interpolate", _image, {"json": body})
        if image_a is None or image_b is None or any_latent:
            raise ValueError("give two images, or two latents (latent_a=, latent_b=), not a mix")
        files = {"image_a": _image_bytes(image_a), "image_b": _image_bytes(image_b)}
        return _Call(
            "POST", "/interpolate", _image, {"files": files, "data": {"steps": str(steps)}}
        )

    def _similarity(self, image_a: ImageInput, image_b: ImageInput) -> _Call[dict[str, float]]:
        files = {"image_a": _image_bytes(image_a), "image_b": _image_bytes(image_b)}
        return _Call("POST", "/similarity", _similarity, {"files": files})

    def _attributes(self) -> _Call[list[dict[str, Any]]]:
        return _Call("GET", "/attributes", _attributes)

    def _model(self) -> _Call[dict[str, Any]]:
        return _Call("GET", "/model", _json)

    def _live(self) -> _Call[bool]:
        return _Call("GET", "/health/live", _is_ok, accept_status=(503,), unreachable=_false)

    def _ready(self) -> _Call[bool]:
        return _Call("GET", "/health/ready", _is_ok, accept_status=(503,), unreachable=_false)

    def _metrics(self) -> _Call[str]:
        return _Call("GET", "/metrics", _text)

    def _build(self, http: httpx.Client | httpx.AsyncClient, call: _Call[Any]) -> httpx.Request:
        kwargs = dict(call.kwargs)
        kwargs["headers"] = {**self._headers(), **kwargs.get("headers", {})}
        return http.build_request(call.method, call.path, **kwargs)


def _sample_params(n: int, seed: int | None) -> dict[str, int]:
    return {"n": n} if seed is None else {"n": n, "seed": seed}


def _limits(limits: httpx.Limits | None) -> dict[str, Any]:
    # Only when given, so httpx's own defaults apply otherwise.
    return {} if limits is None else {"limits": limits}


def _finish(call: _Call[T], response: httpx.Response) -> T:
    if response.status_code not in call.accept_status:
        _raise_for_status(response)
    return call.parse(response)


# --------------------------------------------------------------------------------------------
# the clients


class VAEGANClient(_Calls):
    """Blocking client; use as a context manager or call `close()`.

    `transport` replaces httpx's (a `MockTransport` in tests); `limits` its connection pool.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        api_key: str | None = None,
        timeout: float | httpx.Timeout | None = 60.0,
        transport: httpx.BaseTransport | None = None,
        limits: httpx.Limits | None = None,
    ) -> None:
        super().__init__(base_url, api_key)
        self.http = httpx.Client(
            base_url=self.base_url,
            timeout=timeout,
            transport=transport,
            **_limits(limits),
        )

    def _send(self, call: _Call[T]) -> T:
        try:
            response = self.http.send(self._build(self.http, call))
        except httpx.TransportError:
            if call.unreachable is None:
                raise
            return call.unreachable()
        return _finish(call, response)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def reconstruct(self, image: ImageInput) -> Image.Image:
        """The model's reconstruction of `image`."""
        return self._send(self._reconstruct(image))

    def sample(self, n: int = 16, seed: int | None = None) -> Image.Image:
        """`n` faces from the prior as one grid; the same seed gives the same pixels."""
        return self._send(self._sample(n, seed))

    def sample_images(self, n: int = 16, seed: int | None = None) -> SampleResult:
        """`n` faces from the prior as separate images, with their latents and the seed used."""
        return self._send(self._sample_images(n, seed))

    def encode(self, *images: ImageInput) -> Encoding:
        """q(z|x) of each image: `mu` and `logvar`, shape (N, z)."""
        return self._send(self._encode(images))

    def decode(self, latents: Latents) -> Image.Image:
        """Decode (N, z) latents (a (z,) vector counts as one); a grid when N > 1."""
        return self._send(self._decode(latents))

    def attribute_edit(
        self,
        image: ImageInput | None = None,
        *,
        latent: LatentInput | None = None,
        attributes: str | Sequence[str],
        strength: float | Sequence[float] | None = None,
        strengths: Sequence[float] | None = None,
    ) -> Image.Image:
        """Add (strength > 0) or remove (< 0) attributes; `strengths` gives a strip instead."""
        return self._send(self._attribute_edit(image, latent, attributes, strength, strengths))

    def interpolate(
        self,
        image_a: ImageInput | None = None,
        image_b: ImageInput | None = None,
        steps: int = 8,
        *,
        latent_a: LatentInput | None = None,
        latent_b: LatentInput | None = None,
    ) -> Image.Image:
        """A strip of `steps` faces from a to b (two images, or two latents)."""
        return self._send(self._interpolate(image_a, image_b, steps, latent_a, latent_b))

    def similarity(self, image_a: ImageInput, image_b: ImageInput) -> dict[str, float]:
        """The learned (Dis_l) distance and the pixel MSE between two images."""
        return self._send(self._similarity(image_a, image_b))

    def attributes(self) -> list[dict[str, Any]]:
        return self._send(self._attributes())

    def model(self) -> dict[str, Any]:
        return self._send(self._model())

    def live(self) -> bool:
        return self._send(self._live())

    def ready(self) -> bool:
        return self._send(self._ready())

    def metrics(self) -> str:
        return self._send(self._metrics())


class AsyncVAEGANClient(_Calls):
    """The same methods as `VAEGANClient`, awaitable; use `async with` or `await close()`.

    One client can carry many concurrent requests; past httpx's default pool (100 connections,
    20 kept alive) pass `limits`. httpcore's pool bookkeeping costs O(connections) per request
    (encode/httpx#3215), ~10 ms of CPU each at 64 in flight, so a load generator is cheaper with
    one client per worker. Paths given as images are read synchronously (small files).
    """

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        api_key: str | None = None,
        timeout: float | httpx.Timeout | None = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
        limits: httpx.Limits | None = None,
    ) -> None:
        super().__init__(base_url, api_key)
        self.http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=timeout,
            transport=transport,
            **_limits(limits),
        )

    async def _send(self, call: _Call[T]) -> T:
        try:
            response = await self.http.send(self._build(self.http, call))
        except httpx.TransportError:
            if call.unreachable is None:
                raise
            return call.unreachable()
        return _finish(call, response)

    async def close(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def reconstruct(self, image: ImageInput) -> Image.Image:
        return await self._send(self._reconstruct(image))

    async def sample(self, n: int = 16, seed: int | None = None) -> Image.Image:
        return await self._send(self._sample(n, seed))

    async def sample_images(self, n: int = 16, seed: int | None = None) -> SampleResult:
        return await self._send(self._sample_images(n, seed))

    async def encode(self, *images: ImageInput) -> Encoding:
        return await self._send(self._encode(images))

    async def decode(self, latents: Latents) -> Image.Image:
        return await self._send(self._decode(latents))

    async def attribute_edit(
        self,
        image: ImageInput | None = None,
        *,
        latent: LatentInput | None = None,
        attributes: str | Sequence[str],
        strength: float | Sequence[float] | None = None,
        strengths: Sequence[float] | None = None,
    ) -> Image.Image:
        return await self._send(
            self._attribute_edit(image, latent, attributes, strength, strengths)
        )

    async def interpolate(
        self,
        image_a: ImageInput | None = None,
        image_b: ImageInput | None = None,
        steps: int = 8,
        *,
        latent_a: LatentInput | None = None,
        latent_b: LatentInput | None = None,
    ) -> Image.Image:
        return await self._send(self._interpolate(image_a, image_b, steps, latent_a, latent_b))

    async def similarity(self, image_a: ImageInput, image_b: ImageInput) -> dict[str, float]:
        return await self._send(self._similarity(image_a, image_b))

    async def attributes(self) -> list[dict[str, Any]]:
        return await self._send(self._attributes())

    async def model(self) -> dict[str, Any]:
        return await self._send(self._model())

    async def live(self) -> bool:
        return await self._send(self._live())

    async def ready(self) -> bool:
        return await self._send(self._ready())

    async def metrics(self) -> str:
        return await self._send(self._metrics())
