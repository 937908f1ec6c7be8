"""`vaegan-train fit`'s arguments; `training.fit.run_fit` does the training."""

from __future__ import annotations

import argparse
from pathlib import Path

from model.config import OBJECTIVES, PRESETS
from training.commands._args import (
    Subparsers,
    add_command,
    add_device_argument,
    int_in_range,
)
from training.fit import AUTHORS_STEPS, run_fit
from training.recipe import RECIPE_SUMMARIES, RECIPES

HELP = "train a model"
DESCRIPTION = (
    "Train a VAE-GAN with the authors' recipe (or the VAE / GAN baselines, or ALI with a "
    "joint discriminator D(x, z)) on a CelebA folder or any folder of images. Writes "
    "checkpoints, sample grids, metrics.jsonl and loss curves to --out; --resume "
    "continues a killed run exactly."
)


def register(subparsers: Subparsers) -> None:
    parser = add_command(subparsers, "fit", run_fit, help=HELP, description=DESCRIPTION)
    parser.add_argument("--data", type=Path, required=True, help="CelebA folder or image folder")
    parser.add_argument("--out", type=Path, required=True, help="run folder")
    parser.add_argument(
        "--preset", choices=sorted(PRESETS), help="network preset (default paper64)"
    )
    parser.add_argument("--channels", type=int, choices=[1, 3], help="1 for greyscale data")
    parser.add_argument("--image-size", type=int, help="must match the preset (checked)")
    parser.add_argument(
        "--objective",
        choices=OBJECTIVES,
        default="vaegan",
        help="vaegan (the paper), vae (element-wise baseline), gan (decoder and D only), "
        "ali (Adversarially Learned Inference: encoder, decoder and a joint D(x, z))",
    )
    parser.add_argument("--batch-size", type=int, default=64)
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, help=f"iterations (default {AUTHORS_STEPS:,})")
    length.add_argument("--epochs", type=float, help="passes over the training split")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument(
        "--resume-if-present",
        action="store_true",
        help="continue the run in --out if there is one, else start it (for restartable jobs)",
    )
    add_device_argument(parser, what="train")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", default="train", help="CelebA split to train on")
    parser.add_argument("--limit", type=int, help="use at most this many images")
    recipe = parser.add_argument_group(
        "recipe (defaults: the named --recipe's values; a flag overrides one value)"
    )
    recipe.add_argument(
        "--recipe",
        choices=sorted(RECIPES),
        default="authors",
        help="; ".join(f"{name}: {RECIPE_SUMMARIES[name]}" for name in sorted(RECIPES)),
    )
    recipe.add_argument("--lr", type=float)
    recipe.add_argument("--lr-schedule", choices=["authors", "constant"])
    recipe.add_argument("--gamma", type=float)
    recipe.add_argument("--equilibrium", type=float)
    recipe.add_argument("--margin", type=float)
    recipe.add_argument(
        "--no-equilibrium", action="store_true", help="never skip D or decoder updates"
    )
    recipe.add_argument(
        "--discriminate-reconstructions",
        action=argparse.BooleanOptionalAction,
        help="feed reconstructions to D too (the paper's text; the authors' run did not)",
    )
    recipe.add_argument(
        "--decoder-loss",
        choices=["saturating", "non-saturating"],
        help="the generator's GAN loss (default: saturating, the authors', for vaegan and gan; "
        "non-saturating, the ALI paper's, for ali)",
    )
    recipe.add_argument(
        "--ema-decay",
        type=float,
        help="checkpoints carry an exponential moving average of the encoder's and decoder's "
        "weights with this decay (e.g. 0.999) instead of the last step's",
    )
    recipe.add_argument("--real-weight", type=float)
    recipe.add_argument("--weight-decay", type=float)
    recipe.add_argument("--no-flip", action="store_true", help="no horizontal-flip augmentation")
    recipe.add_argument("--init", choices=["authors", "pytorch"], default="authors")
    output = parser.add_argument_group("outputs")
    output.add_argument("--checkpoint-every", type=int, default=500, help="steps")
    output.add_argument("--keep-checkpoints", type=int, default=3)
    output.add_argument("--log-every", type=int, default=10, help="steps")
    output.add_argument("--workers", type=int, help="data loader processes")
    output.add_argument(
        "--threads",
        type=int_in_range(1),
        help="torch threads per process (default: the cores this process may really use, "
        "from its cgroup quota and affinity, split between torchrun's local processes; "
        "OMP_NUM_THREADS when set)",
    )
    output.add_argument("--attribute-count", type=int, default=10_000)
    output.add_argument("--quiet", action="store_true", help="log lines instead of a bar")
