"""The run folder: the resume state, the metrics log, and what a killed run left half-written.

A run folder holds `state.safetensors` (everything an exact resume needs), `metrics.jsonl` (one
JSON record per logged step), `checkpoints/`, `samples/`, and at the end `model.safetensors` and
`loss_curves.png`. Every file in it is written through `atomic_write_bytes`, so a kill leaves
the previous version whole and at worst a temporary beside it.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from model.atomic import atomic_write_bytes, remove_stale_temporaries
from model.files import FileRefusedError, read_regular_file, strict_json_loads
from training.averaging import AVERAGED_NETWORKS, WeightAverage

STATE_FILE = "state.safetensors"
STATE_FORMAT = "vaegan-training-state"
STATE_VERSION = 1
METRICS_FILE = "metrics.jsonl"
FINAL_CHECKPOINT = "model.safetensors"
LOSS_CURVES = "loss_curves.png"
# The files of a run folder written through atomic_write_bytes, by subfolder.
_RUN_FILES: dict[str, tuple[str, ...]] = {
    ".": (STATE_FILE, METRICS_FILE, FINAL_CHECKPOINT, LOSS_CURVES),
    "checkpoints": ("step-*.safetensors",),
    "samples": ("samples-*.png", "reconstructions-*.png"),
}


class TrainingError(ValueError):
    """Training cannot start or go on; the message says why and what was kept."""


def save_training_state(path: Path, tensors: dict[str, Tensor], header: dict[str, Any]) -> None:
    """Write a resume file: `tensors` from `training_state_tensors`, `header` the rest as JSON."""
    from safetensors.torch import save

    header = {"format": STATE_FORMAT, "version": STATE_VERSION, **header}
    atomic_write_bytes(path, save(tensors, metadata={STATE_FORMAT: json.dumps(header)}))


def load_training_state(path: Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read a resume file; safetensors only, never a pickle."""
    from safetensors import safe_open

    if not path.is_file():
        raise TrainingError(f"nothing to resume: {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
        header = strict_json_loads(metadata[STATE_FORMAT])
        if not isinstance(header, dict):
            raise TypeError("the header is not a JSON object")
    except Exception as exc:  # any failure here means the same thing to the user: damaged
        raise TrainingError(f"cannot resume from {path}: the file is damaged ({exc})") from None
    if header.get("version", 0) > STATE_VERSION:
        raise TrainingError(f"cannot resume from {path}: written by a newer vaegan")
    return tensors, header


def training_state_tensors(
    model: nn.Module, average: WeightAverage | None, optimizers: Mapping[str, Optimizer]
) -> dict[str, Tensor]:
    """The tensors of a resume file, flat for safetensors: `model.*` the weights and batch-norm
    statistics, `averaged.{encoder,decoder}.*` the averaged weights if the run keeps them, and
    `optim.{network}.{parameter index}.{slot}` each optimiser's per-parameter state."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if average is not None:
        for name in AVERAGED_NETWORKS:
            for key, value in getattr(average.model, name).state_dict().items():
                tensors[f"averaged.{name}.{key}"] = value.detach().cpu().contiguous()
    for name, optimizer in optimizers.items():
        for index, slot in optimizer.state_dict()["state"].items():
            for key, value in slot.items():
                tensors[f"optim.{name}.{index}.{key}"] = torch.as_tensor(value).cpu().contiguous()
    return tensors


def restore_training_state(
    tensors: dict[str, Tensor],
    model: nn.Module,
    average: WeightAverage | None,
    optimizers: Mapping[str, Optimizer],
) -> None:
    """Load `training_state_tensors`'s tensors back into the same kinds of objects."""
    model.load_state_dict(_under("model.", tensors), strict=True)
    if average is not None:
        for name in AVERAGED_NETWORKS:
            getattr(average.model, name).load_state_dict(
                _under(f"averaged.{name}.", tensors), strict=True
            )
    for name, optimizer in optimizers.items():
        slots: dict[int, dict[str, Tensor]] = {}
        for key, value in _under(f"optim.{name}.", tensors).items():
            index, slot_key = key.split(".", 1)
            slots.setdefault(int(index), {})[slot_key] = value
        current = optimizer.state_dict()
        optimizer.load_state_dict({"state": slots, "param_groups": current["param_groups"]})


def _under(prefix: str, tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def remove_stale_temporaries_of_run(run_dir: Path) -> list[Path]:
    """Delete the temporary files a killed run left half-written in `run_dir`.

    Only the temporaries of the run's own files go: one process trains in a run folder, so at
    start-up none of them can belong to a live writer; anything else in the folder is kept.
    """
    removed: list[Path] = []
    for folder, patterns in _RUN_FILES.items():
        removed += remove_stale_temporaries(run_dir / folder, _matching(patterns))
    return removed


def _matching(patterns: tuple[str, ...]) -> Callable[[str], bool]:
    return lambda name: any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def append_metrics(path: Path, record: dict[str, Any]) -> None:
    """One line of metrics.jsonl; a kill mid-write leaves a cut line that `read_metrics` skips."""
    with path.open("a") as handle:
        handle.write(json.dumps(record) + "\n")


def truncate_metrics(path: Path, last_step: int) -> None:
    """Drop metric lines a killed run logged after its last saved state."""
    kept = [
        json.dumps(record) for record in read_metrics(path) if record.get("step", 0) <= last_step
    ]
    if kept or path.exists():
        atomic_write_bytes(path, "".join(line + "\n" for line in kept).encode())


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of a metrics file; lines cut by a kill (or otherwise unreadable) are left
    out. Only a regular file is read: a FIFO or device in its place would hang the reader."""
    if not path.exists():
        return []
    try:
        text = read_regular_file(path).decode("utf-8", errors="replace")
    except FileRefusedError as exc:
        raise TrainingError(f"cannot read the run's metrics: {exc}") from None
    records = []
    for line in text.splitlines():
        with contextlib.suppress(ValueError, RecursionError):
            record = json.loads(line)
            if isinstance(record, dict) and isinstance(record.get("step"), int):
                records.append(record)
    return records
