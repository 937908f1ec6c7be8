"""What the routes call: decoding uploads, batched forwards, latent arithmetic, encoding PNGs.

Image decoding and PNG encoding run on a small thread pool (single-threaded torch there, so the
model thread keeps the cores); forwards go through the one micro-batcher. Route handlers stay a
few lines over these methods. How much decoding one request may cost is service/uploads.py's.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from model.codec import (
    ImageHeader,
    ImageLimits,
    encode_png,
    load_image_tensor,
    make_grid,
    read_header,
)
from service.batching import MicroBatcher
from service.errors import NotFoundError, NotSupportedError, RequestError, TooLargeError
from service.metrics import ServiceMetrics
from service.predictor import Operation, Predictor
from service.settings import ServiceSettings
from service.sizing import serving_plan
from service.uploads import (
    TRIM_AFTER_PIXELS,
    decode_all,
    release_free_memory,
    unless_client_gone,
)


@dataclass
class Rendered:
    """Images to send back: one PNG (a single image, or a grid/strip) or a JSON list."""

    images: Tensor  # (N, C, H, W) in [-1, 1]
    latents: Tensor | None = None  # (N, z) where the images have latents
    nrow: int = 8
    extra: dict[str, Any] | None = None


class Runtime:
    def __init__(
        self, settings: ServiceSettings, predictor: Predictor, metrics: ServiceMetrics
    ) -> None:
        self.settings = settings
        self.predictor = predictor
        self.metrics = metrics
        self.limits = ImageLimits(
            max_bytes=settings.max_upload_bytes, max_pixels=settings.max_image_pixels
        )
        # An app made by create_app alone is one process: it sizes its threads as the only
        # worker unless the settings say how many share the cores.
        plan = serving_plan(settings, predictor.device.type, default_workers=1)
        self.pool = ThreadPoolExecutor(
            max_workers=plan.codec_threads,
            thread_name_prefix="vaegan-codec",
            initializer=torch.set_num_threads,
            initargs=(1,),
        )
        self.batcher = MicroBatcher(
            predictor.run,
            max_batch_size=settings.max_batch_size,
            max_delay_s=settings.max_batch_delay_ms / 1000.0,
            max_queue=settings.max_queue,
            metrics=metrics,
            torch_threads=plan.torch_threads,
        )
        self.ready = False

    async def start(self) -> None:
        # Warm up on the model thread itself (kernels and allocator are per thread and shape).
        await self.batcher.on_model_thread(self.predictor.warm_up, self.settings.max_batch_size)
        self.batcher.start()
        self.ready = True

    async def close(self) -> None:
        self.ready = False
        await self.batcher.close()
        self.pool.shutdown(wait=True)

    # -- helpers ----------------------------------------------------------------------------------

    async def _in_pool(self, function: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.pool, function, *args)

    async def load_images(self, uploads: Sequence[bytes]) -> Tensor:
        """Uploaded files to a (N, C, S, S) batch; the codec's refusals propagate as ImageError,
        a client that leaves meanwhile as ClientGoneError."""
        if not uploads:
            raise RequestError("no image was sent")
        if len(uploads) > self.settings.max_images_per_request:
            raise TooLargeError(
                f"{len(uploads)} images sent; the limit is "
                f"{self.settings.max_images_per_request} per request"
            )
        # Refuse before decoding when the queue is already full: decoding is most of the cost.
        self.batcher.check_capacity(len(uploads))
        # Every header is read and the request's pixels counted before any pixel is decoded.
        headers = await unless_client_gone(self._in_pool(self._read_headers, uploads))
        pixels = sum(header.pixels for header in headers)
        budget = self.settings.max_request_pixels
        if pixels > budget:
            raise TooLargeError(
                f"the images sent hold {pixels:,} pixels together; the limit is {budget:,} "
                "pixels per request"
            )
        with self.batcher.expecting():
            tensors = await decode_all(
                self.pool, self._decode, uploads, headers, self.limits.max_pixels
            )
        return torch.stack(tensors)

    def _read_headers(self, uploads: Sequence[bytes]) -> list[ImageHeader]:
        return [read_header(data, self.limits) for data in uploads]

    def _decode(self, data: bytes, header: ImageHeader) -> Tensor:
        try:
            return load_image_tensor(data, self.predictor.preprocessing, self.limits)
        finally:
            if header.pixels >= TRIM_AFTER_PIXELS:
                release_free_memory()

    async def _decoded_then(
        self, operation: Operation, uploads: Sequence[bytes]
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        """Decode `uploads` and run `operation` on them, within one request timeout."""
        async with asyncio.timeout(self.settings.request_timeout_s):
            images = await self.load_images(uploads)
            return images, await self.batcher.submit(operation, images)

    async def forward(self, operation: Operation, rows: Tensor) -> tuple[Tensor, ...]:
        return await asyncio.wait_for(
            self.batcher.submit(operation, rows), self.settings.request_timeout_s
        )

    def latents_from(self, values: Sequence[Sequence[float]]) -> Tensor:
        dim = self.predictor.latent_dim
        if not values:
            raise RequestError("'latents' is empty; send at least one latent vector")
        if len(values) > self.settings.max_samples:
            raise TooLargeError(
                f"{len(values)} latents sent; the limit is {self.settings.max_samples}"
            )
        for index, row in enumerate(values):
            if len(row) != dim:
                raise RequestError(
                    f"latent {index} has {len(row)} values; this model's latents have {dim}"
                )
            if not all(math.isfinite(v) for v in row):
                raise RequestError(f"latent {index} contains NaN or infinite values")
        latents = torch.tensor(values, dtype=torch.float32)
        # Finite doubles past float32's range become infinities here, and infinities cannot be
        # answered as JSON.
        overflowed = (~torch.isfinite(latents)).any(dim=1).nonzero()
        if len(overflowed):
            raise RequestError(
                f"latent {int(overflowed[0])} has values beyond the float32 range (about ±3.4e38)"
            )
        return latents

    def attribute_direction(self, names: Sequence[str], strengths: Sequence[float]) -> Tensor:
        """sum_i strength_i * vector(name_i); unknown names are a 422 listing the known ones."""
        known = self.predictor.attributes
        if not known:
            raise NotFoundError("this model has no attribute vectors")
        unknown = [name for name in names if name not in known]
        if unknown:
            raise RequestError(
                f"unknown attribute {', '.join(map(repr, unknown))}; this model knows: "
                f"{', '.join(known)}"
            )
        direction = torch.zeros(self.predictor.latent_dim)
        for name, strength in zip(names, strengths, strict=True):
            direction += strength * known[name]
        return direction

    def check_strengths(self, strengths: Sequence[float]) -> None:
        limit = self.settings.max_strength
        if len(strengths) > self.settings.max_strengths:
            raise RequestError(
                f"{len(strengths)} strengths sent; the limit is {self.settings.max_strengths}"
            )
        for value in strengths:
            if not math.isfinite(value) or abs(value) > limit:
                raise RequestError(f"strength {value} is outside [-{limit:g}, {limit:g}]")

    # -- operations -------------------------------------------------------------------------------

    async def encode(self, uploads: Sequence[bytes]) -> tuple[Tensor, Tensor]:
        _, (mu, logvar) = await self._decoded_then("encode", uploads)
        return mu, logvar

    async def decode(self, latents: Tensor) -> Tensor:
        (images,) = await self.forward("decode", latents)
        return images

    async def reconstruct(self, upload: bytes) -> Rendered:
        _, (images, mu) = await self._decoded_then("reconstruct", [upload])
        return Rendered(images, mu)

    async def sample(self, n: int, seed: int) -> Rendered:
        if not 1 <= n <= self.settings.max_samples:
            raise RequestError(f"n must be between 1 and {self.settings.max_samples}, got {n}")
        generator = torch.Generator().manual_seed(seed)
        latents = torch.randn(n, self.predictor.latent_dim, generator=generator)
        return Rendered(await self.decode(latents), latents, extra={"seed": seed})

    async def latent_of(self, upload: bytes | None, latent: Sequence[float] | None) -> Tensor:
        if (upload is None) == (latent is None):
            raise RequestError("send either an image or a latent, not both or neither")
        if latent is not None:
            return self.latents_from([latent])
        mu, _ = await self.encode([upload])  # type: ignore[list-item]
        return mu

    def default_strength(self, name: str) -> float:
        """The strength an edit of `name` uses when the request gives none (see
        `Checkpoint.default_edit_strength`), never above the service's `max_strength`."""
        checkpoint = self.predictor.checkpoint
        return checkpoint.default_edit_strength(name, at_most=self.settings.max_strength)[0]

    def signed_attribute(self, name: str) -> tuple[float, str]:
        """The sign and name of a requested attribute: a leading - removes it ("-Eyeglasses"
        -> (-1, "Eyeglasses")), a + or none adds it. A name the model knows as written is taken
        as written."""
        if name in self.predictor.attributes:
            return 1.0, name
        if name[:1] in ("+", "-"):
            return (-1.0 if name[0] == "-" else 1.0), name[1:].strip()
        return 1.0, name

    async def attribute_edit(
        self,
        z: Tensor,
        names: Sequence[str],
        strengths: Sequence[float] | None,
        strip: Sequence[float] | None,
    ) -> Rendered:
        """One image with every named attribute applied, or a strip over `strip` strengths."""
        if not names:
            raise RequestError("name at least one attribute")
        signs, names = zip(*(self.signed_attribute(name) for name in names), strict=True)
        if strip is not None:
            if not strip:
                raise RequestError("'strengths' is empty; send at least one strength")
            self.check_strengths(strip)
            direction = self.attribute_direction(names, signs)
            latents = z + torch.tensor(strip).unsqueeze(1) * direction  # (len(strip), z)
            return Rendered(
                await self.decode(latents),
                latents,
                nrow=len(strip),
                extra={"strengths": list(strip)},
            )
        if not strengths:
            self.attribute_direction(names, signs)  # unknown names are refused before defaults
            strengths = [self.default_strength(name) for name in names]
        strengths = list(strengths)
        if len(strengths) == 1 and len(names) > 1:
            strengths *= len(names)
        if len(strengths) != len(names):
            raise RequestError(
                f"{len(names)} attributes but {len(strengths)} strengths; send one strength, "
                "or one per attribute"
            )
        self.check_strengths(strengths)
        strengths = [sign * strength for sign, strength in zip(signs, strengths, strict=True)]
        latents = z + self.attribute_direction(names, strengths)
        return Rendered(await self.decode(latents), latents, extra={"strengths": strengths})

    async def interpolate(self, z_a: Tensor, z_b: Tensor, steps: int) -> Rendered:
        limit = self.settings.max_interpolation_steps
        if not 2 <= steps <= limit:
            raise RequestError(f"steps must be between 2 and {limit}, got {steps}")
        weights = torch.linspace(0.0, 1.0, steps).unsqueeze(1)  # (steps, 1)
        latents = (1 - weights) * z_a + weights * z_b  # (steps, z)
        return Rendered(await self.decode(latents), latents, nrow=steps)

    @property
    def similarity_refusal(self) -> str | None:
        """Why this checkpoint cannot answer /similarity, or None when it can.

        The learned metric is Dis_l of a discriminator trained on images: a VAE-GAN's (or a
        GAN's). A plain VAE never trains its D, and ALI's D judges (image, latent) pairs.
        """
        # Checkpoints guarantee that "ali" and the joint discriminator go together.
        if not self.predictor.model.has_similarity_metric:
            return (
                "the learned similarity (Dis_l) needs a VAE-GAN checkpoint; this one was trained "
                "with ALI, whose joint discriminator judges (image, latent) pairs, not images"
            )
        if self.predictor.checkpoint.header.objective == "vae":
            return (
                "the learned similarity (Dis_l) needs a VAE-GAN checkpoint; this one is a plain "
                "VAE, whose discriminator was never trained"
            )
        return None

    async def similarity(self, upload_a: bytes, upload_b: bytes) -> dict[str, float]:
        refusal = self.similarity_refusal
        if refusal is not None:
            raise NotSupportedError(refusal)
        images, (features,) = await self._decoded_then("features", [upload_a, upload_b])
        return {
            "learned_distance": float((features[0] - features[1]).pow(2).mean()),
            "pixel_mse": float((images[0] - images[1]).pow(2).mean()),
        }

    # -- output -----------------------------------------------------------------------------------

    async def png(self, rendered: Rendered) -> bytes:
        images = rendered.images
        image = images[0] if len(images) == 1 else make_grid(images, nrow=rendered.nrow)
        data: bytes = await self._in_pool(encode_png, image)
        return data

    async def pngs(self, rendered: Rendered) -> list[bytes]:
        return list(
            await asyncio.gather(*(self._in_pool(encode_png, img) for img in rendered.images))
        )
