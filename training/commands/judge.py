"""`vaegan-train judge`: train the attribute classifier that `evaluate --judge` scores with."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from model.codec import Preprocessing
from model.device import select_device
from training.commands._args import (
    Subparsers,
    add_command,
    add_device_argument,
    add_workers_argument,
    check_output_path,
    int_in_range,
    positive_number,
)
from training.data import CelebADataset, read_celeba_index
from training.judge import IMAGE_SIZE, save_judge, train_judge

# The accuracy docs/design.md section 7 asks of a judge on every attribute before it measures edits.
JUDGE_TARGET_ACCURACY = 0.97

HELP = "train an attribute classifier that judges reconstructions, edits and samples"
DESCRIPTION = (
    "Train a small CNN to recognise every labelled attribute of a CelebA-layout folder "
    "(its train split, with horizontal flips), report per-attribute accuracy on the test "
    f"split, and save it as a .safetensors judge for `evaluate --judge`. Images are "
    f"preprocessed as the model's are, at {IMAGE_SIZE}x{IMAGE_SIZE} pixels."
)


def register(subparsers: Subparsers) -> None:
    parser = add_command(subparsers, "judge", run_judge, help=HELP, description=DESCRIPTION)
    parser.add_argument(
        "--data", type=Path, required=True, help="a CelebA-layout folder (labels and split)"
    )
    parser.add_argument("--out", type=Path, required=True, help="the .safetensors file to write")
    parser.add_argument("--epochs", type=int_in_range(1), default=6, help="passes over the data")
    parser.add_argument("--batch-size", type=int_in_range(2), default=64)
    parser.add_argument(
        "--count", type=int_in_range(1), help="train on the first COUNT images of the train split"
    )
    parser.add_argument("--lr", type=positive_number, default=2e-3, help="Adam's peak rate")
    parser.add_argument("--seed", type=int_in_range(0), default=0)
    add_workers_argument(parser, help="image-decoding processes (0: inline)")
    add_device_argument(parser, what="train")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or epoch log")


def run_judge(args: argparse.Namespace) -> int:
    check_output_path(args.out)
    device = select_device(args.device)
    index = read_celeba_index(args.data)
    preprocessing = Preprocessing(image_size=IMAGE_SIZE)
    train, test = (
        CelebADataset(args.data, split=split, preprocessing=preprocessing, index=index)
        for split in ("train", "test")
    )
    report = train_judge(
        train,
        test,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        count=args.count,
        device=device,
        seed=args.seed,
        num_workers=args.workers,
        progress=not args.quiet,
        log=None if args.quiet else lambda line: print(line, file=sys.stderr),
    )
    command = ["vaegan-train", "judge", "--data", str(args.data), "--out", str(args.out)]
    command += ["--epochs", str(args.epochs), "--batch-size", str(args.batch_size)]
    command += ["--lr", f"{args.lr:g}", "--seed", str(args.seed)]
    command += ["--count", str(args.count)] if args.count is not None else []
    save_judge(
        args.out,
        report.judge,
        dataset={
            **train.describe(),
            "images": report.train_images,
            "test_split": "test",
            "test_images": report.test_images,
            "damaged": report.damaged,
        },
        training={
            "command": shlex.join(command),
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "seed": args.seed,
            "augmentation": "horizontal flip (labels unchanged)",
            "device": str(device),
            "seconds": round(report.seconds, 1),
        },
    )
    print(f"{'attribute':<24}{'test accuracy':>14}")
    for name, accuracy in report.accuracy.items():
        below = "  below target" if accuracy < JUDGE_TARGET_ACCURACY else ""
        print(f"{name:<24}{accuracy:>14.4f}{below}")
    values = list(report.accuracy.values())
    damaged = f" ({report.damaged} unreadable skipped)" if report.damaged else ""
    print(
        f"trained on {report.train_images} images for {args.epochs} epochs in "
        f"{report.seconds:.0f} s{damaged}; test accuracy on {report.test_images} images: "
        f"min {min(values):.4f}, mean {sum(values) / len(values):.4f}; wrote {args.out}"
    )
    return 0
