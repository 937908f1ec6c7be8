"""Network configuration: one dataclass every network takes, and the named presets.

The checkpoint stores `VAEGANConfig.to_dict()`, so a loader rebuilds the exact networks from the
file alone. `paper64` is the authors' 64x64 architecture (andersbll/autoencoding_beyond_pixels,
`architectures.img64x64`); `paper32` is their `img32x32`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import reprlib
import typing
from dataclasses import dataclass
from typing import Any, Literal, TypeGuard

InitScheme = Literal["authors", "pytorch"]
# "image" is the VAE-GAN's D(x); "joint" is ALI's D(x, z) (Dumoulin et al. 2016).
DiscriminatorKind = Literal["image", "joint"]
# What a model was trained for; a checkpoint records it. "ali" needs the joint discriminator,
# every other objective the image one.
Objective = Literal["vaegan", "vae", "gan", "ali"]
OBJECTIVES: tuple[Objective, ...] = ("vaegan", "vae", "gan", "ali")


def discriminator_for(objective: str) -> DiscriminatorKind:
    return "joint" if objective == "ali" else "image"


class ConfigError(ValueError):
    """A configuration that cannot build working networks, with the reason."""


# Far beyond any model this code is meant for (the paper's is 64px, z = 128, 1024 wide, 5x5
# kernels), yet small enough that a config read from a file cannot ask for networks no machine
# could build.
MAX_IMAGE_SIZE = 1024
MAX_LATENT_DIM = 4096
MAX_WIDTH = 8192
MAX_KERNEL_SIZE = 15


@dataclass(frozen=True)
class VAEGANConfig:
    """Everything needed to build the encoder, decoder and discriminator.

    The number of stride-2 stages is `len(encoder_channels)`; the decoder and the discriminator
    use the same number, so the spatial size at the bottleneck is `image_size / 2**stages`.
    """

    image_size: int = 64
    channels: int = 3
    latent_dim: int = 128
    kernel_size: int = 5
    # Encoder: stride-2 conv + BN + ReLU per entry, then FC + BN + ReLU, then the mu/logvar heads.
    encoder_channels: tuple[int, ...] = (64, 128, 256)
    encoder_fc: int = 1024
    # Decoder: FC to (decoder_base_channels, base, base), then a stride-2 transposed conv per entry,
    # then a stride-1 conv to `channels` with tanh.
    decoder_base_channels: int = 256
    decoder_channels: tuple[int, ...] = (256, 128, 32)
    # Discriminator: stride-1 conv + ReLU (no BN), then stride-2 conv + BN + ReLU per entry,
    # FC + BN + ReLU, FC to one logit. Dis_l is the last conv's output before its BN.
    discriminator_first_channels: int = 32
    discriminator_channels: tuple[int, ...] = (128, 256, 256)
    discriminator_fc: int = 512
    # "joint" (ALI) keeps the image layers above (with leaky ReLUs) and adds a latent branch of
    # two discriminator_fc-wide layers and joint layers 2 * discriminator_fc wide, with dropout
    # after every hidden layer as in the ALI paper.
    discriminator: DiscriminatorKind = "image"
    joint_dropout: float = 0.2
    # Batch norm as in the authors' DeepPy code: momentum 0.9 there is 0.1 in PyTorch's convention;
    # eps 1e-6 for the spatial (conv) BN, DeepPy's default 1e-5 for the fully connected BN.
    bn_momentum: float = 0.1
    conv_bn_eps: float = 1e-6
    fc_bn_eps: float = 1e-5
    init: InitScheme = "authors"
    init_gain: float = 1.0

    def __post_init__(self) -> None:
        # Tuples arrive as lists from JSON; normalise so equality and hashing behave. Their
        # elements are checked, not converted: int() would turn true, 2.5 or "64" into widths.
        for name in ("encoder_channels", "decoder_channels", "discriminator_channels"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
        self.validate()

    @property
    def stages(self) -> int:
        return len(self.encoder_channels)

    @property
    def base_size(self) -> int:
        """Spatial size at the bottleneck, e.g. 8 for 64x64 inputs and three stages."""
        return self.image_size >> self.stages

    @property
    def similarity_shape(self) -> tuple[int, int, int]:
        """Shape of one image's Dis_l features (C, H, W)."""
        return (self.discriminator_channels[-1], self.base_size, self.base_size)

    def validate(self) -> None:
        problems = _type_problems(self)
        if problems:
            # The checks below compare numbers; with the wrong types they would only crash.
            raise ConfigError("invalid VAEGANConfig: " + "; ".join(problems))
        if self.channels not in (1, 3):
            problems.append(f"channels must be 1 or 3, got {self.channels}")
        if self.latent_dim < 1:
            problems.append(f"latent_dim must be positive, got {self.latent_dim}")
        elif self.latent_dim > MAX_LATENT_DIM:
            problems.append(f"latent_dim must be at most {MAX_LATENT_DIM}, got {self.latent_dim}")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            problems.append(f"kernel_size must be odd and positive, got {self.kernel_size}")
        elif self.kernel_size > MAX_KERNEL_SIZE:
            problems.append(
                f"kernel_size must be at most {MAX_KERNEL_SIZE}, got {self.kernel_size}"
            )
        if not self.encoder_channels:
            problems.append("encoder_channels must name at least one stride-2 stage")
        stage_counts = {
            len(self.encoder_channels),
            len(self.decoder_channels),
            len(self.discriminator_channels),
        }
        if len(stage_counts) != 1:
            problems.append(
                "encoder_channels, decoder_channels and discriminator_channels must have the "
                f"same length (stride-2 stages), got {len(self.encoder_channels)}, "
                f"{len(self.decoder_channels)} and {len(self.discriminator_channels)}"
            )
        if self.image_size < 8:
            problems.append(f"image_size must be at least 8, got {self.image_size}")
        elif self.image_size > MAX_IMAGE_SIZE:
            problems.append(f"image_size must be at most {MAX_IMAGE_SIZE}, got {self.image_size}")
        elif self.encoder_channels and (
            self.image_size % (1 << self.stages) != 0 or self.image_size >> self.stages < 2
        ):
            problems.append(
                f"image_size {self.image_size} must be divisible by 2**stages = "
                f"{1 << self.stages} with a bottleneck of at least 2x2"
            )
        widths = [
            *self.encoder_channels,
            *self.decoder_channels,
            *self.discriminator_channels,
            self.encoder_fc,
            self.decoder_base_channels,
            self.discriminator_first_channels,
            self.discriminator_fc,
        ]
        if any(w < 1 for w in widths):
            problems.append("every layer width must be positive")
        if any(w > MAX_WIDTH for w in widths):
            problems.append(f"every layer width must be at most {MAX_WIDTH}, got {max(widths)}")
        if not 0.0 < self.bn_momentum <= 1.0:
            problems.append(f"bn_momentum must be in (0, 1], got {self.bn_momentum}")
        if self.conv_bn_eps <= 0 or self.fc_bn_eps <= 0:
            problems.append("batch-norm eps values must be positive")
        if self.init not in ("authors", "pytorch"):
            problems.append(f"init must be 'authors' or 'pytorch', got {self.init!r}")
        if self.discriminator not in ("image", "joint"):
            problems.append(f"discriminator must be 'image' or 'joint', got {self.discriminator!r}")
        if not 0.0 <= self.joint_dropout < 1.0:
            problems.append(f"joint_dropout must be in [0, 1), got {self.joint_dropout}")
        if not math.isfinite(self.init_gain) or self.init_gain <= 0:
            problems.append(f"init_gain must be a positive number, got {self.init_gain}")
        if problems:
            raise ConfigError("invalid VAEGANConfig: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VAEGANConfig:
        """Rebuild from `to_dict()` output; unknown keys are refused rather than ignored."""
        if not isinstance(data, dict):
            raise ConfigError(f"a model config must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown model config keys: {', '.join(unknown)}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ConfigError(f"malformed model config: {exc}") from exc

    def replace(self, **changes: Any) -> VAEGANConfig:
        return dataclasses.replace(self, **changes)


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def is_whole_number(value: object) -> TypeGuard[int]:
    """An int that is not a bool (JSON's true is no size)."""
    return isinstance(value, int) and not isinstance(value, bool)


@functools.cache
def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(VAEGANConfig)


def _type_problems(config: VAEGANConfig) -> list[str]:
    """What does not have its annotated type (JSON's true is no width, 1e6 is no latent size)."""
    problems = []
    for name, kind in _field_types().items():
        value = getattr(config, name)
        if kind is int and not is_whole_number(value):
            problems.append(f"{name} must be a whole number, got {reprlib.repr(value)}")
        elif kind is float and not (
            isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        ):
            problems.append(f"{name} must be a finite number, got {reprlib.repr(value)}")
        elif typing.get_origin(kind) is tuple and not (
            isinstance(value, tuple) and all(is_whole_number(v) for v in value)
        ):
            problems.append(f"{name} must be a list of whole numbers, got {reprlib.repr(value)}")
        elif typing.get_origin(kind) is Literal and not isinstance(value, str):
            problems.append(f"{name} must be a string, got {reprlib.repr(value)}")
    return problems


def stages_for_size(image_size: int) -> int:
    """Stride-2 stages for a square input: an 8x8 bottleneck from 64 up, the authors' 4x4 at 32."""
    if image_size < 32 or image_size & (image_size - 1):
        raise ConfigError(f"image_size must be a power of two >= 32, got {image_size}")
    return max(3, int(math.log2(image_size)) - 3)


def _widen(channels: tuple[int, ...], stages: int, *, at_front: bool) -> tuple[int, ...]:
    """Grow a 3-stage channel list to `stages` by repeating the widest layer."""
    extra = stages - len(channels)
    if extra <= 0:
        return channels
    widest = (max(channels),) * extra
    return widest + channels if at_front else channels + widest


Width = Literal["paper", "medium", "small"]
# Fraction of the paper's layer widths, and the narrowest layer allowed.
_WIDTH_DIVISORS: dict[str, tuple[int, int]] = {"medium": (4, 8), "small": (8, 4)}


def make_config(image_size: int = 64, channels: int = 3, *, width: Width = "paper") -> VAEGANConfig:
    """A config for any power-of-two size >= 32, following the authors' layouts.

    32 is the authors' `img32x32`, 64 their `img64x64`; larger sizes add stride-2 stages at the
    authors' widest width so the bottleneck stays 8x8.
    """
    stages = stages_for_size(image_size)
    if image_size == 32:
        paper = VAEGANConfig(
            image_size=32,
            channels=channels,
            decoder_channels=(192, 128, 32),
            discriminator_channels=(128, 192, 256),
        )
    else:
        base = VAEGANConfig()
        paper = base.replace(
            image_size=image_size,
            channels=channels,
            encoder_channels=_widen(base.encoder_channels, stages, at_front=False),
            decoder_channels=_widen(base.decoder_channels, stages, at_front=True),
            discriminator_channels=_widen(base.discriminator_channels, stages, at_front=False),
        )
    if width == "paper":
        return paper
    if width in _WIDTH_DIVISORS:
        # small: an eighth of every width (~1/64 of the FLOPs): a full training step at batch 64
        # takes ~0.3 s on 2 CPU cores, but its GAN learns faces slowly. medium: a quarter (~0.7 s
        # per step there), whose VAE-GAN samples were recognisable faces after 1,200 steps on the
        # synthetic set (non-saturating loss). z stays 128 so attribute arithmetic is unchanged.
        divisor, narrowest = _WIDTH_DIVISORS[width]

        def narrow(c: int) -> int:
            return max(narrowest, c // divisor)

        return paper.replace(
            encoder_channels=tuple(narrow(c) for c in paper.encoder_channels),
            encoder_fc=narrow(paper.encoder_fc),
            decoder_base_channels=narrow(paper.decoder_base_channels),
            decoder_channels=tuple(narrow(c) for c in paper.decoder_channels),
            discriminator_first_channels=narrow(paper.discriminator_first_channels),
            discriminator_channels=tuple(narrow(c) for c in paper.discriminator_channels),
            discriminator_fc=narrow(paper.discriminator_fc),
        )
    raise ConfigError(f"width must be 'paper', 'medium' or 'small', got {width!r}")


PRESETS: dict[str, VAEGANConfig] = {
    f"{width}{size}": make_config(size, width=width)
    for width in ("paper", "medium", "small")
    for size in (32, 64, 128)
}


def get_preset(name: str, *, channels: int | None = None) -> VAEGANConfig:
    """A named preset, optionally for 1-channel (greyscale) data."""
    try:
        config = PRESETS[name]
    except KeyError:
        raise ConfigError(
            f"unknown preset {name!r}; choose one of: {', '.join(sorted(PRESETS))}"
        ) from None
    return config if channels is None else config.replace(channels=channels)


def preset_of(config: VAEGANConfig) -> str | None:
    """The preset `config`'s networks were built from, else None (a custom network).

    `vaegan-train fit` builds on a preset with the data's channel count, the objective's
    discriminator (ALI's joint one) and the chosen initialisation; none of those makes a
    network custom, so they are not compared.
    """
    for name, preset in PRESETS.items():
        same_choices = preset.replace(
            channels=config.channels, discriminator=config.discriminator, init=config.init
        )
        if same_choices == config:
            return name
    return None
