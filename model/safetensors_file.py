"""vaegan's safetensors files, whatever they hold (checkpoints, attribute judges).

What every kind shares: the framing checked before any tensor data is read (size, header
length, every tensor's type, shape and bytes), the versioned JSON header stored as metadata,
and weights loaded into a network only when they are exactly its state dict with usable values.
Each kind names itself through its error class (a subclass of `SafetensorsFileError`), so a
refusal says "checkpoint PATH: ..." or "judge PATH: ...".

Nothing is ever unpickled: safetensors holds raw tensors and JSON only.
"""

from __future__ import annotations

import math
import os
import reprlib
import struct
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple, TypeVar

import torch
from torch import Tensor, nn

from model.config import is_whole_number
from model.files import (
    FileRefusedError,
    JSONLimitError,
    open_regular_file,
    read_exactly,
    strict_json_loads,
)

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


class SafetensorsFileError(ValueError):
    """A vaegan file that cannot be read, with the file and the problem in the message."""

    kind = "file"  # what the file was meant to be, for the message; subclasses name theirs

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
        return f"NaN or infinite values in {first_items(not_finite)}"
    negative = [
        name
        for name, tensor in tensors.items()
        if name.endswith("running_var") and bool((tensor < 0).any())
    ]
    if negative:
        return f"negative batch-norm variances in {first_items(negative)}"
    return None


def layout_problem(
    expected: Mapping[str, WeightSpec], found: Mapping[str, TensorLayout]
) -> str | None:
    """How the tensors `found` differ from the state dict a network `expected`, else None."""
    missing = sorted(set(expected) - set(found))
    if missing:
        return f"missing weights: {first_items(missing)}"
    unexpected = sorted(set(found) - set(expected))
    if unexpected:
        return f"weights this model does not have: {first_items(unexpected)}"
    wrong_shape = [
        f"{name} {found[name].shape} (expected {spec.shape})"
        for name, spec in expected.items()
        if found[name].shape != spec.shape
    ]
    if wrong_shape:
        return f"weights with the wrong shape: {first_items(wrong_shape)}"
    wrong_type = [
        f"{name} {dtype_name(found[name].dtype)} "
        f"(expected {' or '.join(map(dtype_name, spec.dtypes))})"
        for name, spec in expected.items()
        if found[name].dtype not in spec.dtypes
    ]
    if wrong_type:
        return f"weights of the wrong type: {first_items(wrong_type)}"
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


def layout_of(tensors: Mapping[str, Tensor]) -> dict[str, TensorLayout]:
    return {name: TensorLayout(tuple(t.shape), t.dtype) for name, t in tensors.items()}


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


# --------------------------------------------------------------------------------------------
# reading


def read_safetensors_header(path: Path, error: type[SafetensorsFileError]) -> SafetensorsHeader:
    """The file's checked framing alone, without reading the tensor data."""
    try:
        with open_regular_file(path) as (handle, size):
            return _read_safetensors_header(path, handle, size, error)
    except FileRefusedError as exc:
        raise error(path, exc.problem) from None


_Accepted = TypeVar("_Accepted")


def read_safetensors_file(
    path: Path,
    accept: Callable[[SafetensorsHeader], _Accepted],
    error: type[SafetensorsFileError],
) -> tuple[_Accepted, bytes]:
    """`accept(header)` and the whole file, read only once `accept` has not refused the header.

    A FIFO, a device or a file the user may not read is an `error` like any other unusable
    file, and so is a file that changes while it is read.
    """
    try:
        with open_regular_file(path) as (handle, size):
            accepted = accept(_read_safetensors_header(path, handle, size, error))
            handle.seek(0)
            data = read_exactly(path, handle, size)
    except FileRefusedError as exc:
        raise error(path, exc.problem) from None
    return accepted, data


def _read_safetensors_header(
    path: Path, handle: BinaryIO, size: int, error: type[SafetensorsFileError]
) -> SafetensorsHeader:
    prefix = handle.read(8)
    if len(prefix) == 8:
        (length,) = struct.unpack("<Q", prefix)
        # A length beyond the limit or the file is refused from the 8 bytes alone.
        prefix += handle.read(max(0, min(length, _MAX_HEADER_BYTES, size - 8)))
    return parse_safetensors_header(path, prefix, size, error)


def parse_safetensors_header(
    path: Path, data: bytes, size: int, error: type[SafetensorsFileError]
) -> SafetensorsHeader:
    """Validate the safetensors framing of a `size`-byte file from `data`, its first bytes
    (at least the header): every tensor's type and shape, and that the tensors exactly fill
    the rest of the file."""
    if size < 8:
        raise error(path, f"only {size} bytes: truncated, or not a checkpoint at all")
    (header_length,) = struct.unpack("<Q", data[:8])
    if header_length > _MAX_HEADER_BYTES or 8 + header_length > size:
        raise error(
            path,
            _foreign_format(data)
            or "not a safetensors file, or truncated inside its header "
            f"(its header length field says {header_length:,} bytes; the file has {size:,})",
        )
    try:
        raw = strict_json_loads(data[8 : 8 + header_length])
    except JSONLimitError as exc:
        raise error(path, f"its safetensors header {exc}") from None
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        raise error(
            path, _foreign_format(data) or "not a safetensors file (its header is not JSON)"
        ) from None
    if not isinstance(raw, dict):
        raise error(path, "not a safetensors file (its header is not a JSON object)")
    data_start = 8 + header_length
    tensors: dict[str, TensorLayout] = {}
    spans: list[tuple[int, int]] = []
    for name, info in raw.items():
        if name == "__metadata__":
            continue
        layout, span = _tensor_entry(path, name, info, error)
        tensors[name] = layout
        spans.append(span)
    spans.sort()
    position = 0
    for begin, end in spans:
        if begin != position:
            raise error(path, "the tensors overlap or leave gaps in the data")
        position = end
    data_end = data_start + position
    if data_end > size:
        raise error(
            path, f"truncated: the header describes {data_end:,} bytes but the file has {size:,}"
        )
    if data_end < size:
        raise error(path, f"{size - data_end:,} unexpected bytes after the tensor data")
    return SafetensorsHeader(raw, tensors, data_start)


def _tensor_entry(
    path: Path, name: str, info: Any, error: type[SafetensorsFileError]
) -> tuple[TensorLayout, tuple[int, int]]:
    """One tensor's declared type and shape, and the bytes it occupies (checked to match)."""
    if not isinstance(info, dict):
        raise error(path, f"tensor {name!r} has a malformed entry in the header")
    declared = info.get("dtype")
    dtype = _SAFETENSORS_DTYPES.get(declared) if isinstance(declared, str) else None
    if dtype is None:
        raise error(
            path,
            f"tensor {name!r} has a type safetensors does not define: {reprlib.repr(declared)}",
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
        raise error(path, f"tensor {name!r} has a malformed entry in the header")
    needed = math.prod(shape) * dtype.itemsize
    if offsets[1] - offsets[0] != needed:
        raise error(
            path,
            f"tensor {name!r} is declared as {dtype_name(dtype)} {tuple(shape)} "
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
    path: Path, text: Any, *, label: str, supported: int, error: type[SafetensorsFileError]
) -> dict[str, Any]:
    """The JSON object stored as safetensors metadata, with a format_version this code reads."""
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


def load_verified_weights(
    path: Path, model: nn.Module, weights: Mapping[str, Tensor], error: type[SafetensorsFileError]
) -> None:
    """Load `weights` into `model` if they are exactly its state dict with usable values."""
    problem = layout_problem(module_layout(model), layout_of(weights)) or weights_problem(weights)
    if problem is not None:
        raise error(path, problem)
    model.load_state_dict(weights, strict=True)


def first_items(items: list[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown} and {len(items) - limit} more"
