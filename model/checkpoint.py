"""The checkpoint format: one `.safetensors` file that rebuilds the model on its own.

Layout:
- tensors `encoder.*`, `decoder.*`, `discriminator.*`: the plain modules' state dicts;
- tensors `attributes.<name>`: one (latent_dim,) attribute vector per attribute;
- metadata `format` = "vaegan-checkpoint" and `vaegan` = a JSON header: format version, model
  config, the training objective (vaegan, vae, gan or ali), preprocessing, data set, training
  step and recipe, attribute names with the example counts behind each vector, evaluation
  figures.

Nothing is ever unpickled: safetensors holds raw tensors and JSON only. Writes go to a temporary
file that is fsynced and renamed over the target, so a reader sees the old file or the new one,
never half of one.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import struct
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_save
from torch import Tensor, nn

from model.codec import Preprocessing
from model.config import OBJECTIVES, ConfigError, VAEGANConfig, discriminator_for
from model.networks import VAEGAN

FORMAT_NAME = "vaegan-checkpoint"
FORMAT_VERSION = 1
HEADER_KEY = "vaegan"
ATTRIBUTE_PREFIX = "attributes."
NETWORK_PREFIXES = ("encoder.", "decoder.", "discriminator.")
# A safetensors header is JSON describing tensors; even huge models stay far below this.
_MAX_HEADER_BYTES = 64 * 1024 * 1024


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, with the file and the problem in the message."""

    kind = "checkpoint"  # what the file was meant to be, for the message

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.kind} {self.path}: {problem}")


@dataclass(frozen=True)
class AttributeVector:
    """mean mu(attribute present) - mean mu(attribute absent), and the counts behind it."""

    vector: Tensor  # (latent_dim,)
    positives: int
    negatives: int

    @property
    def norm(self) -> float:
        return float(self.vector.norm())


@dataclass
class CheckpointHeader:
    """Everything in a checkpoint except the tensors."""

    config: VAEGANConfig
    preprocessing: Preprocessing
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


@dataclass
class Checkpoint:
    model: VAEGAN
    header: CheckpointHeader
    attributes: dict[str, AttributeVector]
    path: Path
    sha256: str

    @property
    def config(self) -> VAEGANConfig:
        return self.header.config

    @property
    def preprocessing(self) -> Preprocessing:
        return self.header.preprocessing


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
    float16), and loading always gives a float32 model.
    """
    if parameter_dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(
            f"parameters can be stored as float32, float16 or bfloat16, not {parameter_dtype}"
        )
    vaegan = unwrap_model(model)
    if not isinstance(vaegan, VAEGAN):
        raise TypeError(f"expected a VAEGAN model, got {type(vaegan).__name__}")
    config = vaegan.config
    if (preprocessing.image_size, preprocessing.channels) != (config.image_size, config.channels):
        raise ValueError(
            f"preprocessing produces {preprocessing.channels}x{preprocessing.image_size}px images "
            f"but the model takes {config.channels}x{config.image_size}px"
        )
    objective = check_objective(str((recipe or {}).get("objective", "vaegan")), config)
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
        _check_attribute(name, attribute, config.latent_dim)
        tensors[ATTRIBUTE_PREFIX + name] = attribute.vector.detach().to("cpu", torch.float32)
        attribute_info[name] = {
            "positives": int(attribute.positives),
            "negatives": int(attribute.negatives),
            "norm": attribute.norm,
        }
    header = CheckpointHeader(
        config=config,
        preprocessing=preprocessing,
        objective=objective,
        step=int(step),
        dataset=dict(dataset or {}),
        recipe=dict(recipe or {}),
        evaluation=dict(evaluation or {}),
        attributes=attribute_info,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        software=software_versions(),
    )
    header_json = json.dumps(header.to_json(), allow_nan=False, sort_keys=False)
    data = safetensors_save(tensors, metadata={"format": FORMAT_NAME, HEADER_KEY: header_json})
    target = Path(path)
    atomic_write_bytes(target, data)
    return target


def check_objective(objective: str, config: VAEGANConfig) -> str:
    """`objective` if it is known and matches the networks' discriminator, else ValueError."""
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; known: {', '.join(OBJECTIVES)}")
    if discriminator_for(objective) != config.discriminator:
        raise ValueError(
            f"objective {objective!r} trains the {discriminator_for(objective)} discriminator "
            f"but the model has the {config.discriminator} one"
        )
    return objective


def _check_attribute(name: str, attribute: AttributeVector, latent_dim: int) -> None:
    if not name or not name.strip() or name != name.strip():
        raise ValueError(f"attribute name {name!r} must be non-empty without outer whitespace")
    if tuple(attribute.vector.shape) != (latent_dim,):
        raise ValueError(
            f"attribute {name!r} has shape {tuple(attribute.vector.shape)}, "
            f"expected ({latent_dim},)"
        )
    if not torch.isfinite(attribute.vector).all():
        raise ValueError(f"attribute {name!r} contains NaN or infinite values")
    if attribute.positives < 0 or attribute.negatives < 0:
        raise ValueError(f"attribute {name!r} has negative example counts")


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module inside DistributedDataParallel / DataParallel / torch.compile wrappers."""
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


# atomic_write_bytes writes `.<target name>.<random>.tmp` next to the target (mkstemp's random
# part has no dot), so a temporary names the file it was going to become.
_TEMPORARY_SUFFIX = ".tmp"
_TEMPORARY_NAME = re.compile(r"^\.(?P<target>.+)\.[^.]+\.tmp$")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see either the old file or the complete new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=_TEMPORARY_SUFFIX
    )
    try:
        # mkstemp creates owner-only files; give the file the mode a plain open() would, so a
        # service running as another user can read a mounted checkpoint.
        os.fchmod(fd, 0o666 & ~_current_umask())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        Path(temp_name).replace(path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def temporary_target(name: str) -> str | None:
    """The file name an `atomic_write_bytes` temporary called `name` was to become, else None."""
    match = _TEMPORARY_NAME.match(name)
    return match["target"] if match else None


def remove_stale_temporaries(directory: Path, owned: Callable[[str], bool]) -> list[Path]:
    """Delete the temporaries in `directory` of the files for which `owned(target name)` holds.

    A writer killed with SIGKILL (or by a power cut) between creating its temporary and renaming
    it leaves the temporary behind; nothing else ever removes it. Call this only for files that
    no other process may be writing right now, such as a run folder's own files at start-up.
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return removed
    for entry in entries:
        target = temporary_target(entry.name)
        if target is not None and owned(target) and entry.is_file(follow_symlinks=False):
            Path(entry.path).unlink(missing_ok=True)
            removed.append(Path(entry.path))
    return removed


def _current_umask() -> int:
    # Linux reports it without changing it; os.umask() can only be read by setting it, which
    # briefly affects every thread of the process.
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable; not every platform can open a directory.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def software_versions() -> dict[str, str]:
    try:
        vaegan_version = importlib_metadata.version("vaegan")
    except importlib_metadata.PackageNotFoundError:
        vaegan_version = "unknown"
    return {"vaegan": vaegan_version, "torch": torch.__version__}


# --------------------------------------------------------------------------------------------
# reading


def read_checkpoint_header(path: str | os.PathLike[str]) -> CheckpointHeader:
    """The header alone, without reading the weights (cheap even for large files)."""
    source = Path(path)
    size = checked_file_size(source)
    with source.open("rb") as handle:
        prefix = handle.read(min(size, 8 + _MAX_HEADER_BYTES))
    raw_header, _ = parse_safetensors_header(source, prefix, size)
    return _parse_vaegan_header(source, raw_header)


def load_checkpoint(
    path: str | os.PathLike[str], *, device: str | torch.device = "cpu"
) -> Checkpoint:
    """Rebuild the model from the file alone, in eval mode on `device`, or raise CheckpointError."""
    source = Path(path)
    size = checked_file_size(source)
    data = source.read_bytes()
    if len(data) != size:
        raise CheckpointError(source, "the file changed while it was being read")
    raw_header, _ = parse_safetensors_header(source, data, size)
    header = _parse_vaegan_header(source, raw_header)
    try:
        tensors = safetensors_load(data)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise CheckpointError(source, f"the tensor data cannot be read ({exc})") from None

    model = VAEGAN(header.config)
    weights = {k: v for k, v in tensors.items() if k.startswith(NETWORK_PREFIXES)}
    load_verified_weights(source, model, weights)
    attributes = _read_attributes(source, header, tensors)
    unexpected = sorted(set(tensors) - set(weights) - {ATTRIBUTE_PREFIX + n for n in attributes})
    if unexpected:
        raise CheckpointError(source, f"unexpected tensors: {_first(unexpected)}")
    model.to(device).eval()
    attributes = {
        name: AttributeVector(a.vector.to(device), a.positives, a.negatives)
        for name, a in attributes.items()
    }
    return Checkpoint(
        model=model,
        header=header,
        attributes=attributes,
        path=source,
        sha256=hashlib.sha256(data).hexdigest(),
    )


def checked_file_size(path: Path) -> int:
    if not path.exists():
        raise CheckpointError(path, "no such file")
    if not path.is_file():
        raise CheckpointError(path, "not a regular file")
    return path.stat().st_size


def parse_safetensors_header(path: Path, data: bytes, size: int) -> tuple[dict[str, Any], int]:
    """Validate the safetensors framing; returns the JSON header and where tensor data starts."""
    if size < 8:
        raise CheckpointError(path, f"only {size} bytes: truncated, or not a checkpoint at all")
    (header_length,) = struct.unpack("<Q", data[:8])
    if header_length > _MAX_HEADER_BYTES or 8 + header_length > size:
        raise CheckpointError(
            path,
            _foreign_format(data)
            or "not a safetensors file, or truncated inside its header "
            f"(its header length field says {header_length:,} bytes; the file has {size:,})",
        )
    try:
        raw = json.loads(data[8 : 8 + header_length])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(
            path, _foreign_format(data) or "not a safetensors file (its header is not JSON)"
        ) from None
    if not isinstance(raw, dict):
        raise CheckpointError(path, "not a safetensors file (its header is not a JSON object)")
    data_start = 8 + header_length
    data_end = data_start
    for name, info in raw.items():
        if name == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) for o in offsets)
        ):
            raise CheckpointError(path, f"tensor {name!r} has a malformed entry in the header")
        data_end = max(data_end, data_start + offsets[1])
    if data_end > size:
        raise CheckpointError(
            path, f"truncated: the header describes {data_end:,} bytes but the file has {size:,}"
        )
    if data_end < size:
        raise CheckpointError(path, f"{size - data_end:,} unexpected bytes after the tensor data")
    return raw, data_start


def _foreign_format(data: bytes) -> str | None:
    """Name the format of a file that failed to parse as safetensors, where we can tell."""
    if data[:2] == b"PK" or data[:1] == b"\x80":
        return (
            "this is a PyTorch pickle (torch.save) file, not a safetensors checkpoint; vaegan "
            "never unpickles checkpoints because unpickling can run arbitrary code"
        )
    return None


def versioned_json_metadata(
    path: Path, text: Any, *, label: str, supported: int, error: type[CheckpointError]
) -> dict[str, Any]:
    """The JSON object stored as safetensors metadata, with a format_version this code reads.

    Shared by every vaegan safetensors file kind (checkpoints, attribute judges); `error` names
    the kind in its messages.
    """
    try:
        info = json.loads(text)
    except (TypeError, json.JSONDecodeError):
        raise error(path, f"the {label} metadata is not valid JSON") from None
    if not isinstance(info, dict):
        raise error(path, f"the {label} metadata is not a JSON object")
    version = info.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise error(path, f"invalid format_version {version!r}")
    if version > supported:
        raise error(
            path,
            f"written by a newer vaegan ({error.kind} format {version}; this version reads up to "
            f"{supported}); upgrade vaegan to load it",
        )
    return info


def _parse_vaegan_header(path: Path, raw: dict[str, Any]) -> CheckpointHeader:
    metadata = raw.get("__metadata__")
    if not isinstance(metadata, dict) or HEADER_KEY not in metadata:
        raise CheckpointError(
            path, "a safetensors file, but not a vaegan checkpoint (it has no 'vaegan' metadata)"
        )
    info = versioned_json_metadata(
        path, metadata[HEADER_KEY], label="vaegan", supported=FORMAT_VERSION, error=CheckpointError
    )
    version = info["format_version"]
    try:
        config = VAEGANConfig.from_dict(info["config"])
        preprocessing = Preprocessing.from_dict(info["preprocessing"])
        attributes: dict[str, dict[str, Any]] = {}
        for entry in info.get("attributes", []):
            name = entry["name"]
            attributes[name] = {
                "positives": int(entry["positives"]),
                "negatives": int(entry["negatives"]),
                "norm": float(entry.get("norm", math.nan)),
            }
        recipe = dict(info.get("recipe", {}))
        objective = check_objective(
            str(info.get("objective") or recipe.get("objective") or "vaegan"), config
        )
        return CheckpointHeader(
            config=config,
            preprocessing=preprocessing,
            objective=objective,
            step=int(info.get("step", 0)),
            dataset=dict(info.get("dataset", {})),
            recipe=recipe,
            evaluation=dict(info.get("evaluation", {})),
            attributes=attributes,
            format_version=version,
            created_at=str(info.get("created_at", "")),
            software=dict(info.get("software", {})),
        )
    except ConfigError as exc:
        raise CheckpointError(path, f"its model config is invalid ({exc})") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(path, f"the vaegan metadata is malformed ({exc!r})") from None


def load_verified_weights(path: Path, model: nn.Module, weights: dict[str, Tensor]) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(weights))
    if missing:
        raise CheckpointError(path, f"missing weights: {_first(missing)}")
    unexpected = sorted(set(weights) - set(expected))
    if unexpected:
        raise CheckpointError(path, f"weights this model does not have: {_first(unexpected)}")
    wrong_shape = [
        f"{name} {tuple(weights[name].shape)} (expected {tuple(tensor.shape)})"
        for name, tensor in expected.items()
        if weights[name].shape != tensor.shape
    ]
    if wrong_shape:
        raise CheckpointError(path, f"weights with the wrong shape: {_first(wrong_shape)}")
    not_finite = [
        name
        for name, tensor in weights.items()
        if tensor.is_floating_point() and not torch.isfinite(tensor).all()
    ]
    if not_finite:
        raise CheckpointError(path, f"NaN or infinite values in {_first(not_finite)}")
    model.load_state_dict(weights, strict=True)


def _read_attributes(
    path: Path, header: CheckpointHeader, tensors: dict[str, Tensor]
) -> dict[str, AttributeVector]:
    attributes: dict[str, AttributeVector] = {}
    for name, info in header.attributes.items():
        vector = tensors.get(ATTRIBUTE_PREFIX + name)
        if vector is None:
            raise CheckpointError(path, f"attribute {name!r} is listed but its vector is missing")
        if tuple(vector.shape) != (header.config.latent_dim,):
            raise CheckpointError(
                path,
                f"attribute {name!r} has shape {tuple(vector.shape)}, "
                f"expected ({header.config.latent_dim},)",
            )
        if not torch.isfinite(vector).all():
            raise CheckpointError(path, f"attribute {name!r} contains NaN or infinite values")
        attributes[name] = AttributeVector(
            vector.to(torch.float32), info["positives"], info["negatives"]
        )
    return attributes


def _first(items: list[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown} and {len(items) - limit} more"
