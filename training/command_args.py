"""Arguments the checkpoint commands share, and loading their checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from model.checkpoint import Checkpoint, load_checkpoint
from model.device import DEVICE_NAMES, select_device
from training.cli import int_in_range
from training.data import SPLITS


def add_device_argument(parser: argparse.ArgumentParser, *, what: str) -> None:
    """`--device`, for every command: any name `select_device` knows, cuda:N included.

    The name is checked by `select_device` when the command runs, not here, so a bad name and a
    missing GPU get the same one-line error (see `training.cli.main`), as `fit` always gave.
    """
    parser.add_argument(
        "--device",
        default="auto",
        help=f"where to {what}: {DEVICE_NAMES} (auto: cuda when available, else cpu)",
    )


def add_checkpoint_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint", type=Path, required=True, help="a .safetensors checkpoint written by vaegan"
    )
    add_device_argument(parser, what="run the model")


def add_data_arguments(
    parser: argparse.ArgumentParser, *, default_count: int, default_split: str
) -> None:
    parser.add_argument(
        "--count",
        type=int_in_range(1),
        default=default_count,
        help="use the first COUNT images of the split",
    )
    parser.add_argument(
        "--split",
        choices=tuple(SPLITS),
        default=default_split,
        help="CelebA split to read",
    )
    parser.add_argument("--batch-size", type=int_in_range(1), default=64)
    parser.add_argument(
        "--workers", type=int_in_range(0), default=0, help="image-loading processes (0: inline)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def load_for_command(args: argparse.Namespace) -> tuple[Checkpoint, torch.device]:
    device = select_device(args.device)
    return load_checkpoint(args.checkpoint, device=device), device
