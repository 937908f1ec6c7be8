"""What a synthetic face shows: its attributes, sampled with CelebA-like frequencies and
CelebA's logical constraints, plus the unlabelled nuisance (colours, pose, lighting).

Attributes are sampled first and the picture is drawn from them (see :mod:`.render`), so the
labels are true by construction.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, replace

from training.synth.colours import RGB, clamp_channel, mix

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
    background_top = mix(vivid, (grey, grey, grey), rng.uniform(0.2, 0.6))
    # The bottom colour is a nearby shade, giving an optional soft vertical gradient.
    gradient = rng.choice((0, 0, 25, 45))
    background_bottom: RGB = (
        clamp_channel(background_top[0] + rng.randint(-gradient, gradient)),
        clamp_channel(background_top[1] + rng.randint(-gradient, gradient)),
        clamp_channel(background_top[2] + rng.randint(-gradient, gradient)),
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
