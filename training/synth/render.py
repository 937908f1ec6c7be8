"""Drawing one face to pixels, from its :class:`~training.synth.faces.FaceParams` alone.

Every labelled attribute is drawn so it stays visible (and every absent one stays absent) on
any skin tone, hair colour and pose, which is what keeps the synthetic labels truthful.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFilter

from training.synth.colours import RGB, clamp_channel, colour_gap, luma, mix, scale_colour
from training.synth.faces import HAIR_COLOUR_ATTRIBUTES, FaceParams

# Same size as an aligned-and-cropped CelebA image, so the real-data pipeline (crop rows 40:188,
# cols 15:163, then resize) applies unchanged.
IMAGE_WIDTH = 178
IMAGE_HEIGHT = 218

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


def _skin_colour(params: FaceParams) -> RGB:
    if params.attributes["Pale_Skin"]:
        return _PALE_SKIN
    # Non-pale tones start a clear step darker than the pale colour.
    position = params.skin_tone * (len(_SKIN_RAMP) - 1)
    lower = min(int(position), len(_SKIN_RAMP) - 2)
    return mix(_SKIN_RAMP[lower], _SKIN_RAMP[lower + 1], position - lower)


def _hair_colour(params: FaceParams, skin: RGB) -> RGB | None:
    if params.attributes["Bald"]:
        return None
    labelled = next((n for n in HAIR_COLOUR_ATTRIBUTES if params.attributes[n]), None)
    colour = scale_colour(_HAIR_PALETTES[labelled][params.hair_variant % 4], params.hair_shade)
    # Where hair nearly matches the skin (copper hair on tan skin, brown on brown), lighten or
    # darken it a little so the hairline, fringe and bald scalp stay visible; the bounded factor
    # keeps the shade inside its colour class (brown never turns black).
    for step in range(1, 9):
        if colour_gap(colour, skin) >= _HAIR_SKIN_MIN_GAP:
            break
        for factor in (1.0 + 0.06 * step, 1.0 - 0.05 * step):
            candidate = scale_colour(colour, factor)
            if colour_gap(candidate, skin) >= _HAIR_SKIN_MIN_GAP:
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
        colour = mix(params.background_top, params.background_bottom, band / _BACKGROUND_BANDS)
        y0 = -_MARGIN + band * band_height
        canvas.rectangle(-_MARGIN, y0, IMAGE_WIDTH + _MARGIN, y0 + band_height + 1, colour)


def _texture_colour(hair: RGB) -> RGB:
    """Curl/strand colour: darker than light hair, lighter than near-black hair."""
    return scale_colour(hair, 0.7) if sum(hair) > 120 else mix(hair, (150, 140, 130), 0.45)


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
    shadow = mix(skin, (110, 60, 40), 0.2)
    canvas.rectangle(cx - half, cy + ry - 20.0, cx + half, 200.0, shadow)
    canvas.ellipse(cx, 200.0, half, 8.0, shadow)


def _draw_ears(canvas: _Canvas, skin: RGB, rx: float) -> None:
    ear = scale_colour(skin, 0.93)
    inner = scale_colour(skin, 0.75)
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
    highlight = mix(skin, (255, 255, 255), 0.35)
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
            canvas.line([(ex - 6.5, ey + 1.8), (ex + 6.5, ey + 1.8)], scale_colour(skin, 0.7), 1.0)
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


def _facial_hair_colour(hair: RGB | None, skin: RGB, darkening: float) -> RGB:
    """Colour for brows, mustache and goatee: the hair colour, darkened as needed.

    A minimum luminance gap to the skin keeps these labelled features visible even where the
    hair colour is close to the skin tone (e.g. brown hair on brown skin).
    """
    colour = scale_colour(hair if hair is not None else _BALD_FACIAL_HAIR, darkening)
    limit = luma(skin) - 55.0
    colour_luma = luma(colour)
    if colour_luma > limit:
        colour = scale_colour(colour, max(limit, 12.0) / max(colour_luma, 1.0))
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
    canvas.polygon([(cx, 116.0), (cx - 6.0, 133.0), (cx + 6.0, 133.0)], scale_colour(skin, 0.92))
    dark = scale_colour(skin, 0.62)
    canvas.line([(cx + 1.5, 117.0), (cx + 4.5, 130.0)], scale_colour(skin, 0.85), 1.2)
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
        lips = mix(skin, (200, 95, 100), 0.4 if male else 0.5)
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
        canvas.line(line, mix(lips, (25, 5, 10), 0.75), 1.6)
    if smiling:
        # Smile creases beside the raised corners.
        crease = mix(skin, (30, 10, 10), 0.5)
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
        clamp_channel(skin[0] + 45),
        clamp_channel(skin[1] * 0.6),
        clamp_channel(skin[2] * 0.75),
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
    band = scale_colour(colour, 0.6) if sum(colour) > 200 else mix(colour, (255, 255, 255), 0.4)
    canvas.rectangle(cx - rx - 3.0, brim_y - 7.0, cx + rx + 3.0, brim_y - 1.0, band)
    canvas.ellipse(cx, brim_y, rx + 18.0, 5.0, scale_colour(colour, 0.85))


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
