"""Copy the demo run's VAE-GAN (float16 weights) and its judge into the package.

    python scripts/bundle_demo.py runs/demo [--model-out PATH] [--judge-out PATH]
                                            [--reproduce COMMAND]

Bundles RUN/vaegan/model.safetensors with the per-attribute edit strengths `vaegan-train
strengths` recorded in it, and RUN/judge.safetensors. Float16 parameters halve the file; the
script refuses to bundle when that changes the model's reconstructions by more than a few grey
levels on real faces from the run's data, when the file would exceed the package's size limit,
or when the strengths are missing. A refused bundle leaves the previous files in place. Nothing
is rewritten when the bundle already holds this checkpoint.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from model.checkpoint import load_checkpoint, read_checkpoint_header, save_checkpoint  # noqa: E402
from model.demo import demo_checkpoint_path  # noqa: E402
from model.networks import VAEGAN  # noqa: E402
from training.data import open_dataset  # noqa: E402
from training.judge import bundled_judge_path, load_judge  # noqa: E402

# 4/255 of the [-1, 1] range: invisible, and far below what the judge could notice.
MAX_MEAN_ABS_CHANGE = 8 / 255
# What a package may carry per file (tests/training/test_demo_model.py holds the bundle to it).
MAX_BYTES = 25 * 1024 * 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="the folder scripts/train_demo.sh wrote")
    parser.add_argument("--model-out", type=Path, default=demo_checkpoint_path())
    parser.add_argument("--judge-out", type=Path, default=bundled_judge_path())
    parser.add_argument(
        "--reproduce",
        help="the command recorded as having made the bundle "
        "(default: bash scripts/train_demo.sh RUN_DIR STEPS)",
    )
    args = parser.parse_args()

    source = args.run_dir / "vaegan" / "model.safetensors"
    judge_source = args.run_dir / "judge.safetensors"
    trained = load_checkpoint(source)
    header = trained.header
    unchosen = [name for name, a in trained.attributes.items() if a.default_strength is None]
    if not trained.attributes or unchosen:
        raise SystemExit(
            f"{source} has no edit strength for {', '.join(unchosen) or 'any attribute'}: "
            f"run `vaegan-train strengths --checkpoint {source}` first"
        )
    reproduce = args.reproduce or f"bash scripts/train_demo.sh {args.run_dir} {header.step}"
    # Which training checkpoint the bundle was made from: lets a rerun skip an unchanged bundle.
    recipe = header.recipe | {"reproduce": reproduce, "source_sha256": trained.sha256}
    if is_current(args.model_out, recipe, args.judge_out, judge_source):
        print(f"{args.model_out} already bundles {source}")
        return 0

    synthetic = header.dataset.get("synthetic", {})
    dataset = dict(header.dataset)
    training_data = Path(dataset["root"])
    # The training machine's path means nothing to users; the generator's arguments do.
    dataset["root"] = (
        f"vaegan-train synth --out DIR --count {synthetic.get('count')} "
        f"--seed {synthetic.get('seed')}"
    )
    # Written beside the target and checked there, so a refused bundle replaces nothing.
    args.model_out.parent.mkdir(parents=True, exist_ok=True)
    unchecked = args.model_out.with_name(f".{args.model_out.name}.unchecked")
    save_checkpoint(
        unchecked,
        trained.model,
        preprocessing=trained.preprocessing,
        step=header.step,
        dataset=dataset,
        recipe=recipe,
        evaluation=header.evaluation,
        attributes=trained.attributes,  # with their default strengths
        parameter_dtype=torch.float16,
    )
    try:
        check_bundle(unchecked, trained.model, training_data)
    except SystemExit:
        unchecked.unlink()
        raise
    unchecked.replace(args.model_out)

    load_judge(judge_source)  # refuse a broken judge before copying it
    copied = args.judge_out.with_name(f".{args.judge_out.name}.unchecked")
    args.judge_out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(judge_source, copied)
    copied.replace(args.judge_out)
    for path in (args.model_out, args.judge_out):
        print(f"{path}: {path.stat().st_size / 1e6:.2f} MB")
    return 0


def is_current(model_out: Path, recipe: dict[str, object], judge_out: Path, judge: Path) -> bool:
    """Whether the bundle already holds this checkpoint, command and judge."""
    if not (model_out.exists() and judge_out.exists()):
        return False
    bundled = read_checkpoint_header(model_out).recipe
    same_model = all(bundled.get(key) == recipe[key] for key in ("source_sha256", "reproduce"))
    return same_model and judge_out.read_bytes() == judge.read_bytes()


def check_bundle(path: Path, trained: VAEGAN, data: Path) -> None:
    """Refuse (SystemExit) a bundle too large for the package or changed by float16."""
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise SystemExit(
            f"the bundle would be {size / 2**20:.1f} MiB, over the package's "
            f"{MAX_BYTES / 2**20:g} MiB; not bundled"
        )
    bundled = load_checkpoint(path)
    faces = open_dataset(data, split="test", preprocessing=bundled.preprocessing, limit=256)
    images = torch.stack([faces.load(i) for i in range(len(faces))])
    with torch.no_grad():
        trained.eval()
        bundled.model.eval()
        before = trained.reconstruct(images)
        after = bundled.model.reconstruct(images)
    change = (before - after).abs().mean().item()
    print(f"float16 weights change reconstructions by {change * 127.5:.3f} grey levels on average")
    if change > MAX_MEAN_ABS_CHANGE:
        raise SystemExit("float16 changed the model too much; not bundled")


if __name__ == "__main__":
    raise SystemExit(main())
