"""`vaegan-train synth`: synthetic faces in CelebA's folder layout."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from training.commands._args import Subparsers, add_command, int_in_range
from training.synth import generate_synthetic_celeba

HELP = "write synthetic faces in CelebA's folder layout"
DESCRIPTION = (
    "Render deterministic cartoon faces with true attribute labels in exactly CelebA's "
    "layout (img_align_celeba/*.jpg, list_attr_celeba.txt, list_eval_partition.txt). "
    "The same seed always gives byte-identical files."
)


def register(subparsers: Subparsers) -> None:
    parser = add_command(subparsers, "synth", run_synth, help=HELP, description=DESCRIPTION)
    parser.add_argument("--out", type=Path, required=True, help="folder to write the data set to")
    parser.add_argument("--count", type=int_in_range(1), default=10_000, help="number of images")
    parser.add_argument("--seed", type=int_in_range(0), default=0, help="random seed")
    parser.add_argument(
        "--workers",
        type=int_in_range(1),
        default=1,
        help=f"processes to render with (this machine has {os.cpu_count()} cores)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing data set in --out"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run_synth(args: argparse.Namespace) -> int:
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
