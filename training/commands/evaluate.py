"""`vaegan-train evaluate`: a checkpoint's figures on a folder of images, judged ones included."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from model.checkpoint import Checkpoint
from training.commands._args import (
    Subparsers,
    add_checkpoint_arguments,
    add_command,
    add_data_arguments,
    data_options,
    int_in_range,
    load_for_command,
    positive_number,
)
from training.data import CelebADataset, open_dataset, read_synthetic_manifest
from training.evaluate import EVALUATION_OPTIONS, METRIC_NAMES, evaluate
from training.judge import bundled_judge_path, load_judge
from training.judge_eval import (
    DEFAULT_EDIT_STRENGTH,
    JUDGE_METRIC_HELP,
    JUDGE_METRIC_NAMES,
    JudgeEvaluation,
    check_judge_compatible,
    evaluate_with_judge,
)

_EDIT_COLUMNS = ("edit_success_add", "edit_success_remove", "edit_preservation")

_METRIC_HELP = {
    "reconstruction_mse": "mean squared pixel error of reconstructions ([-1, 1] range)",
    "similarity_distance": "mean squared Dis_l feature difference, reconstruction vs input",
    "kl": "KL(q(z|x) || N(0, I)) per image, nats",
    "sharpness_reconstructions": "high-frequency energy of reconstructions / of the data",
    "sharpness_samples": "high-frequency energy of samples from N(0, I) / of the data",
}

HELP = "measure reconstructions, the learned similarity, KL and sharpness"
DESCRIPTION = (
    "Evaluate a checkpoint on a CelebA-layout folder (--split applies) or any folder of "
    "images. Sharpness is high-frequency energy relative to the real images: 1.0 is as "
    "sharp as the data, a blurry VAE scores far below 1."
)


def register(subparsers: Subparsers) -> None:
    parser = add_command(subparsers, "evaluate", run_evaluate, help=HELP, description=DESCRIPTION)
    add_checkpoint_arguments(parser)
    add_data_arguments(
        parser,
        data_help="CelebA folder or image folder",
        default_count=EVALUATION_OPTIONS.count,
        default_split="test",
    )
    parser.add_argument("--seed", type=int_in_range(0), default=0, help="seed for the samples")
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object (and nothing else) on stdout"
    )
    parser.add_argument(
        "--judge",
        type=Path,
        help="an attribute judge (`vaegan-train judge`): adds reconstruction agreement, edit "
        "success and preservation, and the Frechet distance in the judge's feature space; "
        "needs labelled (CelebA-layout) data. Synthetic faces get the bundled judge by default",
    )
    parser.add_argument(
        "--no-judge", action="store_true", help="skip the judged figures, even on synthetic faces"
    )
    parser.add_argument(
        "--edit-strength",
        type=positive_number,
        help="s in the judged edits mu +- s * vector, for every attribute (default: each "
        "attribute's recorded default strength, `vaegan-train strengths`, else "
        f"{DEFAULT_EDIT_STRENGTH:g})",
    )


def run_evaluate(args: argparse.Namespace) -> int:
    checkpoint, device = load_for_command(args)
    dataset = open_dataset(
        args.data, split=args.split, preprocessing=checkpoint.preprocessing, limit=args.count
    )
    if args.judge is None and not args.no_judge and read_synthetic_manifest(args.data):
        args.judge = bundled_judge_path()
    judge = None
    if args.judge is not None and not args.no_judge:
        # Refuse an unusable judge before spending minutes on the rest of the evaluation.
        judge = load_judge(args.judge, device=device)
        check_judge_compatible(
            judge,
            data_attributes=tuple(dataset.attribute_names),
            preprocessing=checkpoint.preprocessing,
        )
    options = data_options(args, device)
    metrics = evaluate(checkpoint.model, dataset, options=options, seed=args.seed)
    judged = None
    if judge is not None:
        judged = evaluate_with_judge(
            checkpoint.model,
            dataset,
            judge,
            vectors={name: a.vector for name, a in checkpoint.attributes.items()},
            edit_strength=args.edit_strength or DEFAULT_EDIT_STRENGTH,
            edit_strengths=None if args.edit_strength else recorded_strengths(checkpoint),
            options=options,
            seed=args.seed,
        )
    if args.json:
        report: dict[str, Any] = dict(metrics)
        if judged is not None:
            report |= judged.metrics
            report["per_attribute"] = judged.per_attribute
            report["judge"] = {
                "path": str(args.judge),
                "edit_strength": judged.edit_strength,
                "edit_strengths": judged.edit_strengths,
                "edited_attributes": list(judged.edited_attributes),
            }
        print(json.dumps(_finite_or_null(report)))
        return 0
    where = f"the {args.split} split of " if isinstance(dataset, CelebADataset) else ""
    damaged = f" ({metrics['damaged']} unreadable skipped)" if metrics["damaged"] else ""
    print(
        f"{args.checkpoint} ({checkpoint.header.objective}, step {checkpoint.header.step}) on "
        f"{metrics['images']} images of "
        f"{where}{args.data}{damaged}"
    )
    for name in METRIC_NAMES:
        print(f"{name:<27}{metrics[name]:>12.6g}  {_METRIC_HELP[name]}")
    if judged is not None:
        _print_judged(judged, args.judge)
    return 0


def recorded_strengths(checkpoint: Checkpoint) -> dict[str, float]:
    """The per-attribute default strengths a checkpoint records (`vaegan-train strengths`)."""
    return {
        name: a.default_strength
        for name, a in checkpoint.attributes.items()
        if a.default_strength is not None
    }


def _finite_or_null(value: Any) -> Any:
    """NaN is not JSON: a figure with no defined value becomes null, at any depth."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite_or_null(item) for key, item in value.items()}
    return value


def _print_judged(judged: JudgeEvaluation, judge_path: Path) -> None:
    used = set(judged.edit_strengths.values()) or {judged.edit_strength}
    at = f"strength {used.pop():g}" if len(used) == 1 else "each attribute's default strength"
    print(f"judged by {judge_path}; edits at {at}")
    for name in JUDGE_METRIC_NAMES:
        print(f"{name:<27}{judged.metrics[name]:>12.6g}  {JUDGE_METRIC_HELP[name]}")
    if not judged.edited_attributes:
        print(
            "no edit figures: the checkpoint has no attribute vectors for the judge's attributes "
            "(run `vaegan-train attributes` first)"
        )
    columns = ("judge_accuracy", "reconstruction_agreement", *_EDIT_COLUMNS)
    print(f"{'attribute':<24}{'judge':>8}{'recon':>8}{'add':>8}{'remove':>8}{'keep':>8}")
    for attribute, figures in judged.per_attribute.items():
        cells = "".join(
            f"{figures[key]:>8.3f}" if key in figures else f"{'-':>8}" for key in columns
        )
        print(f"{attribute:<24}{cells}")
