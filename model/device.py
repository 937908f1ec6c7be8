"""Where the model runs: one rule for training, the service and the CLIs."""

from __future__ import annotations

import torch


class DeviceError(ValueError):
    """A device that was asked for but is not there."""


def select_device(requested: str) -> torch.device:
    """`auto` picks CUDA when present, else the CPU; asking for CUDA without it is an error."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        reason = (
            f"this PyTorch build ({torch.__version__}) has no CUDA support"
            if torch.version.cuda is None
            else "no CUDA GPU is visible"
        )
        raise DeviceError(f"--device {requested} asked for, but {reason}; use --device cpu or auto")
    if requested not in ("cpu", "cuda") and not requested.startswith("cuda:"):
        raise DeviceError(f"unknown device {requested!r}; use auto, cpu, cuda or cuda:N")
    return torch.device(requested)
