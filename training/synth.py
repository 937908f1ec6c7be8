"""Deterministic synthetic cartoon faces in the exact CelebA folder layout.

The synthetic set is the project's test fixture and its no-download demo training data, so two
properties matter more than realism:

* **Truthful labels.** Attributes are sampled first (with CelebA-like frequencies and the same
  logical constraints real labels obey) and the picture is then drawn *from* them, so every
  ``+1`` is visibly present and every ``-1`` is absent.
* **Reproducibility.** Each image depends only on ``(seed, index)``; the same seed gives
  byte-identical files whatever the number of worker processes.

Layout written (identical to the real ``img_align_celeba`` release)::

    out_dir/img_align_celeba/000001.jpg ...   178x218 RGB JPEGs
    out_dir/list_eval_partition.txt           "000001.jpg 0" rows (0 train, 1 val, 2 test)
    out_dir/list_attr_celeba.txt              count, names, "000001.jpg -1  1 ..." rows

The attribute file is written last, atomically, so its presence marks a complete set.
"""

from __future__ import annotations

import io
import itertools
import json
import math
import multiprocessing
import random
import sys
import time
from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFilter
from tqdm import tqdm

from model.atomic import atomic_write_bytes
from training.data import (
    CELEBA_ATTRIBUTE_FILE,
    CELEBA_IMAGE_DIR,
    CELEBA_PARTITION_FILE,
    SYNTHETIC_MANIFEST_FILE,
)

__all__ = [
    "ATTR_FILE_NAME",
    "HAIR_COLOUR_ATTRIBUTES",
    "IMAGE_DIR_NAME",
    "IMAGE_HEIGHT",
    "IMAGE_WIDTH",
    "PARTITION_FILE_NAME",
    "SYNTH_ATTRIBUTES",
    "FaceParams",
    "SynthReport",
    "attribute_violations",
    "face_rng",
    "generate_synthetic_celeba",
    "image_name",
    "render_face",
    "sample_face",
    "split_sizes",
    "write_jpeg",
]

# Same size as an aligned-and-cropped CelebA image, so the real-data pipeline (crop rows 40:188,
# cols 15:163, then resize) applies unchanged.
IMAGE_WIDTH = 178
IMAGE_HEIGHT = 218
JPEG_QUALITY = 90

# A subset of CelebA's 40 attributes that a cartoon can depict unambiguously, in CelebA's own
# (alphabetical) column order so downstream code can treat both files alike.
SYNTH_ATTRIBUTES: tuple[str, ...] = (
    "Bald",
    "Bangs",
    "Black_Hair",
    "Blond_Hair",
    "Blurry",
    "Brown_Hair",
    "Bushy_Eyebrows",
    "Eyeglasses",
    "Goatee",
    "Gray_Hair",
    "Male",
    "Mouth_Slightly_Open",
    "Mustache",
    "Narrow_Eyes",
    "No_Beard",
    "Pale_Skin",
    "Rosy_Cheeks",
    "Smiling",
    "Wavy_Hair",
    "Wearing_Earrings",
    "Wearing_Hat",
    "Wearing_Lipstick",
)
HAIR_COLOUR_ATTRIBUTES: tuple[str, ...] = ("Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair")

# CelebA's official split sizes (train, val, test) out of 202,599 images.
_CELEBA_SPLIT = (162_770, 19_867, 19_962)
_CELEBA_TOTAL = sum(_CELEBA_SPLIT)

# CelebA's own names, defined once beside the reader.
IMAGE_DIR_NAME = CELEBA_IMAGE_DIR
ATTR_FILE_NAME = CELEBA_ATTRIBUTE_FILE
PARTITION_FILE_NAME = CELEBA_PARTITION_FILE
MANIFEST_FILE_NAME = SYNTHETIC_MANIFEST_FILE

_PROGRESS_MIN_COUNT = 200
_CHUNK_SIZE = 64

RGB = tuple[int, int, int]

# ----------------------------------------------------------------------------------------------
# Parameters
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FaceParams:
    """Everything needed to draw one face: the labelled attributes plus unlabelled nuisance.

    Style details that depend on an attribute (hair length for ``Male``, hair RGB for the hair
    colour labels, ...) are *derived at render time* from attribute + nuisance, so a test can
    flip one attribute with :meth:`with_attributes` and everything else stays fixed.
    """

    attributes: Mapping[str, bool]
    skin_tone: float  # 0 = lightest non-pale tone, 1 = darkest
    hair_variant: int  # picks a shade within the hair colour's palette
    hair_shade: float  # brightness multiplier on the hair colour
    hair_length: float  # uniform in [0, 1); mapped to a style differently for men and women
    hair_volume: float  # how far hair stands off the head, px
    face_half_width: float  # px
    face_half_height: float  # px
    eye_colour: RGB
    lipstick_colour: RGB
    background_top: RGB
    background_bottom: RGB
    clothing_colour: RGB
    hat_colour: RGB
    earring_colour: RGB
    glasses_colour: RGB
    shift_x: float  # px, applied after drawing
    shift_y: float
    scale: float
    rotation_degrees: float
    brightness: float
    light_strength: float
    light_angle: float  # radians; direction the lighting gradient brightens towards
    blur_radius: float  # only used when Blurry

    def __post_init__(self) -> None:
        names = set(self.attributes)
        if names != set(SYNTH_ATTRIBUTES):
            missing = sorted(set(SYNTH_ATTRIBUTES) - names)
            unknown = sorted(names - set(SYNTH_ATTRIBUTES))
            raise ValueError(f"attributes mismatch: missing {missing}, unknown {unknown}")
        # A private copy in canonical order: later edits to the caller's dict cannot leak into
        # this (frozen) value, and equal attribute sets compare and print alike.
        canonical = {name: bool(self.attributes[name]) for name in SYNTH_ATTRIBUTES}
        object.__setattr__(self, "attributes", canonical)

    def with_attributes(self, changes: Mapping[str, bool]) -> FaceParams:
        """Copy with some attributes changed; does not enforce consistency (see
        :func:`attribute_violations`), so tests can build any combination deliberately."""
        return replace(self, attributes={**self.attributes, **changes})

    def attribute_values(self) -> list[int]:
        """The CelebA-style ``-1/+1`` row in :data:`SYNTH_ATTRIBUTES` order."""
        return [1 if self.attributes[name] else -1 for name in SYNTH_ATTRIBUTES]


def face_rng(seed: int, index: int) -> random.Random:
    """The RNG for image ``index`` (1-based) of a set.

    Seeding from a string hashes it with SHA-512 inside ``random``, independent of
    PYTHONHASHSEED and of which process renders the image — the basis of worker-count invariance.
    """
    return random.Random(f"vaegan-synth:{seed}:{index}")


def _sample_attributes(rng: random.Random) -> dict[str, bool]:
    def chance(p: float) -> bool:
        return rng.random() < p

    # Conditional rates are chosen so the marginals land near CelebA's; the rules in
    # attribute_violations() hold by construction. Every chance() is drawn unconditionally (draw
    # first, then combine) so the number of RNG draws never depends on earlier outcomes.
    male = chance(0.42)
    bald = chance(0.06) and male
    hat = chance(0.05) and not bald

    colour_draw = rng.random()
    # (black, blond, brown, gray); the remainder is an unlabelled red/ginger/copper colour.
    colour_rates = (0.28, 0.05, 0.20, 0.07) if male else (0.22, 0.23, 0.21, 0.03)
    hair_colour: str | None = None
    if not bald:
        cumulative = 0.0
        for name, rate in zip(HAIR_COLOUR_ATTRIBUTES, colour_rates, strict=True):
            cumulative += rate
            if colour_draw < cumulative:
                hair_colour = name
                break

    bangs = chance(0.085 if male else 0.20) and not bald
    wavy = chance(0.15 if male else 0.40) and not bald
    mustache = chance(0.10) and male
    goatee = chance(0.14) and male
    smiling = chance(0.48)
    # Smiles usually part the lips; CelebA shows the same strong correlation.
    mouth_open = chance(0.78 if smiling else 0.21)
    lipstick = chance(0.81) and not male
    earrings = chance(0.04 if male else 0.29)
    eyeglasses = chance(0.10 if male else 0.04)
    pale = chance(0.04)
    rosy = chance(0.02 if male else 0.10)
    bushy = chance(0.22 if male else 0.08)
    narrow = chance(0.115)
    blurry = chance(0.05)

    attributes = dict.fromkeys(SYNTH_ATTRIBUTES, False)
    if hair_colour is not None:
        attributes[hair_colour] = True
    attributes.update(
        Bald=bald,
        Bangs=bangs,
        Blurry=blurry,
        Bushy_Eyebrows=bushy,
        Eyeglasses=eyeglasses,
        Goatee=goatee,
        Male=male,
        Mouth_Slightly_Open=mouth_open,
        Mustache=mustache,
        Narrow_Eyes=narrow,
        No_Beard=not (mustache or goatee),
        Pale_Skin=pale,
        Rosy_Cheeks=rosy,
        Smiling=smiling,
        Wavy_Hair=wavy,
        Wearing_Earrings=earrings,
        Wearing_Hat=hat,
        Wearing_Lipstick=lipstick,
    )
    return attributes


def attribute_violations(attributes: Mapping[str, bool]) -> list[str]:
    """Human-readable list of the logical rules an attribute combination breaks (empty = ok).

    These are the rules real CelebA labels (mostly) obey and which sampled faces always obey.
    """
    problems: list[str] = []
    colours = [name for name in HAIR_COLOUR_ATTRIBUTES if attributes[name]]
    if len(colours) > 1:
        problems.append(f"several hair colours: {colours}")
    if attributes["Bald"]:
        for name in ("Bangs", "Wavy_Hair", "Wearing_Hat", *colours):
            if attributes[name]:
                problems.append(f"Bald together with {name}")
    for name in ("Mustache", "Goatee"):
        if attributes[name] and not attributes["Male"]:
            problems.append(f"{name} without Male")
    if attributes["No_Beard"] == (attributes["Mustache"] or attributes["Goatee"]):
        problems.append("No_Beard must equal not (Mustache or Goatee)")
    if attributes["Wearing_Lipstick"] and attributes["Male"]:
        problems.append("Wearing_Lipstick with Male")
    return problems


def _random_colour(rng: random.Random, low: int, high: int) -> RGB:
    return (rng.randint(low, high), rng.randint(low, high), rng.randint(low, high))


_EYE_COLOURS: tuple[RGB, ...] = ((70, 45, 25), (95, 60, 30), (60, 90, 130), (70, 110, 70))
_LIPSTICK_COLOURS: tuple[RGB, ...] = ((200, 25, 45), (170, 15, 55), (225, 50, 75), (150, 20, 35))
_EARRING_COLOURS: tuple[RGB, ...] = (
    (250, 210, 40),
    (235, 235, 245),
    (40, 220, 230),
    (250, 60, 160),
)
_GLASSES_COLOURS: tuple[RGB, ...] = ((20, 20, 22), (60, 35, 20), (25, 30, 70), (70, 70, 75))


def sample_face(rng: random.Random) -> FaceParams:
    """Draw attributes and nuisance for one face.

    The number and order of RNG draws never depends on the attributes, so the nuisance of face
    ``i`` is stable even if attribute rates are retuned.
    """
    attributes = _sample_attributes(rng)
    vivid = _random_colour(rng, 40, 235)
    grey = sum(vivid) // 3
    # Pulled towards grey: photo backgrounds are rarely fully saturated.
    background_top = _mix(vivid, (grey, grey, grey), rng.uniform(0.2, 0.6))
    # The bottom colour is a nearby shade, giving an optional soft vertical gradient.
    gradient = rng.choice((0, 0, 25, 45))
    background_bottom: RGB = (
        _clamp_channel(background_top[0] + rng.randint(-gradient, gradient)),
        _clamp_channel(background_top[1] + rng.randint(-gradient, gradient)),
        _clamp_channel(background_top[2] + rng.randint(-gradient, gradient)),
    )
    return FaceParams(
        attributes=attributes,
        # Skewed towards lighter tones, roughly like CelebA's population.
        skin_tone=rng.random() ** 1.8,
        hair_variant=rng.randrange(4),
        hair_shade=rng.uniform(0.85, 1.15),
        hair_length=rng.random(),
        hair_volume=rng.uniform(3.0, 10.0),
        face_half_width=rng.uniform(38.0, 42.0),
        face_half_height=rng.uniform(51.0, 56.0),
        eye_colour=rng.choice(_EYE_COLOURS),
        lipstick_colour=rng.choice(_LIPSTICK_COLOURS),
        background_top=background_top,
        background_bottom=background_bottom,
        clothing_colour=_random_colour(rng, 20, 230),
        hat_colour=_random_colour(rng, 20, 220),
        earring_colour=rng.choice(_EARRING_COLOURS),
        glasses_colour=rng.choice(_GLASSES_COLOURS),
        shift_x=rng.uniform(-6.0, 6.0),
        shift_y=rng.uniform(-6.0, 6.0),
        scale=rng.uniform(0.92, 1.08),
        rotation_degrees=rng.uniform(-8.0, 8.0),
        brightness=rng.uniform(0.85, 1.12),
        light_strength=rng.uniform(0.0, 0.2),
        light_angle=rng.uniform(0.0, 2.0 * math.pi),
        blur_radius=rng.uniform(1.5, 2.5),
    )


# ----------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------

# Drawing happens at SUPERSAMPLE x resolution and is box-filtered down, because ImageDraw has no
# anti-aliasing. The canvas has a margin so that shifting/rotating/zooming out never exposes an
# undrawn border.
_SUPERSAMPLE = 2
_MARGIN = 36
_CANVAS_SIZE = (
    (IMAGE_WIDTH + 2 * _MARGIN) * _SUPERSAMPLE,
    (IMAGE_HEIGHT + 2 * _MARGIN) * _SUPERSAMPLE,
)
_BACKGROUND_BANDS = 48

# Canonical (pre-nuisance) face centre in output pixels; features are placed relative to it so
# that, like aligned CelebA, the eyes land near y=112 at x=70 and x=108.
_FACE_CX = 89.0
_FACE_CY = 120.0

Point = tuple[float, float]

_SKIN_RAMP: tuple[RGB, ...] = (
    (241, 203, 175),
    (232, 184, 146),
    (205, 145, 105),
    (160, 105, 70),
    (105, 68, 45),
)
_PALE_SKIN: RGB = (252, 233, 222)
_HAIR_PALETTES: dict[str | None, tuple[RGB, ...]] = {
    "Black_Hair": ((22, 20, 20), (30, 26, 24), (18, 18, 26), (38, 30, 26)),
    "Blond_Hair": ((232, 200, 120), (240, 215, 150), (215, 180, 100), (245, 225, 170)),
    "Brown_Hair": ((110, 70, 40), (95, 60, 35), (125, 82, 50), (85, 55, 35)),
    "Gray_Hair": ((175, 175, 172), (200, 200, 200), (150, 150, 152), (215, 212, 205)),
    # No labelled colour: clearly different hues so the -1 labels stay truthful.
    # (Auburn is left out: it is too close to brown to keep Brown_Hair=-1 honest.)
    None: ((175, 50, 25), (215, 105, 40), (190, 75, 35), (230, 130, 70)),
}
_BALD_FACIAL_HAIR: RGB = (75, 60, 50)
_HAIR_SKIN_MIN_GAP = 45  # max per-channel difference, in 0-255 levels


def _clamp_channel(value: float) -> int:
    return max(0, min(255, round(value)))


def _scale_colour(colour: RGB, factor: float) -> RGB:
    return (
        _clamp_channel(colour[0] * factor),
        _clamp_channel(colour[1] * factor),
        _clamp_channel(colour[2] * factor),
    )


def _mix(a: RGB, b: RGB, t: float) -> RGB:
    return (
        _clamp_channel(a[0] + (b[0] - a[0]) * t),
        _clamp_channel(a[1] + (b[1] - a[1]) * t),
        _clamp_channel(a[2] + (b[2] - a[2]) * t),
    )


def _skin_colour(params: FaceParams) -> RGB:
    if params.attributes["Pale_Skin"]:
        return _PALE_SKIN
    # Non-pale tones start a clear step darker than the pale colour.
    position = params.skin_tone * (len(_SKIN_RAMP) - 1)
    lower = min(int(position), len(_SKIN_RAMP) - 2)
    return _mix(_SKIN_RAMP[lower], _SKIN_RAMP[lower + 1], position - lower)


def _colour_gap(a: RGB, b: RGB) -> int:
    return max(abs(a[0] - b[0]), abs(a[1] - b[1]), abs(a[2] - b[2]))


def _hair_colour(params: FaceParams, skin: RGB) -> RGB | None:
    if params.attributes["Bald"]:
        return None
    labelled = next((n for n in HAIR_COLOUR_ATTRIBUTES if params.attributes[n]), None)
    colour = _scale_colour(_HAIR_PALETTES[labelled][params.hair_variant % 4], params.hair_shade)
    # Where hair nearly matches the skin (copper hair on tan skin, brown on brown), lighten or
    # darken it a little so the hairline, fringe and bald scalp stay visible; the bounded factor
    # keeps the shade inside its colour class (brown never turns black).
    for step in range(1, 9):
        if _colour_gap(colour, skin) >= _HAIR_SKIN_MIN_GAP:
            break
        for factor in (1.0 + 0.06 * step, 1.0 - 0.05 * step):
            candidate = _scale_colour(colour, factor)
            if _colour_gap(candidate, skin) >= _HAIR_SKIN_MIN_GAP:
                return candidate
    return colour


class _Canvas:
    """ImageDraw in canonical output coordinates, mapped onto the supersampled margin canvas."""

    def __init__(self, image: Image.Image) -> None:
        self.draw = ImageDraw.Draw(image)

    @staticmethod
    def _map(x: float, y: float) -> Point:
        return ((x + _MARGIN) * _SUPERSAMPLE, (y + _MARGIN) * _SUPERSAMPLE)

    def ellipse(self, cx: float, cy: float, rx: float, ry: float, fill: RGB) -> None:
        x0, y0 = self._map(cx - rx, cy - ry)
        x1, y1 = self._map(cx + rx, cy + ry)
        self.draw.ellipse((x0, y0, x1, y1), fill=fill)

    def polygon(self, points: Sequence[Point], fill: RGB) -> None:
        self.draw.polygon([self._map(x, y) for x, y in points], fill=fill)

    def line(self, points: Sequence[Point], fill: RGB, width: float) -> None:
        self.draw.line(
            [self._map(x, y) for x, y in points],
            fill=fill,
            width=max(1, round(width * _SUPERSAMPLE)),
            joint="curve",
        )

    def rectangle(self, x0: float, y0: float, x1: float, y1: float, fill: RGB) -> None:
        self.draw.rectangle((*self._map(x0, y0), *self._map(x1, y1)), fill=fill)

    def rounded_outline(
        self, x0: float, y0: float, x1: float, y1: float, radius: float, colour: RGB, width: float
    ) -> None:
        self.draw.rounded_rectangle(
            (*self._map(x0, y0), *self._map(x1, y1)),
            radius=radius * _SUPERSAMPLE,
            outline=colour,
            width=max(1, round(width * _SUPERSAMPLE)),
        )


def _ellipse_arc(
    cx: float, cy: float, rx: float, ry: float, start_deg: float, end_deg: float, steps: int
) -> list[Point]:
    """Points along an ellipse; angles in degrees, 0 = right, 90 = down (image coordinates)."""
    points = []
    for i in range(steps + 1):
        angle = math.radians(start_deg + (end_deg - start_deg) * i / steps)
        points.append((cx + rx * math.cos(angle), cy + ry * math.sin(angle)))
    return points


def _face_outline(cx: float, cy: float, rx: float, ry: float, male: bool) -> list[Point]:
    """Egg-shaped head; men get a squarer, broader jaw (superellipse lower half)."""
    upper = _ellipse_arc(cx, cy, rx, ry * 0.98, 180.0, 360.0, 24)
    exponent = 2.0 / (3.0 if male else 2.0)
    jaw_rx = rx * (0.98 if male else 0.93)
    lower = []
    for i in range(1, 24):
        angle = math.pi * i / 24
        c, s = math.cos(angle), math.sin(angle)
        lower.append(
            (
                cx + jaw_rx * math.copysign(abs(c) ** exponent, c),
                cy + ry * abs(s) ** exponent,
            )
        )
    return upper + lower


def _scallop(canvas: _Canvas, outline: Sequence[Point], radius: float, fill: RGB) -> None:
    """Curly/wavy silhouette: bumps along an outline."""
    for x, y in outline:
        canvas.ellipse(x, y, radius, radius, fill)


def _hair_style(params: FaceParams) -> str:
    """Length is nuisance, but its distribution depends on sex (as a visible cue for Male)."""
    u = params.hair_length
    if params.attributes["Male"]:
        return "short" if u < 0.82 else "medium" if u < 0.95 else "long"
    return "long" if u < 0.72 else "medium" if u < 0.9 else "short"


def _draw_background(canvas: _Canvas, params: FaceParams) -> None:
    # Flat bands rather than a per-pixel gradient: tens of memset-like fills are far cheaper, and
    # the steps (about one grey level) vanish after downsampling and JPEG.
    band_height = (IMAGE_HEIGHT + 2 * _MARGIN) / _BACKGROUND_BANDS
    for band in range(_BACKGROUND_BANDS):
        colour = _mix(params.background_top, params.background_bottom, band / _BACKGROUND_BANDS)
        y0 = -_MARGIN + band * band_height
        canvas.rectangle(-_MARGIN, y0, IMAGE_WIDTH + _MARGIN, y0 + band_height + 1, colour)


def _texture_colour(hair: RGB) -> RGB:
    """Curl/strand colour: darker than light hair, lighter than near-black hair."""
    return _scale_colour(hair, 0.7) if sum(hair) > 120 else _mix(hair, (150, 140, 130), 0.45)


def _draw_back_hair(
    canvas: _Canvas, params: FaceParams, hair: RGB, style: str, rx: float, ry: float
) -> None:
    cx, cy = _FACE_CX, _FACE_CY
    volume = params.hair_volume
    wavy = params.attributes["Wavy_Hair"]
    top_rx, top_ry = rx + volume, ry + volume
    if style == "short":
        outline = _ellipse_arc(cx, cy - 6, top_rx - 2, top_ry - 4, 160.0, 380.0, 20)
        canvas.polygon(outline, hair)
        if wavy:
            _scallop(canvas, outline, 4.5, hair)
        return
    bottom = cy + (80.0 if style == "long" else 42.0)
    flare = 10.0 if style == "long" else 4.0
    crown = _ellipse_arc(cx, cy, top_rx, top_ry, 180.0, 360.0, 20)
    right_side = [(cx + top_rx + flare * t, cy + (bottom - cy) * t) for t in (0.33, 0.66, 1.0)]
    left_side = [(cx - top_rx - flare * t, cy + (bottom - cy) * t) for t in (1.0, 0.66, 0.33)]
    # Ends taper inwards instead of stopping in a hard horizontal cut.
    right_side.append((cx + top_rx * 0.55, bottom + 4.0))
    left_side.insert(0, (cx - top_rx * 0.55, bottom + 4.0))
    outline = [*crown, *right_side, *left_side]
    canvas.polygon(outline, hair)
    if wavy:
        # Bumps along the silhouette plus darker curl strokes on the side strands make waves
        # visible even where the face covers most of the hair.
        dense = [*crown, *_densify(right_side, 6), *_densify(left_side, 6)]
        _scallop(canvas, dense, 5.0, hair)
        curl = _texture_colour(hair)
        for side in (-1.0, 1.0):
            x = cx + side * (top_rx - 2.0)
            y = cy - 10.0
            while y < bottom - 8:
                points = [(x + side * 4.0 * math.sin(k * 0.9), y + k * 2.0) for k in range(6)]
                canvas.line(points, curl, 1.5)
                y += 14.0


def _densify(points: Sequence[Point], per_segment: int) -> list[Point]:
    dense: list[Point] = []
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        dense.extend(
            (x0 + (x1 - x0) * k / per_segment, y0 + (y1 - y0) * k / per_segment)
            for k in range(per_segment)
        )
    dense.append(points[-1])
    return dense


def _draw_body(canvas: _Canvas, params: FaceParams, male: bool) -> None:
    cx = _FACE_CX
    shoulder_rx = 84.0 if male else 74.0
    canvas.ellipse(cx, 246.0, shoulder_rx, 52.0, params.clothing_colour)


def _draw_neck(canvas: _Canvas, skin: RGB, male: bool, ry: float) -> None:
    cx, cy = _FACE_CX, _FACE_CY
    half = 20.0 if male else 16.5
    # Shade towards a warm brown: scaling RGB down would turn pale skin grey.
    shadow = _mix(skin, (110, 60, 40), 0.2)
    canvas.rectangle(cx - half, cy + ry - 20.0, cx + half, 200.0, shadow)
    canvas.ellipse(cx, 200.0, half, 8.0, shadow)


def _draw_ears(canvas: _Canvas, skin: RGB, rx: float) -> None:
    ear = _scale_colour(skin, 0.93)
    inner = _scale_colour(skin, 0.75)
    for side in (-1.0, 1.0):
        x = _FACE_CX + side * (rx - 1.0)
        canvas.ellipse(x, 118.0, 7.0, 12.0, ear)
        canvas.line(
            [(x + side * 2.5, 111.0), (x + side * 3.5, 118.0), (x + side * 2.0, 125.0)], inner, 1.2
        )


def _hairline(cx: float, rx: float, temple_y: float, mid_y: float, steps: int = 16) -> list[Point]:
    """Hairline from the right temple to the left, highest in the middle of the forehead."""
    points = []
    for i in range(steps + 1):
        t = 1.0 - 2.0 * i / steps
        points.append((cx + t * rx, mid_y + (temple_y - mid_y) * t * t))
    return points


def _draw_top_hair(
    canvas: _Canvas, params: FaceParams, hair: RGB, rx: float, ry: float, male: bool
) -> None:
    cx, cy = _FACE_CX, _FACE_CY
    head_top = cy - ry
    cap_rx = rx + 2.0
    cap_ry = ry + min(params.hair_volume, 6.0)
    outer = _ellipse_arc(cx, cy, cap_rx, cap_ry, 195.0, 345.0, 20)
    temple_y = cy + cap_ry * math.sin(math.radians(195.0))
    if params.attributes["Bangs"]:
        # A fringe reaching down to just above the eyebrows, with a ragged lower edge.
        fringe_y = head_top + 35.0
        inner = []
        steps = 10
        for i in range(steps + 1):
            t = 1.0 - 2.0 * i / steps
            y = fringe_y - 5.0 * t * t - (2.5 if i % 2 else 0.0)
            inner.append((cx + t * (rx - 3.0), y))
        tips = inner[::2]
        inner = [(cx + rx, temple_y + 8.0), *inner, (cx - rx, temple_y + 8.0)]
    else:
        mid_y = head_top + (16.0 if male else 14.0)
        inner = _hairline(cx, rx - 1.0, temple_y + 6.0, mid_y)
        tips = []
    outline = [*outer, *inner]
    canvas.polygon(outline, hair)
    # Strand lines into each fringe tip: texture keeps bangs recognisable even when the hair
    # colour is close to the skin tone.
    for x, y in tips[1:-1]:
        canvas.line([(x + 0.5 * (x - cx) / rx, y - 13.0), (x, y - 2.0)], _texture_colour(hair), 1.2)
    if params.attributes["Wavy_Hair"]:
        _scallop(canvas, outer, 4.0, hair)
        curl = _texture_colour(hair)
        for k in range(-2, 3):
            x = cx + k * rx * 0.35
            y = head_top + 2.0 + 0.9 * abs(k) ** 2
            canvas.line(
                [(x - 4.0, y + 2.0), (x - 1.5, y - 1.5), (x + 1.5, y + 1.5), (x + 4, y - 2)],
                curl,
                1.4,
            )


def _draw_bald_scalp(canvas: _Canvas, skin: RGB, ry: float) -> None:
    highlight = _mix(skin, (255, 255, 255), 0.35)
    canvas.ellipse(_FACE_CX - 8.0, _FACE_CY - ry + 13.0, 13.0, 6.0, highlight)


def _draw_eyes(canvas: _Canvas, params: FaceParams, skin: RGB) -> None:
    narrow = params.attributes["Narrow_Eyes"]
    lid = (40, 28, 24)
    for side in (-1.0, 1.0):
        ex, ey = _FACE_CX + side * 19.0, 112.0
        if narrow:
            # A squint: flat slit with only a sliver of iris.
            canvas.ellipse(ex, ey, 7.5, 1.7, (235, 230, 225))
            canvas.rectangle(ex - 2.8, ey - 1.2, ex + 2.8, ey + 1.2, params.eye_colour)
            canvas.line([(ex - 8.5, ey - 0.6), (ex, ey - 2.0), (ex + 8.5, ey - 0.6)], lid, 1.8)
            canvas.line([(ex - 6.5, ey + 1.8), (ex + 6.5, ey + 1.8)], _scale_colour(skin, 0.7), 1.0)
        else:
            canvas.ellipse(ex, ey, 7.5, 4.6, (245, 243, 238))
            canvas.ellipse(ex, ey, 3.7, 3.7, params.eye_colour)
            canvas.ellipse(ex, ey, 1.7, 1.7, (10, 10, 12))
            canvas.ellipse(ex + 1.2, ey - 1.2, 0.8, 0.8, (255, 255, 255))
            canvas.line(
                [(ex - 8.0, ey + 0.5), (ex - 4.0, ey - 4.4), (ex + 4.0, ey - 4.4), (ex + 8.0, ey)],
                lid,
                1.3,
            )


def _luma(colour: RGB) -> float:
    return 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]


def _facial_hair_colour(hair: RGB | None, skin: RGB, darkening: float) -> RGB:
    """Colour for brows, mustache and goatee: the hair colour, darkened as needed.

    A minimum luminance gap to the skin keeps these labelled features visible even where the
    hair colour is close to the skin tone (e.g. brown hair on brown skin).
    """
    colour = _scale_colour(hair if hair is not None else _BALD_FACIAL_HAIR, darkening)
    limit = _luma(skin) - 55.0
    luma = _luma(colour)
    if luma > limit:
        colour = _scale_colour(colour, max(limit, 12.0) / max(luma, 1.0))
    return colour


def _draw_eyebrows(canvas: _Canvas, params: FaceParams, brow: RGB, male: bool) -> None:
    bushy = params.attributes["Bushy_Eyebrows"]
    for side in (-1.0, 1.0):
        inner_x = _FACE_CX + side * 9.5
        outer_x = _FACE_CX + side * 28.0
        peak_x = _FACE_CX + side * 21.0
        if bushy:
            canvas.polygon(
                [
                    (inner_x, 104.5),
                    (peak_x, 97.0),
                    (outer_x + side * 2.0, 102.0),
                    (outer_x + side * 1.0, 106.0),
                    (peak_x, 104.0),
                    (inner_x, 109.5),
                ],
                brow,
            )
        else:
            canvas.line(
                [(inner_x, 105.0), (peak_x, 101.5), (outer_x, 104.0)], brow, 2.0 if male else 1.4
            )


def _draw_glasses(canvas: _Canvas, params: FaceParams, rx: float) -> None:
    frame = params.glasses_colour
    for side in (-1.0, 1.0):
        ex = _FACE_CX + side * 19.0
        canvas.rounded_outline(ex - 11.5, 103.0, ex + 11.5, 121.0, 5.0, frame, 2.6)
        # Temple arm from the rim to the ear.
        rim_x = ex + side * 11.5
        canvas.line([(rim_x, 107.0), (_FACE_CX + side * (rx + 1.0), 110.0)], frame, 2.0)
    canvas.line([(_FACE_CX - 7.5, 109.0), (_FACE_CX, 107.0), (_FACE_CX + 7.5, 109.0)], frame, 2.0)


def _draw_nose(canvas: _Canvas, skin: RGB) -> None:
    cx = _FACE_CX
    canvas.polygon([(cx, 116.0), (cx - 6.0, 133.0), (cx + 6.0, 133.0)], _scale_colour(skin, 0.92))
    dark = _scale_colour(skin, 0.62)
    canvas.line([(cx + 1.5, 117.0), (cx + 4.5, 130.0)], _scale_colour(skin, 0.85), 1.2)
    canvas.ellipse(cx - 3.2, 133.0, 1.8, 1.1, dark)
    canvas.ellipse(cx + 3.2, 133.0, 1.8, 1.1, dark)


def _mouth_curve(
    mx: float, my: float, half_width: float, sag: float, offset: float, steps: int
) -> list[Point]:
    """Points of the mouth line, shifted by ``offset * envelope`` (envelope 0 at the corners)."""
    points = []
    for i in range(steps + 1):
        t = -1.0 + 2.0 * i / steps
        envelope = math.sqrt(max(0.0, 1.0 - t * t))
        points.append((mx + t * half_width, my + sag * (1.0 - t * t) + offset * envelope))
    return points


def _draw_mouth(canvas: _Canvas, params: FaceParams, skin: RGB, male: bool) -> None:
    smiling = params.attributes["Smiling"]
    open_mouth = params.attributes["Mouth_Slightly_Open"]
    if params.attributes["Wearing_Lipstick"]:
        lips = params.lipstick_colour
    else:
        lips = _mix(skin, (200, 95, 100), 0.4 if male else 0.5)
    # A smile widens the mouth and lifts the corners well above the centre; the centre is
    # lowered by less than the sag so the mouth stays in the same place on the face.
    half_width = 18.0 if smiling else 12.5
    sag = 7.0 if smiling else 0.8
    mx, my = _FACE_CX, 151.0 - sag * 0.4
    opening = (7.0 if smiling else 6.5) if open_mouth else 0.0
    upper_lip = 3.5 if male else 4.5
    lower_lip = 4.0 if male else 5.5
    steps = 14
    upper_top = _mouth_curve(mx, my, half_width, sag * 0.6, -upper_lip, steps)
    lower_bottom = _mouth_curve(mx, my, half_width, sag, lower_lip + opening, steps)
    canvas.polygon([*upper_top, *reversed(lower_bottom)], lips)
    if open_mouth:
        gap_top = _mouth_curve(mx, my, half_width * 0.85, sag, -0.5, steps)
        gap_bottom = _mouth_curve(mx, my, half_width * 0.85, sag, opening, steps)
        canvas.polygon([*gap_top, *reversed(gap_bottom)], (60, 15, 20))
        if smiling:
            teeth_bottom = _mouth_curve(mx, my, half_width * 0.7, sag, opening * 0.45, steps)
            canvas.polygon([*gap_top, *reversed(teeth_bottom)], (245, 242, 235))
    else:
        line = _mouth_curve(mx, my, half_width, sag, 0.0, steps)
        # Dark and firm so the line's curvature (the smile cue) reads on every skin tone.
        canvas.line(line, _mix(lips, (25, 5, 10), 0.75), 1.6)
    if smiling:
        # Smile creases beside the raised corners.
        crease = _mix(skin, (30, 10, 10), 0.5)
        for side in (-1.0, 1.0):
            x = mx + side * (half_width + 2.5)
            canvas.line(
                [(x - side * 1.5, my - 8.0), (x + side * 1.0, my - 2.0), (x, my + 3.0)], crease, 1.3
            )


def _draw_mustache(canvas: _Canvas, colour: RGB) -> None:
    cx, y = _FACE_CX, 141.5
    canvas.polygon(
        [
            (cx - 17.0, y + 6.0),
            (cx - 12.0, y - 1.0),
            (cx - 4.0, y - 3.5),
            (cx, y - 2.5),
            (cx + 4.0, y - 3.5),
            (cx + 12.0, y - 1.0),
            (cx + 17.0, y + 6.0),
            (cx + 8.0, y + 3.5),
            (cx, y + 4.0),
            (cx - 8.0, y + 3.5),
        ],
        colour,
    )


def _draw_goatee(canvas: _Canvas, colour: RGB, ry: float) -> None:
    cx = _FACE_CX
    chin = _FACE_CY + ry
    canvas.polygon(
        [
            (cx - 9.0, 160.0),
            (cx + 9.0, 160.0),
            (cx + 11.0, chin - 8.0),
            (cx + 5.0, chin - 1.0),
            (cx - 5.0, chin - 1.0),
            (cx - 11.0, chin - 8.0),
        ],
        colour,
    )


def _draw_cheeks(canvas: _Canvas, skin: RGB) -> None:
    # Shifted towards red channel-wise rather than mixed with a fixed pink, which would be close
    # to mid skin tones and vanish there.
    blush = (
        _clamp_channel(skin[0] + 45),
        _clamp_channel(skin[1] * 0.6),
        _clamp_channel(skin[2] * 0.75),
    )
    for side in (-1.0, 1.0):
        canvas.ellipse(_FACE_CX + side * 25.0, 134.0, 9.0, 6.0, blush)


def _draw_earrings(canvas: _Canvas, params: FaceParams, rx: float) -> None:
    colour = params.earring_colour
    for side in (-1.0, 1.0):
        x = _FACE_CX + side * (rx + 0.5)
        canvas.ellipse(x, 131.5, 2.4, 2.4, colour)
        canvas.line([(x, 131.5), (x, 136.0)], colour, 1.2)
        canvas.ellipse(x, 139.0, 4.4, 4.4, colour)


def _draw_hat(canvas: _Canvas, params: FaceParams, rx: float, ry: float) -> None:
    cx, cy = _FACE_CX, _FACE_CY
    colour = params.hat_colour
    brim_y = cy - ry + 13.0
    crown = _ellipse_arc(cx, brim_y, rx + 3.0, 34.0, 180.0, 360.0, 20)
    canvas.polygon(crown, colour)
    band = _scale_colour(colour, 0.6) if sum(colour) > 200 else _mix(colour, (255, 255, 255), 0.4)
    canvas.rectangle(cx - rx - 3.0, brim_y - 7.0, cx + rx + 3.0, brim_y - 1.0, band)
    canvas.ellipse(cx, brim_y, rx + 18.0, 5.0, _scale_colour(colour, 0.85))


def _draw_face_layer(params: FaceParams) -> Image.Image:
    attributes = params.attributes
    male = attributes["Male"]
    rx = params.face_half_width + (3.0 if male else 0.0)
    ry = params.face_half_height
    skin = _skin_colour(params)
    hair = _hair_colour(params, skin)
    style = _hair_style(params)

    image = Image.new("RGB", _CANVAS_SIZE)
    canvas = _Canvas(image)
    _draw_background(canvas, params)
    _draw_body(canvas, params, male)
    if hair is not None:
        _draw_back_hair(canvas, params, hair, style, rx, ry)
    _draw_neck(canvas, skin, male, ry)
    _draw_ears(canvas, skin, rx)
    canvas.polygon(_face_outline(_FACE_CX, _FACE_CY, rx, ry, male), skin)
    if attributes["Rosy_Cheeks"]:
        _draw_cheeks(canvas, skin)
    _draw_nose(canvas, skin)
    _draw_eyes(canvas, params, skin)
    _draw_mouth(canvas, params, skin, male)
    facial_hair = _facial_hair_colour(hair, skin, 0.85)
    if attributes["Mustache"]:
        _draw_mustache(canvas, facial_hair)
    if attributes["Goatee"]:
        _draw_goatee(canvas, facial_hair, ry)
    if hair is not None:
        _draw_top_hair(canvas, params, hair, rx, ry, male)
    else:
        _draw_bald_scalp(canvas, skin, ry)
    # Brows go over any fringe so that Bushy_Eyebrows stays visible under Bangs.
    # Light hair gets clearly darker brows, as in real faces.
    brow = _facial_hair_colour(hair, skin, 0.6 if hair is not None and sum(hair) > 150 else 1.0)
    _draw_eyebrows(canvas, params, brow, male)
    if attributes["Eyeglasses"]:
        _draw_glasses(canvas, params, rx)
    if attributes["Wearing_Earrings"]:
        _draw_earrings(canvas, params, rx)
    if attributes["Wearing_Hat"]:
        _draw_hat(canvas, params, rx, ry)
    return image


@lru_cache(maxsize=1)
def _light_grids() -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    xs = np.linspace(-1.0, 1.0, IMAGE_WIDTH, dtype=np.float32)[None, :]
    ys = np.linspace(-1.0, 1.0, IMAGE_HEIGHT, dtype=np.float32)[:, None]
    return xs, ys


def _apply_lighting(image: Image.Image, params: FaceParams) -> Image.Image:
    xs, ys = _light_grids()
    gain = params.brightness * (
        1.0
        + params.light_strength
        * (xs * math.cos(params.light_angle) + ys * math.sin(params.light_angle))
    )
    lit = np.asarray(image, dtype=np.float32) * gain[..., None]
    np.clip(lit, 0.0, 255.0, out=lit)
    return Image.fromarray(lit.astype(np.uint8), mode="RGB")


def render_face(params: FaceParams) -> Image.Image:
    """Draw one 178x218 RGB face.

    Pipeline: draw the canonical face (supersampled, with margin) -> box-filter down -> one affine
    warp carrying shift/scale/rotation about the face centre -> lighting -> optional blur.
    """
    drawn = _draw_face_layer(params).reduce(_SUPERSAMPLE)
    # Inverse map (output -> canvas) of: rotate+scale about the face centre, then shift.
    angle = math.radians(params.rotation_degrees)
    inv = 1.0 / params.scale
    a, b = inv * math.cos(angle), inv * math.sin(angle)
    d, e = -inv * math.sin(angle), inv * math.cos(angle)
    centre_x, centre_y = _FACE_CX + params.shift_x, _FACE_CY + params.shift_y
    c = _FACE_CX + _MARGIN - (a * centre_x + b * centre_y)
    f = _FACE_CY + _MARGIN - (d * centre_x + e * centre_y)
    warped = drawn.transform(
        (IMAGE_WIDTH, IMAGE_HEIGHT),
        Image.Transform.AFFINE,
        (a, b, c, d, e, f),
        resample=Image.Resampling.BILINEAR,
    )
    image = _apply_lighting(warped, params)
    if params.attributes["Blurry"]:
        image = image.filter(ImageFilter.GaussianBlur(params.blur_radius))
    return image


# ----------------------------------------------------------------------------------------------
# Writing a data set
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SynthReport:
    """Summary of one generation run."""

    count: int
    seconds: float
    images_per_second: float
    attribute_counts: dict[str, int] = field(default_factory=dict)  # number of +1 per attribute
    split_sizes: dict[str, int] = field(default_factory=dict)  # "train" / "val" / "test"


def image_name(index: int, count: int) -> str:
    """CelebA-style 1-based file name; wider than 6 digits only if the set needs it."""
    return f"{index:0{max(6, len(str(count)))}d}.jpg"


def split_sizes(count: int) -> tuple[int, int, int]:
    """(train, val, test) sizes with CelebA's ratios; each split non-empty once count >= 3."""
    train = round(count * _CELEBA_SPLIT[0] / _CELEBA_TOTAL)
    val = round(count * _CELEBA_SPLIT[1] / _CELEBA_TOTAL)
    if count >= 3:
        val = max(val, 1)
        train = min(max(train, 1), count - val - 1)
    val = min(val, count - train)
    return train, val, count - train - val


def write_jpeg(path: Path, image: Image.Image) -> None:
    """Encode and write one image (a module-level hook so tests can simulate failures)."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    path.write_bytes(buffer.getvalue())


def _render_chunk(job: tuple[str, int, int, int, int]) -> list[tuple[bool, ...]]:
    """Render and write images ``start..stop-1``; returns their attributes in order.

    Takes plain picklable values so it works as a ``spawn`` pool task.
    """
    image_dir, seed, count, start, stop = job
    rows = []
    for index in range(start, stop):
        params = sample_face(face_rng(seed, index))
        write_jpeg(Path(image_dir) / image_name(index, count), render_face(params))
        rows.append(tuple(params.attributes[name] for name in SYNTH_ATTRIBUTES))
    return rows


def _write_text_atomically(path: Path, lines: Iterable[str]) -> None:
    atomic_write_bytes(path, "".join(line + "\n" for line in lines).encode("ascii"))


def _prepare_output(out_dir: Path, count: int, overwrite: bool) -> Path:
    image_dir = out_dir / IMAGE_DIR_NAME
    attr_file = out_dir / ATTR_FILE_NAME
    has_images = image_dir.is_dir() and any(image_dir.iterdir())
    if (has_images or attr_file.exists()) and not overwrite:
        raise FileExistsError(
            f"{image_dir} (or {attr_file.name}) already exists and is not empty; "
            "pass overwrite=True to replace it or choose another output folder"
        )
    # Drop the list files first: an interrupted overwrite must not leave an attribute file that
    # vouches for a half-replaced image folder.
    for name in (ATTR_FILE_NAME, PARTITION_FILE_NAME, MANIFEST_FILE_NAME):
        (out_dir / name).unlink(missing_ok=True)
    image_dir.mkdir(parents=True, exist_ok=True)
    if has_images:
        # Numbered JPEGs beyond the new count would otherwise linger as unlisted strays.
        keep = {image_name(i, count) for i in range(1, count + 1)}
        for stale in image_dir.glob("*.jpg"):
            if stale.stem.isdigit() and stale.name not in keep:
                stale.unlink()
    return image_dir


def _chunk_jobs(
    image_dir: Path, seed: int, count: int, chunk_size: int
) -> list[tuple[str, int, int, int, int]]:
    return [
        (str(image_dir), seed, count, start, min(start + chunk_size, count + 1))
        for start in range(1, count + 1, chunk_size)
    ]


def _run_jobs(
    jobs: list[tuple[str, int, int, int, int]], workers: int
) -> Generator[list[tuple[bool, ...]], None, None]:
    """Chunk results in job order, rendered in-process or by a pool of ``workers``."""
    if workers == 1:
        yield from map(_render_chunk, jobs)
        return
    # "spawn" rather than the Linux default "fork": the trainer calls this after importing torch,
    # and forking a process with live OpenMP/BLAS threads can deadlock. ProcessPoolExecutor
    # rather than multiprocessing.Pool: a worker that dies (e.g. cannot import this module)
    # raises BrokenProcessPool instead of being respawned forever, which hangs Pool.imap.
    executor = ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context("spawn")
    )
    try:
        yield from executor.map(_render_chunk, jobs)
    finally:
        # On an error or Ctrl-C, drop the queued chunks instead of rendering them all first.
        executor.shutdown(wait=True, cancel_futures=True)


def generate_synthetic_celeba(
    out_dir: Path,
    count: int,
    seed: int = 0,
    workers: int = 1,
    progress: bool = True,
    overwrite: bool = False,
) -> SynthReport:
    """Write ``count`` synthetic faces to ``out_dir`` in the CelebA layout.

    Images are written first, then the partition file, then the attribute file (both text files
    atomically), so a crash leaves no attribute file and readers treat the set as incomplete.
    Output bytes depend only on ``count`` and ``seed``, never on ``workers``.
    """
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    out_dir = Path(out_dir)
    started = time.perf_counter()
    image_dir = _prepare_output(out_dir, count, overwrite)

    # Small chunks keep all workers busy on small sets; larger ones amortise pickling overhead.
    chunk_size = max(1, min(_CHUNK_SIZE, math.ceil(count / (4 * workers))))
    jobs = _chunk_jobs(image_dir, seed, count, chunk_size)
    rows: list[tuple[bool, ...]] = []
    with tqdm(
        total=count,
        unit="img",
        desc="synthetic faces",
        file=sys.stderr,
        disable=not (progress and count > _PROGRESS_MIN_COUNT),
    ) as bar:
        results = _run_jobs(jobs, min(workers, len(jobs)))
        try:
            for chunk_rows in results:
                rows.extend(chunk_rows)
                bar.update(len(chunk_rows))
        finally:
            results.close()  # stop the workers now, not whenever the generator is collected

    train, val, test = split_sizes(count)
    names = [image_name(i, count) for i in range(1, count + 1)]
    partitions = [0] * train + [1] * val + [2] * test
    _write_text_atomically(
        out_dir / PARTITION_FILE_NAME,
        (f"{name} {split}" for name, split in zip(names, partitions, strict=True)),
    )
    _write_text_atomically(
        out_dir / MANIFEST_FILE_NAME,
        [json.dumps({"generator": "vaegan synthetic faces", "count": count, "seed": seed})],
    )
    _write_text_atomically(out_dir / ATTR_FILE_NAME, _attribute_lines(names, rows))

    seconds = time.perf_counter() - started
    return SynthReport(
        count=count,
        seconds=seconds,
        images_per_second=count / seconds if seconds > 0 else float("inf"),
        attribute_counts={
            name: sum(row[column] for row in rows) for column, name in enumerate(SYNTH_ATTRIBUTES)
        },
        split_sizes={"train": train, "val": val, "test": test},
    )


def _attribute_lines(names: Sequence[str], rows: Sequence[tuple[bool, ...]]) -> Iterator[str]:
    yield str(len(names))
    yield " ".join(SYNTH_ATTRIBUTES)
    for name, row in zip(names, rows, strict=True):
        # Width-2 right-aligned values, exactly as in the real list_attr_celeba.txt.
        yield name + " " + " ".join(" 1" if value else "-1" for value in row)
