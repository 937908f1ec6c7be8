"""Image codec: the one place where bytes become model inputs and model outputs become PNGs.

Training and the service both call `load_image_tensor`, so a face is preprocessed exactly the same
way when the model learns from it and when a user uploads it. The preprocessing follows the
authors' `dataset/celeba.py`: crop CelebA's aligned 178x218 images to rows 40:188, cols 15:163,
smooth with a Gaussian of sigma sqrt(scale) / 2 against moire, bicubic resize, scale to [-1, 1].
"""

from __future__ import annotations

import functools
import io
import math
import reprlib
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from model.config import is_whole_number

# CelebA's aligned images and the authors' crop box within them (rows top:bottom, cols left:right).
CELEBA_ALIGNED_SIZE = (178, 218)  # (width, height)
CELEBA_CROP = (40, 188, 15, 163)


class ImageError(ValueError):
    """Base of every refusal; the message is written for the person who sent the image."""


class EmptyImageError(ImageError):
    """No bytes at all."""


class UnsupportedImageError(ImageError):
    """Bytes that no allowed image format recognises (a client would get 415)."""


class CorruptImageError(ImageError):
    """A recognised format whose data is truncated or damaged."""


class ImageTooLargeError(ImageError):
    """More bytes or pixels than the limits allow (a client would get 413)."""


class ImageDimensionsError(ImageError):
    """Dimensions no sensible photo has: tiny, or an extreme aspect ratio."""


@dataclass(frozen=True)
class ImageLimits:
    """What an incoming image may be. Pixels are checked from the header, before decoding."""

    max_bytes: int = 32 * 1024 * 1024
    max_pixels: int = 40_000_000
    min_side: int = 8
    max_aspect_ratio: float = 10.0


DEFAULT_LIMITS = ImageLimits()

# EPS is decoded by calling Ghostscript, a large attack surface for an upload path; nobody sends
# a face as PostScript.
_REFUSED_FORMATS = frozenset({"EPS"})


def _allowed_formats() -> list[str]:
    Image.init()
    return sorted(set(Image.ID) - _REFUSED_FORMATS)


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes a model input; stored in every checkpoint."""

    image_size: int = 64
    channels: int = 3
    # Applied to images of exactly CelebA's aligned size; everything else gets a centre square.
    celeba_crop: tuple[int, int, int, int] | None = CELEBA_CROP
    blur: bool = True
    value_range: tuple[float, float] = field(default=(-1.0, 1.0))
    # Transparent pixels are composited over this colour.
    alpha_background: tuple[int, int, int] = (255, 255, 255)

    def __post_init__(self) -> None:
        if self.celeba_crop is not None:
            object.__setattr__(self, "celeba_crop", tuple(self.celeba_crop))
        object.__setattr__(self, "value_range", tuple(self.value_range))
        object.__setattr__(self, "alpha_background", tuple(self.alpha_background))
        # Checkpoints bring these from JSON, where true passes for 1 and 64.0 for 64 in the
        # comparisons below and then breaks the first request.
        for name in ("image_size", "channels"):
            value = getattr(self, name)
            if not is_whole_number(value):
                raise ValueError(f"{name} must be a whole number, got {reprlib.repr(value)}")
        if not isinstance(self.blur, bool):
            raise ValueError(f"blur must be true or false, got {reprlib.repr(self.blur)}")
        crop = self.celeba_crop
        if crop is not None and not (len(crop) == 4 and all(map(is_whole_number, crop))):
            raise ValueError(f"celeba_crop must be 4 whole numbers, got {reprlib.repr(crop)}")
        background = self.alpha_background
        if not (
            len(background) == 3 and all(is_whole_number(c) and 0 <= c <= 255 for c in background)
        ):
            raise ValueError(
                f"alpha_background must be 3 whole numbers 0-255, got {reprlib.repr(background)}"
            )
        if self.image_size < 8:
            raise ValueError(f"image_size must be at least 8, got {self.image_size}")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        if self.value_range != (-1.0, 1.0):
            raise ValueError("only the value range (-1, 1) is supported (the decoder ends in tanh)")
        if self.celeba_crop is not None:
            top, bottom, left, right = self.celeba_crop
            if not (0 <= top < bottom <= 218 and 0 <= left < right <= 178):
                raise ValueError(f"celeba_crop {self.celeba_crop} does not fit in 178x218")

    @property
    def reference_side(self) -> int:
        """Side of the square the authors' blur and resize were designed for (148 for 64)."""
        top, bottom, _, _ = self.celeba_crop or CELEBA_CROP
        return round(self.image_size * (bottom - top) / 64)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessing:
        known = {"image_size", "channels", "celeba_crop", "blur", "value_range", "alpha_background"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown preprocessing keys: {', '.join(unknown)}")
        return cls(**data)


# --------------------------------------------------------------------------------------------
# bytes -> PIL image (RGB, upright)


def open_image(data: bytes, limits: ImageLimits = DEFAULT_LIMITS) -> Image.Image:
    """Decode any allowed image format to an upright RGB image, or raise an `ImageError`.

    GIFs and other multi-frame files give their first frame; EXIF orientation is applied.
    """
    if not data:
        raise EmptyImageError("the image is empty (0 bytes)")
    if len(data) > limits.max_bytes:
        raise ImageTooLargeError(
            f"the image is {len(data):,} bytes; the limit is {limits.max_bytes:,} bytes"
        )
    try:
        with warnings.catch_warnings():
            # Our own pixel limit below is the one that applies; Pillow's warning would be noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=_allowed_formats())
    except UnidentifiedImageError:
        raise UnsupportedImageError(
            "the data is not an image in a supported format "
            "(send PNG, JPEG, WebP, GIF, BMP or TIFF)"
        ) from None
    except Image.DecompressionBombError as exc:
        # Pillow's own guard fires at open for images far beyond any sane limit.
        raise ImageTooLargeError(
            f"the image has too many pixels (the limit is {limits.max_pixels:,} pixels): {exc}"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise CorruptImageError(f"the image header is truncated or damaged ({exc})") from None

    _check_dimensions(image.size, limits)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image.load()
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(
            f"the image has too many pixels (the limit is {limits.max_pixels:,} pixels): {exc}"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError) as exc:
        raise CorruptImageError(
            f"the {image.format or 'image'} data is truncated or damaged ({exc})"
        ) from None
    if image.format == "PNG":
        _verify_png(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns about odd EXIF it then ignores
            upright = ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError, KeyError, TypeError):
        upright = image  # unreadable EXIF: keep the pixels as stored rather than refuse the image
    return to_rgb(upright if upright is not None else image)


def _verify_png(data: bytes) -> None:
    """Check every chunk's CRC through IEND: Pillow decodes a PNG cut after its pixel data
    without complaint, but a cut file is a damaged upload and is refused as one."""
    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as probe:
            probe.verify()
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise CorruptImageError(f"the PNG data is truncated or damaged ({exc})") from None
    # verify() tolerates a cut inside the final IEND chunk; the complete chunk is 12 fixed bytes.
    # Searched in the whole upload (a fast memchr-based scan): files with data appended after
    # IEND, such as PNG/ZIP polyglots, are valid PNGs and are read as the picture they show.
    if _PNG_END not in data:
        raise CorruptImageError("the PNG data is truncated (it has no complete IEND chunk)")


_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def _check_dimensions(size: tuple[int, int], limits: ImageLimits) -> None:
    width, height = size
    if width * height > limits.max_pixels:
        raise ImageTooLargeError(
            f"the image is {width}x{height} = {width * height:,} pixels; "
            f"the limit is {limits.max_pixels:,} pixels"
        )
    if min(width, height) < limits.min_side:
        raise ImageDimensionsError(
            f"the image is {width}x{height}; both sides must be at least {limits.min_side} pixels"
        )
    if max(width, height) / min(width, height) > limits.max_aspect_ratio:
        raise ImageDimensionsError(
            f"the image is {width}x{height}, an aspect ratio over {limits.max_aspect_ratio:g}:1; "
            "crop it closer to the face first"
        )


def to_rgb(image: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Any Pillow mode to 8-bit RGB: alpha composited over `background`, high bit depths scaled."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I", "F") or mode.startswith("I;16"):
        return _high_depth_to_rgb(image)
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    if has_alpha:
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*background, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    try:
        return image.convert("RGB")
    except (ValueError, OSError) as exc:
        raise UnsupportedImageError(f"images in Pillow mode {mode!r} are not supported") from exc


def _high_depth_to_rgb(image: Image.Image) -> Image.Image:
    """16-bit and 32-bit greyscale to 8 bits by the range the mode implies, not by clipping."""
    values = np.asarray(image, dtype=np.float64)
    if image.mode.startswith("I;16"):
        full_scale = 65535.0
    elif image.mode == "I":
        full_scale = 65535.0 if values.max(initial=0) > 255 else 255.0
    else:  # "F": floats in [0, 1] are common, otherwise assume 0..255
        full_scale = 1.0 if values.max(initial=0) <= 1.0 else 255.0
    grey = np.clip(np.rint(values * (255.0 / full_scale)), 0, 255).astype(np.uint8)
    return Image.fromarray(grey).convert("RGB")


# --------------------------------------------------------------------------------------------
# PIL image -> model input


def crop_square(image: Image.Image, preprocessing: Preprocessing) -> Image.Image:
    """The authors' crop on CelebA-aligned images, a centre square on anything else."""
    if preprocessing.celeba_crop is not None and image.size == CELEBA_ALIGNED_SIZE:
        top, bottom, left, right = preprocessing.celeba_crop
        return image.crop((left, top, right, bottom))
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return image.crop((left, top, left + side, top + side))


def preprocess(image: Image.Image, preprocessing: Preprocessing) -> Tensor:
    """An RGB PIL image to a (C, S, S) float32 tensor in [-1, 1]."""
    square = crop_square(image, preprocessing)
    # Very large photos are first shrunk (antialiased) to the side the authors' blur was tuned
    # for, so a 4000-pixel upload looks to the model like a CelebA crop, not an aliased one.
    reference = preprocessing.reference_side
    if square.width > reference:
        square = square.resize((reference, reference), Image.Resampling.BICUBIC)
    if preprocessing.channels == 1:
        square = square.convert("L")
    pixels = torch.from_numpy(np.array(square, dtype=np.uint8, copy=True))
    x = pixels.view(square.height, square.width, -1).permute(2, 0, 1).to(torch.float32)
    x = x.div_(255.0)  # (C, side, side) in [0, 1]
    resample = resampling_matrix(square.width, preprocessing.image_size, preprocessing.blur)
    x = resample @ x @ resample.T  # (C, S, S)
    return x.clamp_(0.0, 1.0).mul_(2.0).sub_(1.0)


@functools.lru_cache(maxsize=64)
def resampling_matrix(side: int, size: int, blur: bool) -> Tensor:
    """The (size, side) matrix that blurs and resizes one axis, as the authors did.

    Their pipeline is a Gaussian blur with sigma = sqrt(side / size) / 2 (edges extended, scipy's
    truncation at 4 sigma) followed by bicubic interpolation. Both are linear, so one matrix per
    axis does both: `M @ image @ M.T` equals blurring then resizing, and costs two small matmuls
    instead of a depthwise convolution (~10x faster on a CPU).
    """
    identity = torch.eye(side, dtype=torch.float64)
    matrix = identity
    if blur and side > size:
        sigma = math.sqrt(side / size) / 2.0
        radius = max(1, math.ceil(4.0 * sigma))
        offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
        taps = torch.exp(-0.5 * (offsets / sigma) ** 2)
        taps = taps / taps.sum()
        matrix = torch.zeros(side, side, dtype=torch.float64)
        rows = torch.arange(side)
        for offset, weight in zip(range(-radius, radius + 1), taps.tolist(), strict=True):
            # index_put_ with accumulate: near the edges several taps land on the same pixel.
            matrix.index_put_(
                (rows, (rows + offset).clamp(0, side - 1)),
                torch.full((side,), weight, dtype=torch.float64),
                accumulate=True,
            )
    if side != size:
        # Bicubic interpolation of the identity along one axis gives its weight matrix.
        resize = F.interpolate(
            identity.view(1, 1, side, side), size=(size, side), mode="bicubic", align_corners=False
        )[0, 0]  # (size, side)
        matrix = resize @ matrix
    return matrix.to(torch.float32)


def load_image_tensor(
    data: bytes, preprocessing: Preprocessing, limits: ImageLimits = DEFAULT_LIMITS
) -> Tensor:
    """Image file bytes to a (C, S, S) model input in [-1, 1]; raises `ImageError` subclasses."""
    return preprocess(open_image(data, limits), preprocessing)


# --------------------------------------------------------------------------------------------
# model output -> PNG


def tensor_to_image(image: Tensor) -> Image.Image:
    """A (C, H, W) tensor in [-1, 1] (C = 1 or 3) to a PIL image."""
    if image.ndim != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"expected a (1 or 3, H, W) tensor, got shape {tuple(image.shape)}")
    pixels = image.detach().to("cpu", torch.float32).add(1.0).mul(127.5).round().clamp(0, 255)
    array = pixels.to(torch.uint8).permute(1, 2, 0).contiguous().numpy()  # (H, W, C)
    if array.shape[2] == 1:
        return Image.fromarray(array[:, :, 0], mode="L")
    return Image.fromarray(array, mode="RGB")


def encode_png(image: Tensor | Image.Image, *, compress_level: int = 6) -> bytes:
    """PNG bytes of a PIL image or a (C, H, W) tensor in [-1, 1]."""
    pil = image if isinstance(image, Image.Image) else tensor_to_image(image)
    buffer = io.BytesIO()
    pil.save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def make_grid(
    images: Tensor | Sequence[Tensor], *, nrow: int = 8, padding: int = 2, pad_value: float = 1.0
) -> Tensor:
    """Tile (B, C, H, W) images into one (C, H', W') image, `nrow` images per row."""
    batch = torch.stack(list(images)) if not isinstance(images, Tensor) else images
    if batch.ndim != 4 or batch.shape[0] == 0:
        raise ValueError(f"expected a non-empty (B, C, H, W) batch, got shape {tuple(batch.shape)}")
    if nrow < 1 or padding < 0:
        raise ValueError("nrow must be positive and padding non-negative")
    count, channels, height, width = batch.shape
    columns = min(nrow, count)
    rows = math.ceil(count / columns)
    cell_h, cell_w = height + padding, width + padding
    grid = batch.new_full(
        (channels, rows * cell_h + padding, columns * cell_w + padding), pad_value
    )
    for index in range(count):
        row, column = divmod(index, columns)
        top, left = row * cell_h + padding, column * cell_w + padding
        grid[:, top : top + height, left : left + width] = batch[index]
    return grid
