"""`vaegan-train sample`: random latents decoded into a PNG grid."""

from __future__ import annotations

import argparse

from training.commands._args import (
    Subparsers,
    add_checkpoint_arguments,
    add_command,
    add_png_out_argument,
    check_output_path,
    int_in_range,
    load_for_command,
    write_grid,
)
from training.evaluate import generate_samples

MAX_SAMPLES = 1024

HELP = "decode random latents into a PNG grid"
DESCRIPTION = "Decode z ~ N(0, I) from a seeded generator and save the images as a grid."


def register(subparsers: Subparsers) -> None:
    parser = add_command(subparsers, "sample", run_sample, help=HELP, description=DESCRIPTION)
    add_checkpoint_arguments(parser)
    parser.add_argument(
        "--n", type=int_in_range(1, MAX_SAMPLES), default=64, help="number of samples"
    )
    parser.add_argument("--seed", type=int_in_range(0), default=0)
    parser.add_argument("--nrow", type=int_in_range(1), default=8, help="images per grid row")
    add_png_out_argument(parser)


def run_sample(args: argparse.Namespace) -> int:
    check_output_path(args.out)
    checkpoint, device = load_for_command(args)
    samples = generate_samples(checkpoint.model, args.n, seed=args.seed, device=device)
    grid = write_grid(args.out, samples, nrow=args.nrow)
    print(
        f"wrote {args.n} samples (seed {args.seed}) as a {grid.shape[2]}x{grid.shape[1]} grid "
        f"to {args.out}"
    )
    return 0
