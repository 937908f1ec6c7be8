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

import functools
import hashlib
import json
import math
import os
import re
import reprlib
import struct
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_save
from torch import Tensor, nn

from model.codec import Preprocessing
from model.config import OBJECTIVES, ConfigError, VAEGANConfig, discriminator_for, is_whole_number
from model.files import (
    FileRefusedError,
    JSONLimitError,
    open_regular_file,
    read_exactly,
    strict_json_loads,
)
from model.networks import VAEGAN

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
# A safetensors header is JSON describing tensors; even huge models stay far below this.
_MAX_HEADER_BYTES = 64 * 1024 * 1024
# The tensor types the safetensors format names, as torch dtypes. Names outside this table
# (unsigned, 8-bit floats) never appear in a vaegan file.
_SAFETENSORS_DTYPES = {
    "BOOL": torch.bool,
    "U8": torch.uint8,
    "I8": torch.int8,
    "I16": torch.int16,
    "I32": torch.int32,
    "I64": torch.int64,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F32": torch.float32,
    "F64": torch.float64,
}


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, with the file and the problem in the message."""

    kind = "checkpoint"  # what the file was meant to be, for the message

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.kind} {self.path}: {problem}")


class TensorLayout(NamedTuple):
    """What a safetensors header declares about one tensor, before any of its data is read."""

    shape: tuple[int, ...]
    dtype: torch.dtype


class WeightSpec(NamedTuple):
    """What a network expects of one state-dict entry."""

    shape: tuple[int, ...]
    dtypes: tuple[torch.dtype, ...]  # any of these


class SafetensorsHeader(NamedTuple):
    raw: dict[str, Any]  # the JSON header as read, "__metadata__" included
    tensors: dict[str, TensorLayout]
    data_start: int  # offset of the tensor data in the file


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
    # How the file stores the network parameters, so a rewrite (new attribute vectors, chosen
    # strengths) keeps a float16 file float16.
    parameter_dtype: torch.dtype = torch.float32

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
            return f"attribute {name!r} is stored as {_dtype_name(vector.dtype)}, not float32"
    listed = {ATTRIBUTE_PREFIX + name for name in header.attributes}
    unexpected = sorted(set(layout) - set(network) - listed)
    if unexpected:
        return f"unexpected tensors: {_first(unexpected)}"
    return None


def weights_problem(tensors: Mapping[str, Tensor]) -> str | None:
    """The first value no trained network can have, else None.

    A NaN weight or a negative batch-norm variance (whose square root is NaN) loads without
    complaint and then turns every output into NaN.
    """
    not_finite = [
        name
        for name, tensor in tensors.items()
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())
    ]
    if not_finite:
        return f"NaN or infinite values in {_first(not_finite)}"
    negative = [
        name
        for name, tensor in tensors.items()
        if name.endswith("running_var") and bool((tensor < 0).any())
    ]
    if negative:
        return f"negative batch-norm variances in {_first(negative)}"
    return None


def layout_problem(
    expected: Mapping[str, WeightSpec], found: Mapping[str, TensorLayout]
) -> str | None:
    """How the tensors `found` differ from the state dict a network `expected`, else None."""
    missing = sorted(set(expected) - set(found))
    if missing:
        return f"missing weights: {_first(missing)}"
    unexpected = sorted(set(found) - set(expected))
    if unexpected:
        return f"weights this model does not have: {_first(unexpected)}"
    wrong_shape = [
        f"{name} {found[name].shape} (expected {spec.shape})"
        for name, spec in expected.items()
        if found[name].shape != spec.shape
    ]
    if wrong_shape:
        return f"weights with the wrong shape: {_first(wrong_shape)}"
    wrong_type = [
        f"{name} {_dtype_name(found[name].dtype)} "
        f"(expected {' or '.join(map(_dtype_name, spec.dtypes))})"
        for name, spec in expected.items()
        if found[name].dtype not in spec.dtypes
    ]
    if wrong_type:
        return f"weights of the wrong type: {_first(wrong_type)}"
    return None


def module_layout(
    module: nn.Module, parameter_dtypes: tuple[torch.dtype, ...] | None = None
) -> dict[str, WeightSpec]:
    """What `module.state_dict()` holds; parameters may come in any of `parameter_dtypes`."""
    parameters = {name for name, _ in module.named_parameters()}
    return {
        name: WeightSpec(
            tuple(tensor.shape),
            parameter_dtypes if parameter_dtypes and name in parameters else (tensor.dtype,),
        )
        for name, tensor in module.state_dict().items()
    }


@functools.lru_cache(maxsize=8)
def network_layout(config: VAEGANConfig) -> dict[str, WeightSpec]:
    """The weights `VAEGAN(config)` has, found without allocating them: a config read from a
    file can describe networks of any size, and is refused before any of them is built."""
    with torch.device("meta"):
        skeleton = VAEGAN(config)
    return module_layout(skeleton, PARAMETER_DTYPES)


def layout_of(tensors: Mapping[str, Tensor]) -> dict[str, TensorLayout]:
    return {name: TensorLayout(tuple(t.shape), t.dtype) for name, t in tensors.items()}


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


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
    """The header alone, without reading the weights (cheap even for large files).

    It passes every check that needs no tensor data, so `load_checkpoint` refuses the file only
    for its weights' values.
    """
    source = Path(path)
    try:
        with open_regular_file(source) as (handle, size):
            framing = _read_safetensors_header(source, handle, size)
    except FileRefusedError as exc:
        raise CheckpointError(source, exc.problem) from None
    return _accept_header(source, framing)


def load_checkpoint(
    path: str | os.PathLike[str], *, device: str | torch.device = "cpu"
) -> Checkpoint:
    """Rebuild the model from the file alone, in eval mode on `device`, or raise CheckpointError.

    The header is checked against the tensors it declares before any weights are read or any
    network is built, so a refusal costs milliseconds whatever the file claims.
    """
    source = Path(path)
    header, data = read_safetensors_file(source, lambda framing: _accept_header(source, framing))
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


_Accepted = TypeVar("_Accepted")


def read_safetensors_file(
    path: Path, accept: Callable[[SafetensorsHeader], _Accepted]
) -> tuple[_Accepted, bytes]:
    """`accept(header)` and the whole file, read only once `accept` has not refused the header.

    Shared by every vaegan file kind: a FIFO, a device or a file the user may not read is a
    CheckpointError like any other unusable file, and so is a file that changes while it is read.
    """
    try:
        with open_regular_file(path) as (handle, size):
            accepted = accept(_read_safetensors_header(path, handle, size))
            handle.seek(0)
            data = read_exactly(path, handle, size)
    except FileRefusedError as exc:
        raise CheckpointError(path, exc.problem) from None
    return accepted, data


def _read_safetensors_header(path: Path, handle: BinaryIO, size: int) -> SafetensorsHeader:
    prefix = handle.read(8)
    if len(prefix) == 8:
        (length,) = struct.unpack("<Q", prefix)
        # A length beyond the limit or the file is refused from the 8 bytes alone.
        prefix += handle.read(max(0, min(length, _MAX_HEADER_BYTES, size - 8)))
    return parse_safetensors_header(path, prefix, size)


def parse_safetensors_header(path: Path, data: bytes, size: int) -> SafetensorsHeader:
    """Validate the safetensors framing of a `size`-byte file from `data`, its first bytes
    (at least the header): every tensor's type and shape, and that the tensors exactly fill
    the rest of the file."""
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
        raw = strict_json_loads(data[8 : 8 + header_length])
    except JSONLimitError as exc:
        raise CheckpointError(path, f"its safetensors header {exc}") from None
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        raise CheckpointError(
            path, _foreign_format(data) or "not a safetensors file (its header is not JSON)"
        ) from None
    if not isinstance(raw, dict):
        raise CheckpointError(path, "not a safetensors file (its header is not a JSON object)")
    data_start = 8 + header_length
    tensors: dict[str, TensorLayout] = {}
    spans: list[tuple[int, int]] = []
    for name, info in raw.items():
        if name == "__metadata__":
            continue
        layout, span = _tensor_entry(path, name, info)
        tensors[name] = layout
        spans.append(span)
    spans.sort()
    position = 0
    for begin, end in spans:
        if begin != position:
            raise CheckpointError(path, "the tensors overlap or leave gaps in the data")
        position = end
    data_end = data_start + position
    if data_end > size:
        raise CheckpointError(
            path, f"truncated: the header describes {data_end:,} bytes but the file has {size:,}"
        )
    if data_end < size:
        raise CheckpointError(path, f"{size - data_end:,} unexpected bytes after the tensor data")
    return SafetensorsHeader(raw, tensors, data_start)


def _tensor_entry(path: Path, name: str, info: Any) -> tuple[TensorLayout, tuple[int, int]]:
    """One tensor's declared type and shape, and the bytes it occupies (checked to match)."""
    if not isinstance(info, dict):
        raise CheckpointError(path, f"tensor {name!r} has a malformed entry in the header")
    dtype_name = info.get("dtype")
    dtype = _SAFETENSORS_DTYPES.get(dtype_name) if isinstance(dtype_name, str) else None
    if dtype is None:
        raise CheckpointError(
            path,
            f"tensor {name!r} has a type safetensors does not define: {reprlib.repr(dtype_name)}",
        )
    shape, offsets = info.get("shape"), info.get("data_offsets")
    if (
        not isinstance(shape, list)
        or not all(is_whole_number(d) and d >= 0 for d in shape)
        or not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(is_whole_number(o) for o in offsets)
        or not 0 <= offsets[0] <= offsets[1]
    ):
        raise CheckpointError(path, f"tensor {name!r} has a malformed entry in the header")
    needed = math.prod(shape) * dtype.itemsize
    if offsets[1] - offsets[0] != needed:
        raise CheckpointError(
            path,
            f"tensor {name!r} is declared as {_dtype_name(dtype)} {tuple(shape)} "
            f"({needed:,} bytes) but given {offsets[1] - offsets[0]:,} bytes",
        )
    return TensorLayout(tuple(shape), dtype), (offsets[0], offsets[1])


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
    if not isinstance(text, str):
        raise error(path, f"the {label} metadata is not valid JSON")
    try:
        info = strict_json_loads(text)
    except JSONLimitError as exc:
        raise error(path, f"the {label} metadata {exc}") from None
    except ValueError:
        raise error(path, f"the {label} metadata is not valid JSON") from None
    if not isinstance(info, dict):
        raise error(path, f"the {label} metadata is not a JSON object")
    version = info.get("format_version")
    if not is_whole_number(version) or version < 1:
        raise error(path, f"invalid format_version {reprlib.repr(version)}")
    if version > supported:
        raise error(
            path,
            f"written by a newer vaegan ({error.kind} format {version}; this version reads up to "
            f"{supported}); upgrade vaegan to load it",
        )
    return info


_Value = TypeVar("_Value")
_KIND_NAMES = {dict: "a JSON object", list: "a list", str: "a string", int: "a whole number"}


def json_entry(info: dict[str, Any], key: str, kind: type[_Value], default: Any = None) -> _Value:
    """`info[key]` if it has type `kind` (a missing key gives `default` when there is one)."""
    value = info[key] if default is None else info.get(key, default)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(
            f"{key} must be {_KIND_NAMES.get(kind, kind.__name__)}, got {reprlib.repr(value)}"
        )
    return value


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
        return CheckpointHeader(
            config=config,
            preprocessing=Preprocessing.from_dict(json_entry(info, "preprocessing", dict)),
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


def load_verified_weights(path: Path, model: nn.Module, weights: dict[str, Tensor]) -> None:
    """Load `weights` into `model` if they are exactly its state dict with usable values."""
    problem = layout_problem(module_layout(model), layout_of(weights)) or weights_problem(weights)
    if problem is not None:
        raise CheckpointError(path, problem)
    model.load_state_dict(weights, strict=True)


def _first(items: list[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown} and {len(items) - limit} more"
