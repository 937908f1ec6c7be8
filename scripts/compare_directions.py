"""The paper's mean-difference attribute vectors against the controlled ones, judged on one model.

    python scripts/compare_directions.py CHECKPOINT --data DIR [--count 500] [--strength 3]

Both sets of vectors come from the same training faces (10,000 by default); their edits
mu +- s * v are judged on validation faces (the test split stays for the study's figures).
Prints one JSON object: per direction, the averaged edit figures and, per attribute, adding,
removing and preservation.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from model.checkpoint import load_checkpoint  # noqa: E402
from training.attributes import DIRECTIONS, compute_attribute_vectors  # noqa: E402
from training.data import CelebADataset  # noqa: E402
from training.inference import InferenceOptions  # noqa: E402
from training.judge import bundled_judge_path, load_judge  # noqa: E402
from training.judge_eval import evaluate_with_judge  # noqa: E402

EDIT_FIGURES = ("edit_success_add", "edit_success_remove", "edit_preservation")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--data", type=Path, required=True, help="a CelebA-layout folder")
    parser.add_argument("--judge", type=Path, default=bundled_judge_path())
    parser.add_argument("--count", type=int, default=500, help="validation faces to edit")
    parser.add_argument("--strength", type=float, default=3.0)
    parser.add_argument("--vector-images", type=int, default=10_000, help="training faces")
    args = parser.parse_args()

    checkpoint = load_checkpoint(args.checkpoint)
    judge = load_judge(args.judge)
    preprocessing = checkpoint.preprocessing
    train = CelebADataset(args.data, split="train", preprocessing=preprocessing)
    faces = CelebADataset(args.data, split="val", preprocessing=preprocessing)
    report: dict[str, object] = {"strength": args.strength, "faces": args.count}
    for direction in DIRECTIONS:
        vectors = compute_attribute_vectors(
            checkpoint.model,
            train,
            options=InferenceOptions(count=args.vector_images),
            direction=direction,
        )
        judged = evaluate_with_judge(
            checkpoint.model,
            faces,
            judge,
            vectors={name: a.vector for name, a in vectors.vectors.items()},
            edit_strength=args.strength,
            options=InferenceOptions(count=args.count),
        )
        report[direction] = {
            "mean": {name: judged.metrics[name] for name in EDIT_FIGURES},
            "per_attribute": {
                name: {key: judged.per_attribute[name][key] for key in EDIT_FIGURES}
                for name in judged.edited_attributes
            },
        }
        print(f"{direction}: {report[direction]['mean']}", file=sys.stderr)  # type: ignore[index]
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
