"""`vaegan-train strengths`: a default edit strength per attribute, chosen on validation faces.

One s cannot serve every attribute: a vector whose attribute covers the hair needs less push
than one for thin eyeglasses, and too much turns blond hair grey. For each attribute A the judge
scores the edits mu +- s * v_A on validation faces for every candidate s; the chosen s is the
smallest that reaches all three edit targets (adding, removing, preserving the other
attributes), or, where no candidate does, the one whose worst figure is closest to its target.
The choices go into the checkpoint beside the vectors; the service and `evaluate` use them when
no strength is given.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from model.checkpoint import AttributeVector, CheckpointError
from model.networks import VAEGAN
from training.attributes import write_attributes
from training.command_args import add_checkpoint_arguments, add_data_arguments, load_for_command
from training.data import CelebADataset
from training.judge import Judge, bundled_judge_path, load_judge
from training.judge_eval import check_judge_compatible, evaluate_with_judge

CANDIDATES = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0)
# The quality bars an edit is held to, by the judge's figure name.
EDIT_TARGETS = {"edit_success_add": 0.80, "edit_success_remove": 0.95, "edit_preservation": 0.90}


@dataclass(frozen=True)
class StrengthChoice:
    strength: float
    meets_targets: bool
    # candidate s -> the judge's edit figures at s
    figures: dict[float, dict[str, float]]


def _worst_ratio(figures: Mapping[str, float]) -> float:
    """How close the worst of an edit's figures comes to its target (>= 1: all targets met)."""
    ratios = [figures[name] / target for name, target in EDIT_TARGETS.items() if name in figures]
    finite = [r for r in ratios if math.isfinite(r)]
    return min(finite) if finite else -math.inf


def pick_strength(figures: Mapping[float, Mapping[str, float]]) -> StrengthChoice:
    """The smallest candidate meeting every target, else the one with the best worst ratio."""
    candidates = sorted(figures)
    for strength in candidates:
        if _worst_ratio(figures[strength]) >= 1.0:
            return StrengthChoice(strength, True, {s: dict(figures[s]) for s in candidates})
    best = max(candidates, key=lambda s: (_worst_ratio(figures[s]), -s))
    return StrengthChoice(best, False, {s: dict(figures[s]) for s in candidates})


def choose_strengths(
    model: VAEGAN,
    faces: CelebADataset,
    judge: Judge,
    vectors: Mapping[str, Tensor],
    *,
    candidates: Sequence[float] = CANDIDATES,
    count: int = 500,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    num_workers: int = 0,
    progress: bool = False,
) -> dict[str, StrengthChoice]:
    """One `StrengthChoice` per attribute that both `vectors` and the judge know."""
    measured: dict[str, dict[float, dict[str, float]]] = {}
    for strength in candidates:
        result = evaluate_with_judge(
            model,
            faces,
            judge,
            vectors=vectors,
            edit_strength=strength,
            count=count,
            batch_size=batch_size,
            device=device,
            num_workers=num_workers,
            progress=progress,
        )
        for name in result.edited_attributes:
            row = result.per_attribute[name]
            measured.setdefault(name, {})[strength] = {key: float(row[key]) for key in EDIT_TARGETS}
    return {name: pick_strength(figures) for name, figures in measured.items()}


# --------------------------------------------------------------------------------------------
# the command


def add_strengths_command(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "strengths",
        help="choose a default edit strength per attribute with a judge",
        description=(
            "For each attribute vector in the checkpoint, judge edits mu +- s * vector on "
            "validation faces at every candidate s and record the smallest s that adds the "
            f"attribute to {EDIT_TARGETS['edit_success_add']:.0%} of faces, removes it from "
            f"{EDIT_TARGETS['edit_success_remove']:.0%} and keeps "
            f"{EDIT_TARGETS['edit_preservation']:.0%} of the other verdicts (else the closest). "
            "The checkpoint is rewritten atomically; the service then uses these strengths "
            "when a request names none."
        ),
    )
    add_checkpoint_arguments(parser)
    parser.add_argument("--data", type=Path, required=True, help="a CelebA-layout folder")
    add_data_arguments(parser, default_count=500, default_split="val")
    parser.add_argument(
        "--judge", type=Path, help="an attribute judge (default: the bundled synthetic one)"
    )
    parser.set_defaults(handler=run_strengths)


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
        checkpoint.model,
        faces,
        judge,
        vectors,
        count=args.count,
        batch_size=args.batch_size,
        device=device,
        num_workers=args.workers,
        progress=not args.quiet,
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
