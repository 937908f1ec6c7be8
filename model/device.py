"""Where the model runs: one rule for training, the service and the CLIs."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

DEVICE_NAMES = "auto, cpu, cuda or cuda:N"
_DEVICE_NAME = re.compile(r"auto|cpu|cuda(:[0-9]+)?")


class DeviceError(ValueError):
    """A device that was asked for but is not there.

    The message names the device, not how it was asked for: a CLI that took it from a flag, or
    a service that took it from its environment, says so itself (`requested`, `problem`).
    """

    def __init__(self, requested: str, problem: str) -> None:
        self.requested = requested
        self.problem = problem
        super().__init__(f"device {requested!r}: {problem}")


def is_device_name(requested: str) -> bool:
    """Whether `select_device` knows the name (whether the device is there is another matter)."""
    return _DEVICE_NAME.fullmatch(requested) is not None


def select_device(requested: str) -> torch.device:
    """`auto` picks CUDA when present, else the CPU; asking for CUDA without it is an error."""
    # Imported here: the service's supervisor validates device names without loading torch
    # (2.5 s and a quarter of a worker's memory).
    import torch

    if not is_device_name(requested):
        raise DeviceError(requested, f"not a device name; use {DEVICE_NAMES}")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        reason = (
            f"this PyTorch build ({torch.__version__}) has no CUDA support"
            if torch.version.cuda is None
            else "no CUDA GPU is visible"
        )
        raise DeviceError(requested, f"{reason}; use cpu or auto")
    return torch.device(requested)
