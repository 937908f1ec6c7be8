"""The checkpoint format: one `.safetensors` file that rebuilds the model on its own.

Layout:
- tensors `encoder.*`, `decoder.*`, `discriminator.*`: the plain modules' state dicts;
- tensors `attributes.<name>`: one (latent_dim,) attribute vector per attribute;
- metadata `format` = "vaegan-checkpoint" and `vaegan` = a JSON header: format version, model
  config and the preset it was built from, the training objective (vaegan, vae, gan or ali),
  preprocessing, data set, training step and recipe, attribute names with the example counts
  behind each vector, evaluation figures.

The file's framing, JSON metadata and weight checks are `model.safetensors_file`'s, shared with
the attribute judges; writes are `model.atomic`'s, so a reader sees the old file or the new one,
never half of one. This module holds the checkpoint's schema and rules.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import reprlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors import SafetensorError
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_save
from torch import Tensor, nn

from model.atomic import atomic_write_bytes
from model.codec import Preprocessing
from model.config import (
    OBJECTIVES,
    PRESETS,
    ConfigError,
    VAEGANConfig,
    discriminator_for,
    preset_of,
)
from model.networks import VAEGAN
from model.safetensors_file import (
    SafetensorsFileError,
    SafetensorsHeader,
    TensorLayout,
    WeightSpec,
    dtype_name,
    first_items,
    json_entry,
    layout_of,
    layout_problem,
    module_layout,
    read_safetensors_file,
    read_safetensors_header,
    versioned_json_metadata,
    weights_problem,
)

FORMAT_NAME = "vaegan-checkpoint"
FORMAT_VERSION = 1
HEADER_KEY = "vaegan"
ATTRIBUTE_PREFIX = "attributes."
NETWORK_PREFIXES = ("encoder.", "decoder.", "discriminator.")
# What network parameters may be stored as; batch-norm statistics and attribute vectors are
# always float32, and every tensor loads as its float32 (or int64) model counterpart.
PARAMETER_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# CelebA labels 40 attributes; a header listing more than this is not describing a model.
MAX_ATTRIBUTES = 1000
# Where `Checkpoint.default_edit_strength` found its value.
StrengthSource = Literal["attribute", "evaluation", "none"]


class CheckpointError(SafetensorsFileError):
    """A checkpoint that cannot be read, with the file and the problem in the message."""

    kind = "checkpoint"


@dataclass(frozen=True)
class AttributeVector:
    """mean mu(attribute present) - mean mu(attribute absent), and the counts behind it."""

    vector: Tensor  # (latent_dim,)
    positives: int
    negatives: int
    # The s an edit mu + s * vector uses when a request names none, chosen per attribute on
    # validation faces (`vaegan-train strengths`); None: not chosen.
    default_strength: float | None = None

    @property
    def norm(self) -> float:
        return float(self.vector.norm())


@dataclass
class CheckpointHeader:
    """Everything in a checkpoint except the tensors."""

    config: VAEGANConfig
    preprocessing: Preprocessing
    # The named preset the networks were built from (model.config.PRESETS), None for a custom
    # network. Files from before the field have theirs found from the config.
    preset: str | None = None
    # What the weights were trained for. Files from before ALI lack the field; theirs is the
    # recipe's objective, else "vaegan".
    objective: str = "vaegan"
    step: int = 0
    dataset: dict[str, Any] = field(default_factory=dict)
    recipe: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)
    # name -> {"positives": int, "negatives": int, "norm": float}, in the order they were saved
    attributes: dict[str, dict[str, Any]] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    created_at: str = ""
    software: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "config": self.config.to_dict(),
            "preset": self.preset,
            "objective": self.objective,
            "preprocessing": self.preprocessing.to_dict(),
            "step": self.step,
            "dataset": self.dataset,
            "recipe": self.recipe,
            "evaluation": self.evaluation,
            "attributes": [{"name": name, **info} for name, info in self.attributes.items()],
            "created_at": self.created_at,
            "software": self.software,
        }

    @property
    def recipe_name(self) -> str | None:
        """The named training recipe the run was closest to, with what differed ("authors",
        "authors + gamma=0.001"), as `vaegan-train fit` records it; None when not recorded."""
        name = self.recipe.get("name")
        return name if isinstance(name, str) else None


@dataclass
class Checkpoint:
    model: VAEGAN
    header: CheckpointHeader
    attributes: dict[str, AttributeVector]
    path: Path
    sha256: str
    # How the file stores the network parameters, so a rewrite (new attribute vectors, chosen
    # strengths) keeps a float16 file float16.
    parameter_dtype: torch.dtype = torch.float32

    @property
    def config(self) -> VAEGANConfig:
        return self.header.config

    @property
    def preprocessing(self) -> Preprocessing:
        return self.header.preprocessing

    def default_edit_strength(
        self, name: str, *, at_most: float = math.inf
    ) -> tuple[float, StrengthSource]:
        """The s an edit of attribute `name` uses when none is asked for, and where it comes
        from: the attribute's own (chosen on validation faces by `vaegan-train strengths`), else
        the one strength the evaluation chose for every attribute, else 1, one vector's worth.
        A recorded value that is not a positive number up to `at_most` is passed over."""
        attribute = self.attributes.get(name)
        candidates: tuple[tuple[object, StrengthSource], ...] = (
            (attribute.default_strength if attribute is not None else None, "attribute"),
            (self.header.evaluation.get("edit_strength"), "evaluation"),
        )
        for recorded, source in candidates:
            strength = _usable_strength(recorded, at_most)
            if strength is not None:
                return strength, source
        return 1.0, "none"


def _usable_strength(recorded: object, at_most: float) -> float | None:
    if isinstance(recorded, bool) or not isinstance(recorded, int | float):
        return None
    return float(recorded) if 0 < recorded <= at_most else None


# --------------------------------------------------------------------------------------------
# writing


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    *,
    preprocessing: Preprocessing,
    step: int = 0,
    dataset: dict[str, Any] | None = None,
    recipe: dict[str, Any] | None = None,
    evaluation: dict[str, Any] | None = None,
    attributes: dict[str, AttributeVector] | None = None,
    parameter_dtype: torch.dtype = torch.float32,
) -> Path:
    """Write a checkpoint atomically and return its path.

    `model` may be wrapped in DistributedDataParallel or `torch.compile`; the plain module's
    weights are saved so loaders never strip prefixes. `parameter_dtype=torch.float16` halves
    the file; batch-norm statistics stay float32 (tiny, and their variances can underflow
    float16), and loading always gives a float32 model. A checkpoint that `load_checkpoint`
    would refuse is refused here (ValueError) and nothing is written.
    """
    if parameter_dtype not in PARAMETER_DTYPES:
        raise ValueError(
            f"parameters can be stored as float32, float16 or bfloat16, not {parameter_dtype}"
        )
    vaegan = unwrap_model(model)
    if not isinstance(vaegan, VAEGAN):
        raise TypeError(f"expected a VAEGAN model, got {type(vaegan).__name__}")
    attributes = attributes or {}
    parameter_names = {name for name, _ in vaegan.named_parameters()}
    tensors: dict[str, Tensor] = {
        name: value.detach()
        .to("cpu", parameter_dtype if name in parameter_names else value.dtype)
        .contiguous()
        for name, value in vaegan.state_dict().items()
    }
    attribute_info: dict[str, dict[str, Any]] = {}
    for name, attribute in attributes.items():
        tensors[ATTRIBUTE_PREFIX + name] = attribute.vector.detach().to("cpu", torch.float32)
        attribute_info[name] = {
            "positives": int(attribute.positives),
            "negatives": int(attribute.negatives),
            "norm": attribute.norm,
        }
        if attribute.default_strength is not None:
            attribute_info[name]["default_strength"] = float(attribute.default_strength)
    header = CheckpointHeader(
        config=vaegan.config,
        preprocessing=preprocessing,
        preset=preset_of(vaegan.config),
        objective=str((recipe or {}).get("objective", "vaegan")),
        step=int(step),
        dataset=dict(dataset or {}),
        recipe=dict(recipe or {}),
        evaluation=dict(evaluation or {}),
        attributes=attribute_info,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        software=software_versions(),
    )
    # The loader's own checks, applied to exactly what is about to be written (values first:
    # a NaN vector has a NaN norm, which JSON cannot even hold).
    problem = weights_problem(tensors)
    if problem is None:
        header_json = json.dumps(header.to_json(), allow_nan=False, sort_keys=False)
        target = Path(path)
        written = _parse_vaegan_header(target, {"__metadata__": {HEADER_KEY: header_json}})
        problem = checkpoint_problem(written, layout_of(tensors))
    if problem is not None:
        raise ValueError(problem)
    data = safetensors_save(tensors, metadata={"format": FORMAT_NAME, HEADER_KEY: header_json})
    atomic_write_bytes(target, data)
    return target


# --------------------------------------------------------------------------------------------
# the rules: every file save_checkpoint writes, load_checkpoint reads, and nothing else


def checkpoint_problem(header: CheckpointHeader, layout: Mapping[str, TensorLayout]) -> str | None:
    """The first rule that a checkpoint with this header and these tensors breaks, else None.

    Needs no tensor data, only names, shapes and dtypes: `load_checkpoint` applies it to what
    the file's safetensors header declares before it reads any weights or builds a network,
    `save_checkpoint` to what it is about to write. `weights_problem` checks the values.
    """
    config, preprocessing = header.config, header.preprocessing
    if (preprocessing.image_size, preprocessing.channels) != (config.image_size, config.channels):
        return (
            f"preprocessing produces {preprocessing.channels}x{preprocessing.image_size}px "
            f"images but the model takes {config.channels}x{config.image_size}px"
        )
    if header.objective not in OBJECTIVES:
        return f"unknown objective {header.objective!r}; known: {', '.join(OBJECTIVES)}"
    if discriminator_for(header.objective) != config.discriminator:
        return (
            f"objective {header.objective!r} trains the {discriminator_for(header.objective)} "
            f"discriminator but the model has the {config.discriminator} one"
        )
    if header.step < 0:
        return f"the training step is negative ({header.step})"
    if len(header.attributes) > MAX_ATTRIBUTES:
        return f"{len(header.attributes):,} attribute vectors; at most {MAX_ATTRIBUTES} are allowed"
    for name, info in header.attributes.items():
        if not name or name != name.strip():
            return f"attribute name {name!r} must be non-empty without outer whitespace"
        if info["positives"] < 0 or info["negatives"] < 0:
            return f"attribute {name!r} has negative example counts"
        strength = info.get("default_strength")
        if strength is not None and not (math.isfinite(strength) and strength > 0):
            return f"attribute {name!r} has default strength {strength}; it must be positive"
    network = {name: found for name, found in layout.items() if name.startswith(NETWORK_PREFIXES)}
    problem = layout_problem(network_layout(config), network)
    if problem is not None:
        return problem
    for name in header.attributes:
        vector = layout.get(ATTRIBUTE_PREFIX + name)
        if vector is None:
            return f"attribute {name!r} is listed but its vector is missing"
        if vector.shape != (config.latent_dim,):
            return f"attribute {name!r} has shape {vector.shape}, expected ({config.latent_dim},)"
        if vector.dtype != torch.float32:
            return f"attribute {name!r} is stored as {dtype_name(vector.dtype)}, not float32"
    listed = {ATTRIBUTE_PREFIX + name for name in header.attributes}
    unexpected = sorted(set(layout) - set(network) - listed)
    if unexpected:
        return f"unexpected tensors: {first_items(unexpected)}"
    # Last: a config that its tensors contradict is the better answer.
    if header.preset in PRESETS and preset_of(config) != header.preset:
        return f"the header names preset {header.preset!r} but the networks are not that preset's"
    return None


@functools.lru_cache(maxsize=8)
def network_layout(config: VAEGANConfig) -> dict[str, WeightSpec]:
    """The weights `VAEGAN(config)` has, found without allocating them: a config read from a
    file can describe networks of any size, and is refused before any of them is built."""
    with torch.device("meta"):
        skeleton = VAEGAN(config)
    return module_layout(skeleton, PARAMETER_DTYPES)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module inside DistributedDataParallel / DataParallel / torch.compile wrappers."""
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def software_versions() -> dict[str, str]:
    try:
        vaegan_version = importlib_metadata.version("vaegan")
    except importlib_metadata.PackageNotFoundError:
        vaegan_version = "unknown"
    return {"vaegan": vaegan_version, "torch": torch.__version__}


# --------------------------------------------------------------------------------------------
# reading


def read_checkpoint_header(path: str | os.PathLike[str]) -> CheckpointHeader:
    """The header alone, without reading the weights (cheap even for large files).

    It passes every check that needs no tensor data, so `load_checkpoint` refuses the file only
    for its weights' values.
    """
    source = Path(path)
    return _accept_header(source, read_safetensors_header(source, CheckpointError))


def load_checkpoint(
    path: str | os.PathLike[str], *, device: str | torch.device = "cpu"
) -> Checkpoint:
    """Rebuild the model from the file alone, in eval mode on `device`, or raise CheckpointError.

    The header is checked against the tensors it declares before any weights are read or any
    network is built, so a refusal costs milliseconds whatever the file claims.
    """
    source = Path(path)
    header, data = read_safetensors_file(
        source, lambda framing: _accept_header(source, framing), CheckpointError
    )
    try:
        tensors = safetensors_load(data)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise CheckpointError(source, f"the tensor data cannot be read ({exc})") from None
    problem = weights_problem(tensors)
    if problem is not None:
        raise CheckpointError(source, problem)
    model = VAEGAN(header.config)
    model.load_state_dict(
        {name: t for name, t in tensors.items() if name.startswith(NETWORK_PREFIXES)}, strict=True
    )
    model.to(device).eval()
    attributes = {
        name: AttributeVector(
            tensors[ATTRIBUTE_PREFIX + name].to(device),
            info["positives"],
            info["negatives"],
            info.get("default_strength"),
        )
        for name, info in header.attributes.items()
    }
    first_parameter = next(name for name, _ in model.named_parameters())
    return Checkpoint(
        model=model,
        header=header,
        attributes=attributes,
        path=source,
        sha256=hashlib.sha256(data).hexdigest(),
        parameter_dtype=tensors[first_parameter].dtype,
    )


def _accept_header(path: Path, framing: SafetensorsHeader) -> CheckpointHeader:
    header = _parse_vaegan_header(path, framing.raw)
    problem = checkpoint_problem(header, framing.tensors)
    if problem is not None:
        raise CheckpointError(path, problem)
    return header


def _parse_vaegan_header(path: Path, raw: dict[str, Any]) -> CheckpointHeader:
    metadata = raw.get("__metadata__")
    if not isinstance(metadata, dict) or HEADER_KEY not in metadata:
        raise CheckpointError(
            path, "a safetensors file, but not a vaegan checkpoint (it has no 'vaegan' metadata)"
        )
    info = versioned_json_metadata(
        path, metadata[HEADER_KEY], label="vaegan", supported=FORMAT_VERSION, error=CheckpointError
    )
    try:
        config = VAEGANConfig.from_dict(json_entry(info, "config", dict))
        recipe = json_entry(info, "recipe", dict, {})
        # Files from before ALI record the objective in the recipe only, or not at all.
        objective = info.get("objective") or recipe.get("objective") or "vaegan"
        if not isinstance(objective, str):
            raise ValueError(f"objective must be a string, got {reprlib.repr(objective)}")
        # A name this release does not know (a newer release's preset) is kept as written.
        preset = info["preset"] if "preset" in info else preset_of(config)
        if preset is not None and not isinstance(preset, str):
            raise ValueError(f"preset must be a string or null, got {reprlib.repr(preset)}")
        return CheckpointHeader(
            config=config,
            preprocessing=Preprocessing.from_dict(json_entry(info, "preprocessing", dict)),
            preset=preset,
            objective=objective,
            step=json_entry(info, "step", int, 0),
            dataset=json_entry(info, "dataset", dict, {}),
            recipe=recipe,
            evaluation=json_entry(info, "evaluation", dict, {}),
            attributes=_parse_attribute_list(json_entry(info, "attributes", list, [])),
            format_version=info["format_version"],
            created_at=json_entry(info, "created_at", str, ""),
            software=json_entry(info, "software", dict, {}),
        )
    except ConfigError as exc:
        raise CheckpointError(path, f"its model config is invalid ({exc})") from None
    except KeyError as exc:
        raise CheckpointError(path, f"the vaegan metadata is malformed (no {exc})") from None
    except (TypeError, ValueError) as exc:
        raise CheckpointError(path, f"the vaegan metadata is malformed ({exc})") from None


def _parse_attribute_list(entries: list[Any]) -> dict[str, dict[str, Any]]:
    attributes: dict[str, dict[str, Any]] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            raise ValueError(f"attributes must be JSON objects, got {reprlib.repr(entry)}")
        name = json_entry(entry, "name", str)
        if name in attributes:
            raise ValueError(f"attribute {name!r} is listed twice")
        norm = entry.get("norm", math.nan)
        if not isinstance(norm, int | float) or isinstance(norm, bool):
            raise ValueError(f"norm must be a number, got {reprlib.repr(norm)}")
        attributes[name] = {
            "positives": json_entry(entry, "positives", int),
            "negatives": json_entry(entry, "negatives", int),
            "norm": float(norm),
        }
        if "default_strength" in entry:
            strength = entry["default_strength"]
            if not isinstance(strength, int | float) or isinstance(strength, bool):
                raise ValueError(f"default_strength must be a number, got {reprlib.repr(strength)}")
            attributes[name]["default_strength"] = float(strength)
    return attributes
