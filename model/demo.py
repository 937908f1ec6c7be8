"""The demo model that ships inside the package, so `vaegan-serve` works with no arguments.

It was trained by `scripts/train_demo.sh` on 20,000 synthetic faces; its checkpoint metadata
records the exact command, steps and data seed, and `docs/results.md` its measured quality.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

DEMO_CHECKPOINT_NAME = "demo-medium64.safetensors"


def demo_checkpoint_path() -> Path:
    """Where the bundled demo checkpoint is installed (a real file: the package is never zipped)."""
    return Path(str(resources.files("model") / "assets" / DEMO_CHECKPOINT_NAME))


__all__ = ["DEMO_CHECKPOINT_NAME", "demo_checkpoint_path"]
