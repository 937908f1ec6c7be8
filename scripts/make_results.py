"""Write docs/results.md and its pictures from a run of scripts/train_demo.sh.

    python scripts/make_results.py runs/demo --data runs/demo/synth20k [--bundle PATH]
                                   [--docs DIR] [--trained-ali]

Reads the bundled VAE-GAN (made from RUN/vaegan), the VAE and the authors' recipe (RUN/vae,
RUN/authors), ALI (RUN/ali with --trained-ali, else the previous page's figures in
scripts/previous_ali.json), their judged figures RUN/NAME.json and the judge's report; draws
sample grids, reconstructions and edit strips from held-out test faces. The prose that reads the
figures is hand-written in scripts/results_analysis.md (and scripts/results_study.md,
scripts/previous_ali.md) and included as it is.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from model.checkpoint import Checkpoint, load_checkpoint  # noqa: E402
from model.codec import make_grid, tensor_to_image  # noqa: E402
from model.config import PRESETS  # noqa: E402
from model.demo import demo_checkpoint_path  # noqa: E402
from training.attributes import attribute_edits  # noqa: E402
from training.data import CelebADataset  # noqa: E402
from training.evaluate import generate_samples  # noqa: E402
from training.judge import load_judge  # noqa: E402
from training.recipe import RECIPES, Recipe, describe_recipe  # noqa: E402
from training.run_dir import LOSS_CURVES, METRICS_FILE, read_metrics  # noqa: E402

SCRIPTS = ROOT / "scripts"
# Edit strips go from -s to +s at each attribute's own default strength s.
STRIP_FRACTIONS = (-1.0, -0.5, 0.0, 0.5, 1.0)
# The smile picture goes from the reconstruction (0) to half again the default strength.
SMILE_FRACTIONS = (0.0, 0.5, 1.0, 1.5)
# Pictures are drawn at twice the model's 64 px so faces are visible on the page.
ZOOM = 2


@dataclass(frozen=True)
class Column:
    """One model of the comparison."""

    key: str  # the run folder's and the pictures' name
    title: str
    checkpoint: Checkpoint | None  # None: the previous page's ALI, figures only
    report: dict[str, Any]
    recipe: dict[str, Any]  # the checkpoint's, with "name" the recipe it is or differs from
    preset: str
    steps: int
    command: str
    minutes: float | None  # None: not trained by this run


@dataclass(frozen=True)
class Target:
    """One of the issue's quality bars: `met(figure, the VAE's figure)`."""

    text: str
    met: Callable[[float, float], bool]


# The targets for the demo model, by figure.
TARGETS = {
    "reconstruction_agreement": Target(
        ">= 92% and >= the VAE's", lambda v, vae: v >= max(0.92, vae)
    ),
    "edit_success_add": Target(">= 80%", lambda v, vae: v >= 0.80),
    "edit_success_remove": Target(">= 95%", lambda v, vae: v >= 0.95),
    "edit_preservation": Target(">= 90%", lambda v, vae: v >= 0.90),
    "frechet_distance": Target("< 84 and < the VAE's", lambda v, vae: v < min(84.0, vae)),
    "sharpness_reconstructions": Target("in [0.8, 1.2]", lambda v, vae: 0.8 <= v <= 1.2),
}
# The columns the targets are checked for: the two VAE-GANs.
MARKED = ("vaegan", "authors")


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def number(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}g}"


# (label, figure, format), in table order
ROWS: tuple[tuple[str, str, Callable[[float | None], str]], ...] = (
    ("Reconstruction MSE (lower is better)", "reconstruction_mse", number),
    (
        "Sharpness of reconstructions (1 = as sharp as the data)",
        "sharpness_reconstructions",
        number,
    ),
    ("Sharpness of samples", "sharpness_samples", number),
    ("Frechet distance, judge features (lower is better)", "frechet_distance", number),
    ("Reconstruction attribute agreement", "reconstruction_agreement", percent),
    ("Edit success, adding", "edit_success_add", percent),
    ("Edit success, removing", "edit_success_remove", percent),
    ("Preservation of other attributes", "edit_preservation", percent),
    ("Judge accuracy on the same inputs (the ceiling)", "judge_accuracy", percent),
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--data", type=Path, required=True, help="the run's synthetic faces")
    parser.add_argument("--bundle", type=Path, default=demo_checkpoint_path())
    parser.add_argument("--docs", type=Path, default=ROOT / "docs", help="page and images/")
    parser.add_argument("--trained-ali", action="store_true", help="RUN/ali, not the previous")
    args = parser.parse_args()
    torch.manual_seed(0)
    run = args.run_dir
    images_dir = args.docs / "images"

    bundled = load_checkpoint(args.bundle)
    trained = load_checkpoint(run / "vaegan" / "model.safetensors")
    if bundled.header.recipe.get("source_sha256") != trained.sha256:
        raise SystemExit(f"{args.bundle} was not made from {run}/vaegan: run bundle_demo.py")
    name = recipe_name(bundled)
    authors = load_checkpoint(run / "authors" / "model.safetensors")
    columns = [
        column(run, "vaegan", f"{name} VAE-GAN (bundled)", bundled, name),
        column(run, "vae", "VAE", load_checkpoint(run / "vae" / "model.safetensors")),
        # Named against the authors' recipe, whichever named recipe it is closest to.
        column(run, "authors", "authors' VAE-GAN", authors, recipe_name(authors, "authors")),
    ]
    if args.trained_ali:
        ali = load_checkpoint(run / "ali" / "model.safetensors")
        columns.append(column(run, "ali", "ALI", ali))
    else:
        previous = json.loads((SCRIPTS / "previous_ali.json").read_text())
        columns.append(
            Column(
                "ali",
                "ALI (previous page)",
                None,
                previous["figures"],
                previous["recipe"],
                previous["preset"],
                previous["steps"],
                previous["command"],
                previous["minutes"],
            )
        )
    judge = load_judge(run / "judge.safetensors")
    faces = CelebADataset(args.data, split="test", preprocessing=bundled.preprocessing)

    pictures = draw_pictures(columns, bundled, faces, run, images_dir)
    page = render(columns, bundled, judge.header.test_accuracy, args, pictures)
    (args.docs / "results.md").write_text(page)
    print(f"wrote {args.docs / 'results.md'}")
    return 0


def column(
    run: Path, key: str, title: str, checkpoint: Checkpoint, name: str | None = None
) -> Column:
    header = checkpoint.header
    return Column(
        key,
        title,
        checkpoint,
        json.loads((run / f"{key}.json").read_text()),
        header.recipe | {"name": name or recipe_name(checkpoint)},
        preset_name(checkpoint),
        header.step,
        header.recipe["command"],
        training_minutes(run / key, checkpoint),
    )


def recipe_name(checkpoint: Checkpoint, base: str | None = None) -> str:
    """The named recipe a checkpoint was trained with, or the closest (or `base`) and what
    differs from it: "balanced", "authors + decoder_gan_loss=non-saturating"."""
    fields = Recipe().to_dict()
    recorded = checkpoint.header.recipe
    recipe = Recipe.from_dict({k: v for k, v in recorded.items() if k in fields})
    if base is None:
        return describe_recipe(recipe)
    named = RECIPES[base].to_dict()
    changed = [
        f"{key}={value}"
        for key, value in recipe.to_dict().items()
        if key not in ("objective", "seed") and named[key] != value
    ]
    return " + ".join([base, ", ".join(changed)] if changed else [base])


def preset_name(checkpoint: Checkpoint) -> str:
    """The `--preset` whose networks the checkpoint has (the discriminator aside)."""
    shape = ("image_size", "latent_dim", "encoder_channels", "decoder_channels", "encoder_fc")
    config = checkpoint.config.to_dict()
    for name, preset in PRESETS.items():
        if all(preset.to_dict()[key] == config[key] for key in shape):
            return name
    return "custom networks"


def training_minutes(run: Path, checkpoint: Checkpoint) -> float | None:
    """Training time of the checkpoint's steps from its run's logged throughput; None for a
    checkpoint placed in the run folder by hand (no metrics of its own)."""
    if not (run / METRICS_FILE).exists():
        return None
    batch = int(checkpoint.header.recipe.get("batch_size", 64))
    seconds, previous = 0.0, 0
    for record in read_metrics(run / METRICS_FILE):
        if record["step"] > checkpoint.header.step:
            break
        seconds += (record["step"] - previous) * batch / record["images_per_second"]
        previous = record["step"]
    return seconds / 60


# --------------------------------------------------------------------------------------------
# pictures


def save_picture(images: torch.Tensor, nrow: int, path: Path) -> None:
    picture = tensor_to_image(make_grid(images, nrow=nrow, padding=2))
    picture = picture.resize(
        (picture.width * ZOOM, picture.height * ZOOM), Image.Resampling.NEAREST
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path, optimize=True)
    print(f"wrote {path}")


def face_without(faces: CelebADataset, attribute: str, skip: int = 0) -> torch.Tensor:
    """The test faces without `attribute`, the `skip`-th of them (wrapping round)."""
    column = faces.attribute_names.index(attribute)
    rows = (faces.labels[:, column] < 0).nonzero().flatten()
    if len(rows) == 0:
        raise SystemExit(f"no test face lacks {attribute}; use more faces")
    return faces.load(int(rows[skip % len(rows)]))


def default_strength(checkpoint: Checkpoint, attribute: str) -> float:
    strength = checkpoint.attributes[attribute].default_strength
    if strength is None:
        raise SystemExit(f"{checkpoint.path} has no strength for {attribute}: run strengths")
    return strength


@dataclass(frozen=True)
class Pictures:
    samples: list[Column]  # whose sample grids were drawn, in order
    strip_rows: list[str]
    smile_strengths: list[float]
    loss_curves: list[Column]  # whose loss curves were copied


def draw_pictures(
    columns: list[Column],
    bundled: Checkpoint,
    faces: CelebADataset,
    run: Path,
    images_dir: Path,
) -> Pictures:
    drawn = [c for c in columns if c.checkpoint is not None]
    for c in drawn:
        assert c.checkpoint is not None
        samples = generate_samples(c.checkpoint.model, 32, seed=0)
        save_picture(samples, 8, images_dir / f"samples-{c.key}.png")

    # The inputs, then the VAE, the authors' recipe and the bundled model.
    by_key = {c.key: c.checkpoint for c in drawn}
    inputs = torch.stack([faces.load(i) for i in range(10)])
    rows = [inputs]
    with torch.no_grad():
        for key in ("vae", "authors", "vaegan"):
            model = by_key[key]
            assert model is not None
            rows.append(model.model.eval().reconstruct(inputs))
    save_picture(torch.cat(rows), 10, images_dir / "reconstructions.png")

    names = list(bundled.attributes)
    strips = []
    for index, name in enumerate(names):
        s = default_strength(bundled, name)
        vector = bundled.attributes[name].vector
        face = face_without(faces, name, skip=index)
        strips.append(
            attribute_edits(bundled.model, face, [vector], [f * s for f in STRIP_FRACTIONS])
        )
    save_picture(torch.cat(strips), 1 + len(STRIP_FRACTIONS), images_dir / "edits.png")

    smile = default_strength(bundled, "Smiling")
    smile_strengths = [f * smile for f in SMILE_FRACTIONS]
    rows = [
        attribute_edits(
            bundled.model,
            face_without(faces, "Smiling", skip=k),
            [bundled.attributes["Smiling"].vector],
            smile_strengths,
        )
        for k in range(3)
    ]
    save_picture(torch.cat(rows), 1 + len(SMILE_FRACTIONS), images_dir / "smiling.png")

    curves = []
    for c in drawn:
        source = run / c.key / LOSS_CURVES
        if source.exists():
            shutil.copyfile(source, images_dir / f"loss-curves-{c.key}.png")
            curves.append(c)
    return Pictures(drawn, names, smile_strengths, curves)


# --------------------------------------------------------------------------------------------
# the page


def render(
    columns: list[Column],
    bundled: Checkpoint,
    judge_accuracy: dict[str, float],
    args: argparse.Namespace,
    pictures: Pictures,
) -> str:
    by_key = {c.key: c for c in columns}
    vae = by_key["vae"].report
    bundled_report = by_key["vaegan"].report
    template = (SCRIPTS / "results_template.md").read_text()
    header = bundled.header
    synthetic = header.dataset.get("synthetic", {})
    smile = [f"{s:.3g}" for s in pictures.smile_strengths]
    return template.format(
        evaluated=f"{bundled_report.get('images', 0):,}",
        recipe=recipe_name(bundled),
        trained=trained_table(columns),
        images=f"{header.dataset.get('images', 0):,}",
        faces=f"{synthetic.get('count', 0):,}",
        data_seed=synthetic.get("seed"),
        size=header.preprocessing.image_size,
        batch=header.recipe.get("batch_size"),
        seed=header.recipe.get("seed"),
        commands=commands(columns),
        study_link=link(args.docs, "recipe-study.md"),
        design_link=link(args.docs, "design.md") + "#7-quality-bars",
        study=hand_written("results_study.md"),
        table=comparison_table(columns, vae),
        marks=marks_summary(columns, vae),
        ali_note=ali_note(by_key["ali"]),
        analysis=hand_written("results_analysis.md"),
        sample_order=", ".join(c.title for c in pictures.samples),
        samples=" ".join(
            f'<img src="images/samples-{c.key}.png" width="{96 // len(pictures.samples)}%" '
            f'alt="{c.title} samples">'
            for c in pictures.samples
        ),
        reconstruction_order=", ".join(by_key[key].title for key in ("vae", "authors", "vaegan")),
        smile_strengths=", ".join(smile),
        smile_default=smile[SMILE_FRACTIONS.index(1.0)],
        strip_rows=", ".join(pictures.strip_rows),
        loss_curves=loss_curves(pictures.loss_curves, columns),
        per_attribute=per_attribute_table(bundled, bundled_report, judge_accuracy),
        min_judge=percent(min(judge_accuracy.values())),
        reproduce=bundled.header.recipe.get("reproduce", "bash scripts/train_demo.sh"),
    )


def link(docs: Path, page: str) -> str:
    """A link from the page in `docs` to one of the repository's docs/ pages."""
    return Path(os.path.relpath(ROOT / "docs" / page, docs.resolve())).as_posix()


def hand_written(name: str) -> str:
    return (SCRIPTS / name).read_text().strip()


def trained_table(columns: list[Column]) -> str:
    def settings(recipe: dict[str, Any]) -> list[str]:
        uses_gamma = recipe.get("objective") in ("vaegan", "gan")
        ema = recipe.get("ema_decay")
        return [
            str(recipe.get("objective")),
            f"`{recipe['name']}`",
            f"{recipe.get('gamma'):g}" if uses_gamma else "-",
            str(recipe.get("decoder_gan_loss")) if recipe.get("objective") != "vae" else "-",
            f"{recipe.get('lr'):g}, {recipe.get('lr_schedule')}",
            "none (the last step's)" if ema is None else f"average, decay {ema:g}",
        ]

    labels = ("Objective", "Recipe", "gamma", "Decoder's GAN loss", "Learning rate", "Weights")
    values = [settings(c.recipe) for c in columns]
    table = ["| | " + " | ".join(c.title for c in columns) + " |", "|---|" + "---|" * len(columns)]
    for row, label in enumerate(labels):
        table.append(f"| {label} | " + " | ".join(v[row] for v in values) + " |")
    table.append("| Networks | " + " | ".join(f"`{c.preset}`" for c in columns) + " |")
    table.append("| Steps | " + " | ".join(f"{c.steps:,}" for c in columns) + " |")
    minutes = [
        "not trained by this run" if c.minutes is None else f"{c.minutes:.{digits(c.minutes)}f}"
        for c in columns
    ]
    table.append("| Minutes of training | " + " | ".join(minutes) + " |")
    return "\n".join(table)


def digits(minutes: float) -> int:
    """Decimals worth printing: whole minutes for real runs, tenths for the tiny dry runs."""
    return 0 if minutes >= 10 else 1


def commands(columns: list[Column]) -> str:
    return "\n\n".join(f"{c.title}:\n\n```text\n{c.command}\n```" for c in columns)


def comparison_table(columns: list[Column], vae: dict[str, Any]) -> str:
    titles = " | ".join(c.title for c in columns)
    table = [f"| | {titles} | target |", "|---|" + "---:|" * len(columns) + "---|"]
    for label, key, fmt in ROWS:
        cells = []
        for c in columns:
            value = c.report.get(key)
            cell = fmt(value)
            target = TARGETS.get(key)
            if target is not None and c.key in MARKED and value is not None:
                cell += " ✓" if target.met(value, vae[key]) else " ✗"
            cells.append(cell)
        aim = TARGETS[key].text if key in TARGETS else ""
        table.append(f"| {label} | " + " | ".join(cells) + f" | {aim} |")
    table.append("| Edit strengths s | " + " | ".join(strengths(c) for c in columns) + " | |")
    return "\n".join(table)


def strengths(c: Column) -> str:
    if c.checkpoint is None:
        return "3 for every attribute"
    used = sorted(c.report["judge"]["edit_strengths"].values())
    if not used:
        return "n/a"
    if used[0] == used[-1]:
        return f"{used[0]:g} for every attribute"
    return f"per attribute, {used[0]:g} to {used[-1]:g}"


def marks_summary(columns: list[Column], vae: dict[str, Any]) -> str:
    lines = ["✓ meets the target, ✗ misses it (checked for the two VAE-GANs)."]
    for c in columns:
        if c.key not in MARKED:
            continue
        met = [
            key
            for key, target in TARGETS.items()
            if c.report.get(key) is not None and target.met(c.report[key], vae[key])
        ]
        lines.append(f"{c.title}: {len(met)} of the {len(TARGETS)} targets met.")
    return " ".join(lines)


def ali_note(ali: Column) -> str:
    if ali.checkpoint is not None:
        return ""
    previous = json.loads((SCRIPTS / "previous_ali.json").read_text())
    return (
        f"**The ALI column is not from this run.** ALI was not retrained (`ALI_STEPS` unset), "
        f"so its figures are the previous page's: {previous['steps']:,} steps, edits at "
        f"{previous['edit_strengths']}. They are {previous['source']} "
        "(`scripts/previous_ali.json`); set `ALI_STEPS` to train it again.\n\n"
        + hand_written("previous_ali.md")
    )


def loss_curves(curves: list[Column], columns: list[Column]) -> str:
    parts = [
        "Losses during training. The second panel shows the decoder's two gradient norms: "
        "gamma * |dL_llike| and (1 - gamma) * |dL_gan|."
    ]
    for c in curves:
        parts.append(f"{c.title}:\n\n![{c.title} loss curves](images/loss-curves-{c.key}.png)")
    missing = [c.title for c in columns if c.checkpoint is not None and c not in curves]
    if missing:
        parts.append(
            f"No loss curves for {', '.join(missing)}: its checkpoint was placed in the run "
            "folder, not trained by this run."
        )
    return "\n\n".join(parts)


def per_attribute_table(
    bundled: Checkpoint, report: dict[str, Any], judge_accuracy: dict[str, float]
) -> str:
    choices = bundled.header.evaluation.get("edit_strength_choice", {})
    table = [
        "| attribute | s | targets at s (validation) | judge (test split) | reconstruction "
        "| add | remove | preservation |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for name, figures in report["per_attribute"].items():
        strength = figures.get("edit_strength")
        choice = choices.get(name)
        met = "-" if choice is None else ("met" if choice["meets_targets"] else "missed")
        table.append(
            f"| {name} | {'-' if strength is None else f'{strength:g}'} | {met} "
            f"| {percent(judge_accuracy.get(name))} "
            f"| {percent(figures.get('reconstruction_agreement'))} "
            f"| {percent(figures.get('edit_success_add'))} "
            f"| {percent(figures.get('edit_success_remove'))} "
            f"| {percent(figures.get('edit_preservation'))} |"
        )
    return "\n".join(table)


if __name__ == "__main__":
    raise SystemExit(main())
