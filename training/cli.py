"""`vaegan-train` (also `python -m training`): the offline half of vaegan from the shell.

The commands live in `training.commands`, one module each; this is only the entry point.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from collections.abc import Sequence

from model.device import DeviceError
from training.commands import (
    attributes,
    edit,
    evaluate,
    export,
    fit,
    judge,
    sample,
    strengths,
    synth,
)
from training.trainer import DivergenceError

# In the order `vaegan-train --help` lists them. The functions, not the modules, so that mypy
# checks each `register` against the subparsers it is given.
REGISTER = (
    synth.register,
    fit.register,
    attributes.register,
    evaluate.register,
    sample.register,
    edit.register,
    judge.register,
    strengths.register,
    export.register,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vaegan-train",
        description="Train and prepare VAE-GAN models (Larsen et al. 2016).",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in REGISTER:
        register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    # Recorded in checkpoints, so anyone can see how a model was made and make it again.
    args.command_line = shlex.join(["vaegan-train", *argv])
    try:
        code: int = args.handler(args)
    except DivergenceError as exc:
        print(f"vaegan-train {args.command}: training diverged: {exc}", file=sys.stderr)
        return 1
    except DeviceError as exc:
        # model.device names no flag; every vaegan-train command takes it from --device.
        print(
            f"vaegan-train {args.command}: error: --device {exc.requested}: {exc.problem}",
            file=sys.stderr,
        )
        return 2
    except (ValueError, FileExistsError, OSError) as exc:
        # Expected failures (bad folders, refused input, a full disk) get one clear line, not a
        # traceback.
        print(f"vaegan-train {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
