"""`vaegan-train attributes`: attribute vectors from labelled images, stored in the checkpoint."""

from __future__ import annotations

import argparse

from training.attributes import (
    ATTRIBUTE_OPTIONS,
    DIRECTIONS,
    compute_attribute_vectors,
    write_attributes,
)
from training.commands._args import (
    Subparsers,
    add_checkpoint_arguments,
    add_command,
    add_data_arguments,
    data_options,
    int_in_range,
    load_for_command,
)
from training.data import CelebADataset

HELP = "compute attribute vectors from labelled images and store them in the checkpoint"
DESCRIPTION = (
    "Encode the first COUNT images of a CelebA-layout folder to their posterior means and "
    "store, for every labelled attribute, mean mu(attribute) - mean mu(no attribute) in "
    "the checkpoint (rewritten atomically; weights and metadata are kept)."
)


def register(subparsers: Subparsers) -> None:
    parser = add_command(
        subparsers, "attributes", run_attributes, help=HELP, description=DESCRIPTION
    )
    add_checkpoint_arguments(parser)
    add_data_arguments(
        parser,
        data_help="a CelebA-layout folder (labels required)",
        default_count=ATTRIBUTE_OPTIONS.count,
        default_split="train",
    )
    parser.add_argument(
        "--min-examples",
        type=int_in_range(1),
        default=10,
        help="skip attributes with fewer positive or negative images than this",
    )
    parser.add_argument(
        "--direction",
        choices=DIRECTIONS,
        default="mean-difference",
        help="mean-difference (the paper's) or controlled: the change the attribute makes with "
        "the other labelled attributes held fixed (a joint least-squares fit), so +Male stops "
        "removing lipstick",
    )


def run_attributes(args: argparse.Namespace) -> int:
    checkpoint, device = load_for_command(args)
    dataset = CelebADataset(
        args.data, split=args.split, preprocessing=checkpoint.preprocessing, limit=args.count
    )
    report = compute_attribute_vectors(
        checkpoint.model,
        dataset,
        options=data_options(args, device),
        min_examples=args.min_examples,
        direction=args.direction,
    )
    print(f"{'attribute':<24}{'positives':>10}{'negatives':>10}{'norm':>10}")
    for name, attribute in report.vectors.items():
        print(
            f"{name:<24}{attribute.positives:>10}{attribute.negatives:>10}{attribute.norm:>10.4f}"
        )
    if report.skipped:
        print(
            f"skipped (fewer than {args.min_examples} positive or negative examples among "
            f"{report.images} images):"
        )
        for name, (positives, negatives) in report.skipped.items():
            print(f"{name:<24}{positives:>10}{negatives:>10}{'-':>10}")
    if not report.vectors:
        raise ValueError(
            f"no attribute has {args.min_examples} positive and {args.min_examples} negative "
            f"examples among {report.images} images, so nothing was written to "
            f"{args.checkpoint}; use more images (--count, --split) or a lower --min-examples"
        )
    source = {
        "data": str(args.data.resolve()),
        "split": args.split,
        "images": report.images,
        "damaged": report.damaged,
        "min_examples": args.min_examples,
        "direction": args.direction,
    }
    write_attributes(
        args.checkpoint, report.vectors, source=source, expected_sha256=checkpoint.sha256
    )
    damaged = f" ({report.damaged} unreadable skipped)" if report.damaged else ""
    print(
        f"wrote {len(report.vectors)} attribute vectors from {report.images} images{damaged} "
        f"to {args.checkpoint}"
    )
    return 0
