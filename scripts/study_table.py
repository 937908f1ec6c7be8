"""The recipe study's page, from the probes' run folders and score.json files.

    python scripts/study_table.py runs/study [--page docs/recipe-study.md]

One table row per scored probe and weight kind (averaged checkpoint, raw last-step weights): what
the probe changed, the judge's figures on 1,000 held-out test faces (scripts/score_probe.py),
sharpness and training minutes; probes still training are listed with the step they reached.
With --page, writes the whole page and, beside it in images/, the probes' decoder-gradient
ratios against step (study-gradients.png); without, prints the table.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from model.atomic import atomic_write_bytes  # noqa: E402
from training.run_dir import METRICS_FILE, read_metrics  # noqa: E402

COLUMNS = (
    ("reconstruction_agreement", "agreement", "{:.1%}"),
    ("edit_success_add", "add", "{:.1%}"),
    ("edit_success_remove", "remove", "{:.1%}"),
    ("edit_preservation", "preservation", "{:.1%}"),
    ("frechet_distance", "Frechet", "{:.0f}"),
    ("sharpness_reconstructions", "sharpness (recon)", "{:.2f}"),
)
GRADIENT_IMAGE = "study-gradients.png"


def probes(study: Path) -> list[Path]:
    return sorted(p for p in study.iterdir() if (p / "run.json").is_file())


def changed(run_dir: Path) -> str:
    """What the probe's recipe sets, from the recipe its run recorded."""
    recipe = json.loads((run_dir / "run.json").read_text())["recipe"]
    parts = [f"gamma {recipe['gamma']:g}"]
    if recipe["discriminate_reconstructions"]:
        parts.append("D sees reconstructions")
    return ", ".join(parts)


def _cells(figures: dict[str, Any]) -> list[str]:
    return [
        "-" if figures.get(key) is None else fmt.format(figures[key]) for key, _, fmt in COLUMNS
    ]


def _gradient_ratio(record: dict[str, Any]) -> float:
    """gamma * |dL_llike| / ((1 - gamma) * |dL_gan|): above 1 the decoder mostly reconstructs."""
    gan = record.get("grad_dec_gan", math.nan)
    return float(record.get("grad_dec_llike", math.nan) / gan) if gan else math.nan


def table(study: Path) -> str:
    header = ["probe", "steps", "weights", *[title for _, title, _ in COLUMNS]]
    header += ["grad ratio", "minutes"]
    rows = [header, ["---"] * 3 + ["---:"] * (len(header) - 3)]
    for run_dir in probes(study):
        records = read_metrics(run_dir / METRICS_FILE)
        steps = f"{records[-1]['step']:,}" if records else "0"
        # The ratio over the last 500 logged steps: the balance the probe settled into.
        recent = [_gradient_ratio(r) for r in records if r["step"] > records[-1]["step"] - 500]
        ratio = f"{sum(recent) / len(recent):.3g}" if recent else "-"
        score_path = run_dir / "score.json"
        if not score_path.is_file():
            blank = [""] * len(COLUMNS)
            rows.append([changed(run_dir), steps, "(training)", *blank, ratio, ""])
            continue
        score = json.loads(score_path.read_text())
        minutes = f"{score['minutes']:.0f}"
        kinds = [("averaged" if "raw" in score else "last step", score["checkpoint"])]
        if "raw" in score:
            kinds.append(("last step", score["raw"]))
        for kind, figures in kinds:
            rows.append([changed(run_dir), steps, kind, *_cells(figures), ratio, minutes])
    return "\n".join("| " + " | ".join(row) + " |" for row in rows) + "\n"


def plot_gradient_ratios(study: Path) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 3.6))
    for run_dir in probes(study):
        records = read_metrics(run_dir / METRICS_FILE)
        axis.plot(
            [r["step"] for r in records],
            [_gradient_ratio(r) for r in records],
            label=changed(run_dir),
        )
    axis.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
    axis.set_yscale("log")
    axis.set_xlabel("step")
    axis.set_ylabel("gamma |dL_llike| / (1-gamma) |dL_gan|")
    axis.set_title("What the decoder follows: reconstruction (above 1) or the GAN (below)")
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return buffer.getvalue()


PAGE = """# Recipe study: what makes a short CPU run keep the face

Written by `python scripts/study_table.py runs/study --page docs/recipe-study.md` from the
probes of `bash scripts/recipe_study.sh`. Every probe is a medium64 VAE-GAN trained on the same
16,068 synthetic faces with the same seed, batch 64, RMSProp at a constant 3e-4 and the
non-saturating decoder loss (today's demo recipe); each differs in the one setting named in its
row. All average their encoder and decoder weights (`--ema-decay 0.999`), so each probe is
scored twice: the averaged checkpoint and its raw last-step weights. Figures are the bundled
judge's on 1,000 held-out test faces, edits at s = 3 for every attribute.

"grad ratio" is gamma * |dL_llike| / ((1 - gamma) * |dL_gan|) on the decoder's weights, averaged
over the probe's last 500 steps (`grad_dec_llike` / `grad_dec_gan` in metrics.jsonl): below 1
the decoder mostly follows the GAN, above 1 mostly the learned reconstruction error. The
authors' gamma = 1e-6 keeps it far below 1: their decoder is a GAN generator that reconstructions
can only invert. Probes still training show the step they reached and no figures yet.

{table}
![The decoder's gradient ratio against step, per probe](images/{image})
{reading}"""
# What the figures say, written by hand as probes are scored; included when present.
READING = Path(__file__).with_name("recipe_study_reading.md")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", type=Path)
    parser.add_argument("--page", type=Path, help="write the whole page (and its figure) here")
    args = parser.parse_args()
    text = table(args.study)
    if args.page is None:
        print(text, end="")
        return 0
    figure = plot_gradient_ratios(args.study)
    atomic_write_bytes(args.page.parent / "images" / GRADIENT_IMAGE, figure)
    reading = "\n" + READING.read_text() if READING.is_file() else ""
    page = PAGE.format(table=text, image=GRADIENT_IMAGE, reading=reading)
    atomic_write_bytes(args.page, page.encode())
    print(f"wrote {args.page}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
