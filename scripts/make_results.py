"""Write docs/results.md and its pictures from a run of scripts/train_demo.sh.

    python scripts/make_results.py runs/demo --data runs/demo/synth20k

Reads the bundled VAE-GAN (model/assets), the run's VAE baseline, both `evaluation.json` files
and the judge's report; draws sample grids, reconstructions beside their inputs and edit strips
from held-out test faces.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from model.checkpoint import Checkpoint, load_checkpoint  # noqa: E402
from model.codec import make_grid, tensor_to_image  # noqa: E402
from model.demo import demo_checkpoint_path  # noqa: E402
from training.attributes import attribute_edits  # noqa: E402
from training.data import CelebADataset  # noqa: E402
from training.evaluate import generate_samples  # noqa: E402
from training.judge import bundled_judge_path, load_judge  # noqa: E402

EDITED = ("Smiling", "Eyeglasses", "Blond_Hair", "Male", "Wearing_Hat", "Bangs", "Mustache")
EDIT_STRENGTHS = (-3.0, -1.5, 0.0, 1.5, 3.0)
# Pictures are drawn at twice the model's 64 px so faces are visible on the page.
ZOOM = 2


def save_picture(images: torch.Tensor, nrow: int, path: Path) -> None:
    picture = tensor_to_image(make_grid(images, nrow=nrow, padding=2))
    picture = picture.resize((picture.width * ZOOM, picture.height * ZOOM), Image.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path, optimize=True)
    print(f"wrote {path.relative_to(ROOT)}")


def first_without(faces: CelebADataset, attribute: str, skip: int = 0) -> torch.Tensor:
    column = faces.attribute_names.index(attribute)
    rows = (faces.labels[:, column] < 0).nonzero().flatten()
    return faces.load(int(rows[skip]))


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def number(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}g}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--data", type=Path, required=True, help="the run's synthetic faces")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs")
    args = parser.parse_args()
    torch.manual_seed(0)
    images_dir = args.docs / "images"

    vaegan = load_checkpoint(demo_checkpoint_path())
    vae = load_checkpoint(args.run_dir / "vae" / "model.safetensors")
    faces = CelebADataset(args.data, split="test", preprocessing=vaegan.preprocessing)
    reports = {
        name: json.loads((args.run_dir / name / "evaluation.json").read_text())
        for name in ("vaegan", "vae")
    }

    for name, checkpoint in (("vaegan", vaegan), ("vae", vae)):
        samples = generate_samples(checkpoint.model, 32, seed=0)
        save_picture(samples, 8, images_dir / f"samples-{name}.png")
    inputs = torch.stack([faces.load(i) for i in range(10)])
    with torch.no_grad():
        rows = torch.cat(
            [inputs, vae.model.eval().reconstruct(inputs), vaegan.model.eval().reconstruct(inputs)]
        )
    save_picture(rows, 10, images_dir / "reconstructions.png")
    strips = torch.cat(
        [
            attribute_edits(
                vaegan.model,
                first_without(faces, name, skip=index),
                [vaegan.attributes[name].vector],
                EDIT_STRENGTHS,
            )
            for index, name in enumerate(EDITED)
        ]
    )
    save_picture(strips, 1 + len(EDIT_STRENGTHS), images_dir / "edits.png")
    smile = torch.cat(
        [
            attribute_edits(
                vaegan.model,
                first_without(faces, "Smiling", skip=k),
                [vaegan.attributes["Smiling"].vector],
                (0.0, 1.0, 2.0, 3.0),
            )
            for k in range(3)
        ]
    )
    save_picture(smile, 5, images_dir / "smiling.png")
    shutil.copyfile(
        args.run_dir / "vaegan" / "loss_curves.png", images_dir / "loss-curves-vaegan.png"
    )

    judge = load_judge(bundled_judge_path())
    minutes = {name: training_minutes(args.run_dir / name) for name in ("vaegan", "vae")}
    (args.docs / "results.md").write_text(
        render(vaegan, vae, reports, judge.header.test_accuracy, minutes)
    )
    print(f"wrote {(args.docs / 'results.md').relative_to(ROOT)}")
    return 0


def training_minutes(run: Path) -> float:
    """Wall time of a run: from its run.json (written at the start) to its final checkpoint."""
    return ((run / "model.safetensors").stat().st_mtime - (run / "run.json").stat().st_mtime) / 60


def render(
    vaegan: Checkpoint,
    vae: Checkpoint,
    reports: dict[str, dict[str, Any]],
    judge_accuracy: dict[str, float],
    minutes: dict[str, float],
) -> str:
    gan, plain = reports["vaegan"], reports["vae"]
    header = vaegan.header
    strength = gan["judge"]["edit_strength"]
    rows = [
        ("Reconstruction MSE (lower is better)", "reconstruction_mse", number),
        (
            "Sharpness of reconstructions (1 = as sharp as the data)",
            "sharpness_reconstructions",
            number,
        ),
        ("Sharpness of samples", "sharpness_samples", number),
        ("Frechet distance, judge features (lower is better)", "frechet_distance", number),
        ("Reconstruction attribute agreement (target >= 90%)", "reconstruction_agreement", percent),
        (f"Edit success, adding (s = {strength:g}; target >= 80%)", "edit_success_add", percent),
        (
            f"Edit success, removing (s = {strength:g}; target >= 80%)",
            "edit_success_remove",
            percent,
        ),
        ("Preservation of other attributes (target >= 90%)", "edit_preservation", percent),
    ]
    table = ["| | VAE | VAE-GAN |", "|---|---:|---:|"]
    table += [
        f"| {label} | {fmt(plain.get(key))} | {fmt(gan.get(key))} |" for label, key, fmt in rows
    ]
    table.append(
        f"| Judge accuracy on the same inputs (the ceiling) | {percent(plain['judge_accuracy'])} "
        f"| {percent(gan['judge_accuracy'])} |"
    )
    per_attribute = [
        "| attribute | judge (test split) | reconstruction | add | remove | preservation |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, figures in gan["per_attribute"].items():
        per_attribute.append(
            f"| {name} | {percent(judge_accuracy.get(name))} "
            f"| {percent(figures.get('reconstruction_agreement'))} "
            f"| {percent(figures.get('edit_success_add'))} "
            f"| {percent(figures.get('edit_success_remove'))} "
            f"| {percent(figures.get('edit_preservation'))} |"
        )
    template = (ROOT / "scripts" / "results_template.md").read_text()
    return template.format(
        steps=f"{header.step:,}",
        images=f"{header.dataset.get('images', 0):,}",
        command=header.recipe.get("command", ""),
        vaegan_minutes=f"{minutes['vaegan']:.0f}",
        vae_minutes=f"{minutes['vae']:.0f}",
        analysis=(ROOT / "scripts" / "results_analysis.md").read_text().strip(),
        table="\n".join(table),
        per_attribute="\n".join(per_attribute),
        strength=f"{strength:g}",
        evaluated=f"{gan.get('images', 0):,}",
        vae_steps=f"{vae.header.step:,}",
        min_judge=percent(min(judge_accuracy.values())),
    )


if __name__ == "__main__":
    raise SystemExit(main())
