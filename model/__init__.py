"""vaegan's model: networks, presets, checkpoint format and image codec. Pure: no CLI, no I/O
beyond the files it is asked to read or write (checkpoints, and `model.files` for any file whose
path someone else chose)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from model.checkpoint import (
        AttributeVector,
        Checkpoint,
        CheckpointError,
        CheckpointHeader,
        load_checkpoint,
        read_checkpoint_header,
        save_checkpoint,
    )
    from model.codec import (
        CorruptImageError,
        EmptyImageError,
        ImageDimensionsError,
        ImageError,
        ImageLimits,
        ImageTooLargeError,
        Preprocessing,
        UnsupportedImageError,
        encode_png,
        load_image_tensor,
        make_grid,
        open_image,
    )
    from model.config import (
        OBJECTIVES,
        PRESETS,
        ConfigError,
        VAEGANConfig,
        get_preset,
        make_config,
        preset_of,
    )
    from model.networks import (
        VAEGAN,
        Decoder,
        Discriminator,
        DiscriminatorOutput,
        Encoder,
        EncoderOutput,
        JointDiscriminator,
        build_vaegan,
        parameter_count,
    )

# The names above, imported when first used: `import model.demo` or `model.device` (the
# service's supervisor) must not pay for torch (2.5 s and ~150 MB) when it needs none of them.
_EXPORTS = {
    "AttributeVector": "model.checkpoint",
    "Checkpoint": "model.checkpoint",
    "CheckpointError": "model.checkpoint",
    "CheckpointHeader": "model.checkpoint",
    "load_checkpoint": "model.checkpoint",
    "read_checkpoint_header": "model.checkpoint",
    "save_checkpoint": "model.checkpoint",
    "CorruptImageError": "model.codec",
    "EmptyImageError": "model.codec",
    "ImageDimensionsError": "model.codec",
    "ImageError": "model.codec",
    "ImageLimits": "model.codec",
    "ImageTooLargeError": "model.codec",
    "Preprocessing": "model.codec",
    "UnsupportedImageError": "model.codec",
    "encode_png": "model.codec",
    "load_image_tensor": "model.codec",
    "make_grid": "model.codec",
    "open_image": "model.codec",
    "OBJECTIVES": "model.config",
    "PRESETS": "model.config",
    "ConfigError": "model.config",
    "VAEGANConfig": "model.config",
    "get_preset": "model.config",
    "make_config": "model.config",
    "preset_of": "model.config",
    "VAEGAN": "model.networks",
    "Decoder": "model.networks",
    "Discriminator": "model.networks",
    "DiscriminatorOutput": "model.networks",
    "Encoder": "model.networks",
    "EncoderOutput": "model.networks",
    "JointDiscriminator": "model.networks",
    "build_vaegan": "model.networks",
    "parameter_count": "model.networks",
}
__all__ = [
    "OBJECTIVES",
    "PRESETS",
    "VAEGAN",
    "AttributeVector",
    "Checkpoint",
    "CheckpointError",
    "CheckpointHeader",
    "ConfigError",
    "CorruptImageError",
    "Decoder",
    "Discriminator",
    "DiscriminatorOutput",
    "EmptyImageError",
    "Encoder",
    "EncoderOutput",
    "ImageDimensionsError",
    "ImageError",
    "ImageLimits",
    "ImageTooLargeError",
    "JointDiscriminator",
    "Preprocessing",
    "UnsupportedImageError",
    "VAEGANConfig",
    "build_vaegan",
    "encode_png",
    "get_preset",
    "load_checkpoint",
    "load_image_tensor",
    "make_config",
    "make_grid",
    "open_image",
    "parameter_count",
    "preset_of",
    "read_checkpoint_header",
    "save_checkpoint",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
