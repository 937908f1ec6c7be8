"""The paper's mean-difference attribute vectors against the controlled ones, judged on one model.

    python scripts/compare_directions.py CHECKPOINT --data DIR [--count 500]
                                         [--strength 3 | --per-attribute]

Both sets of vectors come from the same training faces (10,000 by default); their edits
mu +- s * v are judged on validation faces (the test split stays for the study's figures), through
`vaegan-train strengths`'s code path (training/strengths.py). With --strength, every attribute of
both directions edits at that s; with --per-attribute, each direction's attributes edit at the
strengths `vaegan-train strengths` would choose for them, and the figures are the ones they were
chosen on (fit to compare the directions with each other, not with held-out figures). Prints one
JSON object: per direction, the edit figures averaged over attributes and, per attribute, the
strength, whether it met the edit targets, adding, removing and preservation.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from model.checkpoint import load_checkpoint  # noqa: E402
from training.attributes import DIRECTIONS, compute_attribute_vectors  # noqa: E402
from training.data import CelebADataset  # noqa: E402
from training.inference import InferenceOptions  # noqa: E402
from training.judge import bundled_judge_path, load_judge  # noqa: E402
from training.strengths import CANDIDATES, EDIT_TARGETS, StrengthChoice, choose_strengths  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--data", type=Path, required=True, help="a CelebA-layout folder")
    parser.add_argument("--judge", type=Path, default=bundled_judge_path())
    parser.add_argument("--count", type=int, default=500, help="validation faces to edit")
    strength = parser.add_mutually_exclusive_group()
    strength.add_argument("--strength", type=float, default=3.0, help="one s for every edit")
    strength.add_argument(
        "--per-attribute",
        action="store_true",
        help=f"each attribute's own s among {', '.join(f'{s:g}' for s in CANDIDATES)}",
    )
    parser.add_argument("--vector-images", type=int, default=10_000, help="training faces")
    args = parser.parse_args()

    checkpoint = load_checkpoint(args.checkpoint)
    judge = load_judge(args.judge)
    preprocessing = checkpoint.preprocessing
    train = CelebADataset(args.data, split="train", preprocessing=preprocessing)
    faces = CelebADataset(args.data, split="val", preprocessing=preprocessing)
    candidates = CANDIDATES if args.per_attribute else (args.strength,)
    report: dict[str, object] = {
        "strength": "per attribute" if args.per_attribute else args.strength,
        "faces": args.count,
    }
    for direction in DIRECTIONS:
        vectors = compute_attribute_vectors(
            checkpoint.model,
            train,
            options=InferenceOptions(count=args.vector_images),
            direction=direction,
        )
        choices = choose_strengths(
            checkpoint.model,
            faces,
            judge,
            {name: a.vector for name, a in vectors.vectors.items()},
            candidates=candidates,
            options=InferenceOptions(count=args.count),
        )
        summary = summarise(choices)
        report[direction] = summary
        print(f"{direction}: {summary['mean']}", file=sys.stderr)
    print(json.dumps(report))
    return 0


def summarise(choices: dict[str, StrengthChoice]) -> dict[str, object]:
    """Each attribute's figures at its strength, and their means over attributes (NaN: none of
    the faces could take that edit; left out of the mean, as `evaluate` does)."""
    per_attribute: dict[str, object] = {}
    sums = dict.fromkeys(EDIT_TARGETS, 0.0)
    counts = dict.fromkeys(EDIT_TARGETS, 0)
    for name, choice in choices.items():
        figures = choice.figures[choice.strength]
        per_attribute[name] = {
            "strength": choice.strength,
            "meets_targets": choice.meets_targets,
            **{key: figures[key] if math.isfinite(figures[key]) else None for key in EDIT_TARGETS},
        }
        for key in EDIT_TARGETS:
            if math.isfinite(figures[key]):
                sums[key] += figures[key]
                counts[key] += 1
    mean = {key: sums[key] / counts[key] if counts[key] else None for key in EDIT_TARGETS}
    return {"mean": mean, "per_attribute": per_attribute}


if __name__ == "__main__":
    raise SystemExit(main())
