"""`vaegan-train strengths`: choose and record a default edit strength per attribute.

`training.strengths` does the choosing; this module reads the arguments, prints the choices and
writes them into the checkpoint.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from model.checkpoint import AttributeVector, CheckpointError
from training.attributes import write_attributes
from training.commands._args import (
    Subparsers,
    add_checkpoint_arguments,
    add_command,
    add_data_arguments,
    data_options,
    load_for_command,
)
from training.data import CelebADataset
from training.judge import bundled_judge_path, load_judge
from training.judge_eval import check_judge_compatible
from training.strengths import EDIT_TARGETS, STRENGTH_OPTIONS, choose_strengths

HELP = "choose a default edit strength per attribute with a judge"
DESCRIPTION = (
    "For each attribute vector in the checkpoint, judge edits mu +- s * vector on "
    "validation faces at every candidate s and record the smallest s that adds the "
    f"attribute to {EDIT_TARGETS['edit_success_add']:.0%} of faces, removes it from "
    f"{EDIT_TARGETS['edit_success_remove']:.0%} and keeps "
    f"{EDIT_TARGETS['edit_preservation']:.0%} of the other verdicts (else the closest). "
    "The checkpoint is rewritten atomically; the service then uses these strengths "
    "when a request names none."
)


def register(subparsers: Subparsers) -> None:
    parser = add_command(subparsers, "strengths", run_strengths, help=HELP, description=DESCRIPTION)
    add_checkpoint_arguments(parser)
    add_data_arguments(
        parser,
        data_help="a CelebA-layout folder",
        default_count=STRENGTH_OPTIONS.count,
        default_split="val",
    )
    parser.add_argument(
        "--judge", type=Path, help="an attribute judge (default: the bundled synthetic one)"
    )


def run_strengths(args: argparse.Namespace) -> int:
    checkpoint, device = load_for_command(args)
    if not checkpoint.attributes:
        raise CheckpointError(
            args.checkpoint, "it has no attribute vectors; run `vaegan-train attributes` first"
        )
    judge = load_judge(args.judge or bundled_judge_path(), device=device)
    faces = CelebADataset(args.data, split=args.split, preprocessing=checkpoint.preprocessing)
    check_judge_compatible(
        judge, data_attributes=tuple(faces.attribute_names), preprocessing=faces.preprocessing
    )
    vectors = {name: a.vector for name, a in checkpoint.attributes.items()}
    choices = choose_strengths(
        checkpoint.model, faces, judge, vectors, options=data_options(args, device)
    )
    print(f"{'attribute':<24}{'s':>6}{'add':>8}{'remove':>8}{'keep':>8}  targets")
    for name, choice in choices.items():
        row = choice.figures[choice.strength]
        print(
            f"{name:<24}{choice.strength:>6g}"
            + "".join(f"{row[key]:>8.3f}" for key in EDIT_TARGETS)
            + ("  met" if choice.meets_targets else "  missed")
        )
    attributes = {
        name: AttributeVector(
            a.vector,
            a.positives,
            a.negatives,
            choices[name].strength if name in choices else a.default_strength,
        )
        for name, a in checkpoint.attributes.items()
    }
    choice_record = {
        name: {
            "strength": c.strength,
            "meets_targets": c.meets_targets,
            # NaN (no eligible face) is not JSON: such a figure is null.
            "candidates": {
                f"{s:g}": {k: v if math.isfinite(v) else None for k, v in figures.items()}
                for s, figures in c.figures.items()
            },
        }
        for name, c in choices.items()
    }
    write_attributes(
        args.checkpoint,
        attributes,
        evaluation={"edit_strength_choice": choice_record},
        expected_sha256=checkpoint.sha256,
    )
    print(f"wrote {len(choices)} default strengths to {args.checkpoint}")
    return 0
