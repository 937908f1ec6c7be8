"""Write docs/results.md and its pictures from a run of scripts/train_demo.sh.

    python scripts/make_results.py runs/demo --data runs/demo/synth20k

Reads the three models compared on equal budgets (the VAE-GAN's copy in RUN/compare, the VAE and
ALI runs), the bundled VAE-GAN (model/assets) when it trained longer, their evaluation files and
the judge's report; draws sample grids, reconstructions beside their inputs and edit strips from
held-out test faces.
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
# Edit strips and the smile picture go up to the bundled model's own strength s, in these steps.
STRIP_FRACTIONS = (-1.0, -0.5, 0.0, 0.5, 1.0)
SMILE_FRACTIONS = (0.0, 1 / 3, 2 / 3, 1.0)
# Pictures are drawn at twice the model's 64 px so faces are visible on the page.
ZOOM = 2


def save_picture(images: torch.Tensor, nrow: int, path: Path) -> None:
    picture = tensor_to_image(make_grid(images, nrow=nrow, padding=2))
    picture = picture.resize((picture.width * ZOOM, picture.height * ZOOM), Image.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path, optimize=True)
    print(f"wrote {path}")


def first_without(faces: CelebADataset, attribute: str, skip: int = 0) -> torch.Tensor:
    column = faces.attribute_names.index(attribute)
    rows = (faces.labels[:, column] < 0).nonzero().flatten()
    return faces.load(int(rows[skip]))


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def number(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}g}"


# The comparison's columns, in table order; "demo" (the bundled model) joins when it trained longer.
COLUMNS = {"vae": "VAE", "ali": "ALI", "vaegan": "VAE-GAN", "demo": "VAE-GAN, bundled"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--data", type=Path, required=True, help="the run's synthetic faces")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs")
    args = parser.parse_args()
    torch.manual_seed(0)
    images_dir = args.docs / "images"
    run, compare = args.run_dir, args.run_dir / "compare"

    checkpoints = {
        "vae": load_checkpoint(run / "vae" / "model.safetensors"),
        "ali": load_checkpoint(run / "ali" / "model.safetensors"),
        "vaegan": load_checkpoint(compare / "vaegan.safetensors"),
        "demo": load_checkpoint(demo_checkpoint_path()),
    }
    reports = {
        name: json.loads((compare / f"{name}.json").read_text())
        for name in ("vae", "ali", "vaegan")
    }
    demo = checkpoints["demo"]
    strength = float(demo.header.evaluation.get("edit_strength", 3.0))
    if demo.header.step > checkpoints["vaegan"].header.step:
        reports["demo"] = json.loads((run / "vaegan" / "evaluation.json").read_text())
    faces = CelebADataset(args.data, split="test", preprocessing=demo.preprocessing)

    for name, checkpoint in checkpoints.items():
        samples = generate_samples(checkpoint.model, 32, seed=0)
        save_picture(samples, 8, images_dir / f"samples-{name}.png")
    inputs = torch.stack([faces.load(i) for i in range(10)])
    with torch.no_grad():
        rows = torch.cat(
            [inputs, *(c.model.eval().reconstruct(inputs) for c in checkpoints.values())]
        )
    save_picture(rows, 10, images_dir / "reconstructions.png")
    strips = torch.cat(
        [
            attribute_edits(
                demo.model,
                first_without(faces, name, skip=index),
                [demo.attributes[name].vector],
                [f * strength for f in STRIP_FRACTIONS],
            )
            for index, name in enumerate(EDITED)
        ]
    )
    save_picture(strips, 1 + len(STRIP_FRACTIONS), images_dir / "edits.png")
    smile = torch.cat(
        [
            attribute_edits(
                demo.model,
                first_without(faces, "Smiling", skip=k),
                [demo.attributes["Smiling"].vector],
                [f * strength for f in SMILE_FRACTIONS],
            )
            for k in range(3)
        ]
    )
    save_picture(smile, 5, images_dir / "smiling.png")
    for name in ("vaegan", "ali"):
        shutil.copyfile(run / name / "loss_curves.png", images_dir / f"loss-curves-{name}.png")

    judge = load_judge(bundled_judge_path())
    minutes = {
        name: training_minutes(run / name, checkpoints[name].header.step)
        for name in ("vae", "ali", "vaegan")
    }
    (args.docs / "results.md").write_text(
        render(checkpoints, reports, judge.header.test_accuracy, minutes)
    )
    print(f"wrote {args.docs / 'results.md'}")
    return 0


def training_minutes(run: Path, up_to_step: int) -> float:
    """Training time of a run's first `up_to_step` steps, from its logged throughput."""
    seconds, previous = 0.0, 0
    for line in (run / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record["step"] > up_to_step:
            break
        seconds += (record["step"] - previous) * 64 / record["images_per_second"]
        previous = record["step"]
    return seconds / 60


def render(
    checkpoints: dict[str, Checkpoint],
    reports: dict[str, dict[str, Any]],
    judge_accuracy: dict[str, float],
    minutes: dict[str, float],
) -> str:
    names = [name for name in COLUMNS if name in reports]
    demo_name = names[-1]
    demo, demo_report = checkpoints[demo_name], reports[demo_name]
    compare_steps = checkpoints["vaegan"].header.step
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
        ("Edit success, adding (target >= 80%)", "edit_success_add", percent),
        ("Edit success, removing (target >= 80%)", "edit_success_remove", percent),
        ("Preservation of other attributes (target >= 90%)", "edit_preservation", percent),
        ("Judge accuracy on the same inputs (the ceiling)", "judge_accuracy", percent),
    ]
    titles = [
        f"{COLUMNS[name]} ({checkpoints[name].header.step:,} steps)"
        if name == "demo"
        else COLUMNS[name]
        for name in names
    ]
    table = ["| | " + " | ".join(titles) + " |", "|---|" + "---:|" * len(names)]
    table += [
        f"| {label} | " + " | ".join(fmt(reports[n].get(key)) for n in names) + " |"
        for label, key, fmt in rows
    ]
    table.append(
        "| Edit strength s | "
        + " | ".join(f"{reports[n]['judge']['edit_strength']:g}" for n in names)
        + " |"
    )
    per_attribute = [
        "| attribute | judge (test split) | reconstruction | add | remove | preservation |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, figures in demo_report["per_attribute"].items():
        per_attribute.append(
            f"| {name} | {percent(judge_accuracy.get(name))} "
            f"| {percent(figures.get('reconstruction_agreement'))} "
            f"| {percent(figures.get('edit_success_add'))} "
            f"| {percent(figures.get('edit_success_remove'))} "
            f"| {percent(figures.get('edit_preservation'))} |"
        )
    template = (ROOT / "scripts" / "results_template.md").read_text()
    return template.format(
        compare_steps=f"{compare_steps:,}",
        demo_steps=f"{demo.header.step:,}",
        images=f"{demo.header.dataset.get('images', 0):,}",
        command=demo.header.recipe.get("command", ""),
        ali_command=checkpoints["ali"].header.recipe.get("command", ""),
        reproduce=demo.header.recipe.get("reproduce", "bash scripts/train_demo.sh"),
        vaegan_minutes=f"{minutes['vaegan']:.0f}",
        vae_minutes=f"{minutes['vae']:.0f}",
        ali_minutes=f"{minutes['ali']:.0f}",
        analysis=(ROOT / "scripts" / "results_analysis.md").read_text().strip(),
        table="\n".join(table),
        per_attribute="\n".join(per_attribute),
        demo_strength=f"{demo_report['judge']['edit_strength']:g}",
        half_strength=f"{demo_report['judge']['edit_strength'] / 2:g}",
        smile_strengths=", ".join(
            f"{f * demo_report['judge']['edit_strength']:g}" for f in SMILE_FRACTIONS
        ),
        evaluated=f"{demo_report.get('images', 0):,}",
        min_judge=percent(min(judge_accuracy.values())),
    )


if __name__ == "__main__":
    raise SystemExit(main())
