"""`vaegan-train attributes | evaluate | sample | edit`: commands that work on a checkpoint."""

from __future__ import annotations

import argparse
from typing import Any


def add_model_commands(commands: Any) -> None:
    """Register the checkpoint commands on the `vaegan-train` subparsers."""
    del commands  # the commands arrive with this module's implementation


def _unused(args: argparse.Namespace) -> int:  # pragma: no cover
    return 0
