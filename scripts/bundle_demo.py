"""Copy a trained demo run into the package: the VAE-GAN (float16 weights) and the judge.

    python scripts/bundle_demo.py runs/demo

Float16 parameters halve the file; the script refuses to bundle when that changes the model's
reconstructions by more than a few grey levels on real faces from the run's data.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from model.checkpoint import (  # noqa: E402
    load_checkpoint,
    read_checkpoint_header,
    save_checkpoint,
)
from model.demo import demo_checkpoint_path  # noqa: E402
from training.data import open_dataset  # noqa: E402
from training.judge import bundled_judge_path, load_judge  # noqa: E402

# 4/255 of the [-1, 1] range: invisible, and far below what the judge could notice.
MAX_MEAN_ABS_CHANGE = 8 / 255


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="the folder scripts/train_demo.sh wrote")
    args = parser.parse_args()

    trained = load_checkpoint(args.run_dir / "vaegan" / "model.safetensors")
    header = trained.header
    synthetic = header.dataset.get("synthetic", {})
    dataset = dict(header.dataset)
    training_data = Path(dataset["root"])
    # The training machine's path means nothing to users; the generator's arguments do.
    dataset["root"] = (
        f"vaegan-train synth --out DIR --count {synthetic.get('count')} "
        f"--seed {synthetic.get('seed')}"
    )
    compared = args.run_dir / "compare" / "vaegan.safetensors"
    compare_steps = read_checkpoint_header(compared).step if compared.exists() else header.step
    recipe = header.recipe | {
        "reproduce": f"bash scripts/train_demo.sh runs/demo {compare_steps} {header.step}"
    }
    # The strength scripts/choose_edit_strength.py picked on validation faces: the service's
    # default for /attribute-edit, and the s of the judged edits in docs/results.md.
    choice = json.loads((args.run_dir / "vaegan" / "edit_strength.json").read_text())
    evaluation = header.evaluation | {
        "edit_strength": choice["edit_strength"],
        "edit_strength_candidates": choice["candidates"],
    }

    target = demo_checkpoint_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(
        target,
        trained.model,
        preprocessing=trained.preprocessing,
        step=header.step,
        dataset=dataset,
        recipe=recipe,
        evaluation=evaluation,
        attributes=trained.attributes,
        parameter_dtype=torch.float16,
    )
    bundled = load_checkpoint(target)

    faces = open_dataset(
        training_data,
        split="test",
        preprocessing=trained.preprocessing,
        limit=256,
    )
    images = torch.stack([faces.load(i) for i in range(len(faces))])
    with torch.no_grad():
        trained.model.eval()
        bundled.model.eval()
        before = trained.model.reconstruct(images)
        after = bundled.model.reconstruct(images)
    change = (before - after).abs().mean().item()
    print(f"float16 weights change reconstructions by {change * 127.5:.3f} grey levels on average")
    if change > MAX_MEAN_ABS_CHANGE:
        target.unlink()
        raise SystemExit("float16 changed the model too much; not bundled")

    judge_target = bundled_judge_path()
    load_judge(args.run_dir / "judge.safetensors")  # refuse a broken judge before copying it
    shutil.copyfile(args.run_dir / "judge.safetensors", judge_target)
    for path in (target, judge_target):
        print(f"{path.relative_to(ROOT)}: {path.stat().st_size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
