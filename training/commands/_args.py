"""What the `vaegan-train` commands share: argument types, argument groups, and the first things a
command does with its arguments (load the checkpoint, check --out, write a grid)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor

from model.atomic import atomic_write_bytes
from model.checkpoint import Checkpoint, load_checkpoint
from model.codec import encode_png, make_grid
from model.device import DEVICE_NAMES, select_device
from training.data import SPLITS
from training.inference import InferenceOptions

MAX_STRENGTHS = 16
GRID_PADDING = 2

Handler = Callable[[argparse.Namespace], int]


class Subparsers(Protocol):
    """The part of `ArgumentParser.add_subparsers()`'s result that a command's `register` uses."""

    def add_parser(self, name: str, *, help: str, description: str) -> argparse.ArgumentParser: ...


def add_command(
    subparsers: Subparsers, name: str, handler: Handler, *, help: str, description: str
) -> argparse.ArgumentParser:
    """A command's subparser, set to run `handler` (`training.cli.main` calls it)."""
    parser = subparsers.add_parser(name, help=help, description=description)
    parser.set_defaults(handler=handler)
    return parser


# --------------------------------------------------------------------------------------------
# argument types


def int_in_range(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number in [low, high], with an error a person can act on."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low or (high is not None and value > high):
            bounds = f"at least {low}" if high is None else f"between {low} and {high}"
            raise argparse.ArgumentTypeError(f"must be {bounds}, got {value}")
        return value

    return parse


def positive_number(text: str) -> float:
    """An argparse type: a finite number above zero."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def parse_strengths(text: str) -> list[float]:
    """Parse "-2,-1,0,1,2" into [-2.0, -1.0, 0.0, 1.0, 2.0]: up to MAX_STRENGTHS finite numbers."""
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        values = []
    if not values or not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers such as -2,-1,0,1,2, got {text!r}"
        )
    if len(values) > MAX_STRENGTHS:
        raise argparse.ArgumentTypeError(
            f"at most {MAX_STRENGTHS} strengths fit in a strip, got {len(values)}"
        )
    return values


# --------------------------------------------------------------------------------------------
# arguments several commands take


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
    parser: argparse.ArgumentParser, *, data_help: str, default_count: int, default_split: str
) -> None:
    """--data and how much of it to read, for the commands that run a checkpoint over images."""
    parser.add_argument("--data", type=Path, required=True, help=data_help)
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
    add_workers_argument(parser, help="image-loading processes (0: inline)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def add_workers_argument(parser: argparse.ArgumentParser, *, help: str) -> None:
    parser.add_argument("--workers", type=int_in_range(0), default=0, help=help)


def add_png_out_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="PNG file to write")


# --------------------------------------------------------------------------------------------
# using the arguments


def data_options(args: argparse.Namespace, device: torch.device) -> InferenceOptions:
    """How the flags of `add_data_arguments` ask the images to be read, for a model on `device`."""
    return InferenceOptions(
        count=args.count,
        batch_size=args.batch_size,
        device=device,
        num_workers=args.workers,
        progress=not args.quiet,
    )


def load_for_command(args: argparse.Namespace) -> tuple[Checkpoint, torch.device]:
    device = select_device(args.device)
    return load_checkpoint(args.checkpoint, device=device), device


def check_output_path(path: Path) -> None:
    """Refuse an --out that cannot become a file before spending time on the work."""
    if path.is_dir():
        raise ValueError(f"--out {path} is a folder; give a file name such as {path / 'out.png'}")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"--out {path}: {parent} is a file, not a folder")
            break


def write_grid(path: Path, images: Tensor, *, nrow: int) -> Tensor:
    """Save `images` as one PNG grid and return the grid."""
    grid = make_grid(images, nrow=nrow, padding=GRID_PADDING)
    # A reader (a web page, a watcher) never sees half a PNG; missing folders are created.
    atomic_write_bytes(path, encode_png(grid))
    return grid
