"""`vaegan-train` (also `python -m training`): the offline half of vaegan from the shell."""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from model.device import DeviceError
from training.synth import generate_synthetic_celeba


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vaegan-train",
        description="Train and prepare VAE-GAN models (Larsen et al. 2016).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    synth = commands.add_parser(
        "synth",
        help="write synthetic faces in CelebA's folder layout",
        description=(
            "Render deterministic cartoon faces with true attribute labels in exactly CelebA's "
            "layout (img_align_celeba/*.jpg, list_attr_celeba.txt, list_eval_partition.txt). "
            "The same seed always gives byte-identical files."
        ),
    )
    synth.add_argument("--out", type=Path, required=True, help="folder to write the data set to")
    synth.add_argument("--count", type=int_in_range(1), default=10_000, help="number of images")
    synth.add_argument("--seed", type=int_in_range(0), default=0, help="random seed")
    synth.add_argument(
        "--workers",
        type=int_in_range(1),
        default=1,
        help=f"processes to render with (this machine has {os.cpu_count()} cores)",
    )
    synth.add_argument(
        "--overwrite", action="store_true", help="replace an existing data set in --out"
    )
    synth.add_argument("--quiet", action="store_true", help="no progress bar")
    synth.set_defaults(handler=_run_synth)

    # The other commands live beside the code they drive.
    from training.fit import add_fit_command
    from training.model_commands import add_model_commands

    add_fit_command(commands)
    add_model_commands(commands)
    return parser


def _run_synth(args: argparse.Namespace) -> int:
    report = generate_synthetic_celeba(
        args.out,
        args.count,
        seed=args.seed,
        workers=args.workers,
        progress=not args.quiet,
        overwrite=args.overwrite,
    )
    splits = ", ".join(f"{name} {size}" for name, size in report.split_sizes.items())
    print(
        f"wrote {report.count} faces to {args.out} in {report.seconds:.1f} s "
        f"({report.images_per_second:.0f} images/s); splits: {splits}"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    # Recorded in checkpoints, so anyone can see how a model was made and make it again.
    args.command_line = shlex.join(["vaegan-train", *argv])
    from training.trainer import DivergenceError

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
