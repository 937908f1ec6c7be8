"""Choose the one edit strength s used for every attribute, on the validation split.

    python scripts/choose_edit_strength.py CHECKPOINT --data DIR [--judge JUDGE]

Edits are decode(mu + s * v_A). Too small an s leaves faces unchanged, too large a one changes
other attributes too; the chosen s maximises the worst of the three edit figures (adding,
removing, preservation), measured on validation faces so the test split stays untouched. Prints
one JSON object: the chosen strength and the figures for every candidate.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from model.checkpoint import load_checkpoint  # noqa: E402
from training.data import CelebADataset  # noqa: E402
from training.inference import InferenceOptions  # noqa: E402
from training.judge import bundled_judge_path, load_judge  # noqa: E402
from training.judge_eval import evaluate_with_judge  # noqa: E402

CANDIDATES = (1.0, 1.5, 2.0, 2.5, 3.0)
EDIT_FIGURES = ("edit_success_add", "edit_success_remove", "edit_preservation")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--data", type=Path, required=True, help="a CelebA-layout folder")
    parser.add_argument("--judge", type=Path, default=bundled_judge_path())
    parser.add_argument("--count", type=int, default=500, help="validation faces to edit")
    args = parser.parse_args()

    checkpoint = load_checkpoint(args.checkpoint)
    judge = load_judge(args.judge)
    faces = CelebADataset(args.data, split="val", preprocessing=checkpoint.preprocessing)
    vectors = {name: a.vector for name, a in checkpoint.attributes.items()}
    figures = {}
    for strength in CANDIDATES:
        result = evaluate_with_judge(
            checkpoint.model,
            faces,
            judge,
            vectors=vectors,
            edit_strength=strength,
            options=InferenceOptions(count=args.count),
        )
        figures[strength] = {name: result.metrics[name] for name in EDIT_FIGURES}
        print(f"s = {strength:g}: {figures[strength]}", file=sys.stderr)
    chosen = max(CANDIDATES, key=lambda s: min(figures[s].values()))
    print(json.dumps({"edit_strength": chosen, "candidates": figures}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
