"""Score one recipe-study probe: the judge's figures for its checkpoint, and for its raw weights.

    python scripts/score_probe.py RUN_DIR --data DIR [--count 1000] [--edit-strength 3]

A probe trained with --ema-decay writes averaged weights to RUN_DIR/model.safetensors; its last
raw weights live in the training state. Both are scored on the same held-out test faces, so the
study shows what averaging alone is worth. Writes RUN_DIR/score.json: {"checkpoint": figures,
"raw": figures or absent, "minutes": training minutes from metrics.jsonl}.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from model.atomic import atomic_write_bytes  # noqa: E402
from model.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from training.attributes import compute_attribute_vectors  # noqa: E402
from training.data import CelebADataset  # noqa: E402
from training.inference import InferenceOptions  # noqa: E402
from training.run_dir import METRICS_FILE, STATE_FILE, load_training_state  # noqa: E402


def raw_checkpoint(run_dir: Path, data: Path) -> Path | None:
    """The run's last raw weights as a checkpoint with their own attribute vectors, if averaged."""
    tensors, header = load_training_state(run_dir / STATE_FILE)
    if header["recipe"].get("ema_decay") is None:
        return None
    checkpoint = load_checkpoint(run_dir / "model.safetensors")
    model = checkpoint.model
    weights = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    model.load_state_dict(weights, strict=True)
    faces = CelebADataset(data, split="train", preprocessing=checkpoint.preprocessing)
    report = compute_attribute_vectors(model, faces, options=InferenceOptions(count=10_000))
    path = run_dir / "raw.safetensors"
    meta = checkpoint.header
    save_checkpoint(
        path,
        model,
        preprocessing=checkpoint.preprocessing,
        step=meta.step,
        dataset=meta.dataset,
        recipe=meta.recipe,
        evaluation=meta.evaluation,
        attributes=report.vectors,
    )
    return path


def judged(checkpoint: Path, data: Path, count: int, strength: float) -> dict[str, float]:
    command = [
        sys.executable, "-m", "training", "evaluate", "--checkpoint", str(checkpoint),
        "--data", str(data), "--split", "test", "--count", str(count), "--json", "--quiet",
        "--edit-strength", str(strength),
    ]  # fmt: skip
    result = subprocess.run(command, check=True, capture_output=True, text=True)
    figures: dict[str, float] = json.loads(result.stdout)
    return figures


def training_minutes(run_dir: Path) -> float:
    seconds = 0.0
    previous = 0
    for line in (run_dir / METRICS_FILE).read_text().splitlines():
        record = json.loads(line)
        seconds += (record["step"] - previous) * 64 / record["images_per_second"]
        previous = record["step"]
    return seconds / 60


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--edit-strength", type=float, default=3.0)
    args = parser.parse_args()
    score = {
        "checkpoint": judged(
            args.run_dir / "model.safetensors", args.data, args.count, args.edit_strength
        ),
        "minutes": training_minutes(args.run_dir),
    }
    raw = raw_checkpoint(args.run_dir, args.data)
    if raw is not None:
        score["raw"] = judged(raw, args.data, args.count, args.edit_strength)
    atomic_write_bytes(args.run_dir / "score.json", json.dumps(score, indent=2).encode())
    print(json.dumps(score))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
