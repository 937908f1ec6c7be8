"""The recipe study's table, from the probes' score.json files (scripts/score_probe.py).

    python scripts/study_table.py runs/study [--out runs/study/table.md]

One row per scored probe and weight kind (averaged checkpoint, raw last-step weights): what the
probe changed, the judge's figures on 1,000 held-out test faces, sharpness, and training minutes.
Probes still training are listed with the step they reached.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from training.trainer import METRICS_FILE, read_metrics  # noqa: E402

COLUMNS = (
    ("reconstruction_agreement", "agreement", "{:.1%}"),
    ("edit_success_add", "add", "{:.1%}"),
    ("edit_success_remove", "remove", "{:.1%}"),
    ("edit_preservation", "preservation", "{:.1%}"),
    ("frechet_distance", "Frechet", "{:.0f}"),
    ("sharpness_reconstructions", "sharpness (recon)", "{:.2f}"),
)


def _changed(run_dir: Path) -> str:
    """What the probe's recipe sets, from the command line its run recorded."""
    recipe = json.loads((run_dir / "run.json").read_text())["recipe"]
    parts = [f"gamma {recipe['gamma']:g}"]
    if recipe["discriminate_reconstructions"]:
        parts.append("D sees reconstructions")
    return ", ".join(parts)


def _cells(figures: dict[str, Any]) -> list[str]:
    return [
        "-" if figures.get(key) is None else fmt.format(figures[key]) for key, _, fmt in COLUMNS
    ]


def table(study: Path) -> str:
    header = ["probe", "steps", "weights", *[title for _, title, _ in COLUMNS], "minutes"]
    rows = [header, ["---"] * 3 + ["---:"] * (len(header) - 3)]
    for run_dir in sorted(p for p in study.iterdir() if (p / "run.json").is_file()):
        steps = f"{max((r['step'] for r in read_metrics(run_dir / METRICS_FILE)), default=0):,}"
        score_path = run_dir / "score.json"
        if not score_path.is_file():
            rows.append([_changed(run_dir), steps, "(training)", *[""] * (len(header) - 3)])
            continue
        score = json.loads(score_path.read_text())
        minutes = f"{score['minutes']:.0f}"
        kinds = [("averaged" if "raw" in score else "last step", score["checkpoint"])]
        if "raw" in score:
            kinds.append(("last step", score["raw"]))
        for kind, figures in kinds:
            rows.append([_changed(run_dir), steps, kind, *_cells(figures), minutes])
    return "\n".join("| " + " | ".join(row) + " |" for row in rows) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    text = table(args.study)
    (args.out or args.study / "table.md").write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
