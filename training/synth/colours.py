"""RGB arithmetic shared by face sampling and rendering.

Colours are whole 0-255 levels (what PIL fills with), so every operation that returns one clamps
and rounds.
"""

from __future__ import annotations

RGB = tuple[int, int, int]


def clamp_channel(value: float) -> int:
    return max(0, min(255, round(value)))


def scale_colour(colour: RGB, factor: float) -> RGB:
    return (
        clamp_channel(colour[0] * factor),
        clamp_channel(colour[1] * factor),
        clamp_channel(colour[2] * factor),
    )


def mix(a: RGB, b: RGB, t: float) -> RGB:
    return (
        clamp_channel(a[0] + (b[0] - a[0]) * t),
        clamp_channel(a[1] + (b[1] - a[1]) * t),
        clamp_channel(a[2] + (b[2] - a[2]) * t),
    )


def colour_gap(a: RGB, b: RGB) -> int:
    """Largest per-channel difference, in 0-255 levels."""
    return max(abs(a[0] - b[0]), abs(a[1] - b[1]), abs(a[2] - b[2]))


def luma(colour: RGB) -> float:
    return 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
