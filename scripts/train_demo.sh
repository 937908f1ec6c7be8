#!/usr/bin/env bash
# Rebuilds the bundled demo model, its attribute judge and docs/results.md.
#
#   bash scripts/train_demo.sh [RUN_DIR] [STEPS]
#
# RUN_DIR (default runs/demo) holds every run: judge.safetensors, authors/ (the authors' recipe,
# the previously bundled model), vaegan/ (the new VAE-GAN, bundled), vae/ (the plain VAE), ali/
# (only with ALI_STEPS) and each model's judged figures as RUN_DIR/NAME.json. The new VAE-GAN and
# the VAE train STEPS steps each (default 20,000). Every stage resumes or is skipped when its
# output exists, so a killed run continues where it stopped and a finished one is a no-op.
#
# Environment overrides (defaults in brackets):
#   RECIPE [balanced]       the new VAE-GAN's named recipe (`vaegan-train fit --help`)
#   AUTHORS_STEPS [10000]   the authors' column's budget
#   ALI_STEPS [0]           > 0: train ALI at that budget; 0: the page keeps the previous ALI
#                           column (scripts/previous_ali.json) and says so
#   PRESET [medium64]       network preset of every model
#   DATA [RUN_DIR/synth20k] the synthetic faces (generated there when missing)
#   CHECKPOINT_EVERY [250], LOG_EVERY [50]   fit's --checkpoint-every and --log-every
#   DOCS [docs]             where results.md and images/ go
#   BUNDLE_DIR [the package] where the bundled model and judge go; unset: model/assets and
#                           training/assets, the files `vaegan-serve` loads
#
# The authors' column is exactly the model bundled before this script trained with `balanced`
# (float16 there): copy model/assets/demo-medium64.safetensors from before that change to
# RUN_DIR/authors/model.safetensors and that column is used as it is instead of retrained (the
# stage then has no training times or loss curves to show). A run folder of the previous version
# of this script keeps that model with its training state in RUN_DIR/vaegan: move that folder to
# RUN_DIR/authors (it is refused as the new VAE-GAN, its recipe being the authors').
#
# On the 2-core CPU machines medium64 trains about 1,000 VAE-GAN steps in 12 minutes and 1,000
# VAE steps in 5.
set -euo pipefail

if (($# > 2)); then
    echo "usage: bash scripts/train_demo.sh [RUN_DIR] [STEPS]  (the two-budget form is gone:" \
        "AUTHORS_STEPS and ALI_STEPS set the other columns' budgets)" >&2
    exit 2
fi
run_dir=${1:-runs/demo}
steps=${2:-20000}
recipe=${RECIPE:-balanced}
authors_steps=${AUTHORS_STEPS:-10000}
ali_steps=${ALI_STEPS:-0}
preset=${PRESET:-medium64}
data=${DATA:-$run_dir/synth20k}
checkpoint_every=${CHECKPOINT_EVERY:-250}
log_every=${LOG_EVERY:-50}
docs=${DOCS:-docs}
for number in "$steps" "$authors_steps" "$ali_steps" "$checkpoint_every" "$log_every"; do
    if [[ ! $number =~ ^[0-9]+$ ]]; then
        echo "step counts must be whole numbers, got '$number'" >&2
        exit 2
    fi
done
if ((steps < 1 || authors_steps < 1)); then
    echo "STEPS and AUTHORS_STEPS must be at least 1" >&2
    exit 2
fi
mkdir -p "$run_dir"
judge=$run_dir/judge.safetensors
# The package's own files (this script runs from the repository root, as its paths assume).
bundled=${BUNDLE_DIR:-model/assets}/demo-medium64.safetensors
bundled_judge=${BUNDLE_DIR:-training/assets}/judge-synthetic.safetensors

# 1. 20,000 synthetic faces in the CelebA layout (seed 0): the same bytes on every machine.
if [[ ! -f $data/list_attr_celeba.txt ]]; then
    vaegan-train synth --out "$data" --count 20000 --seed 0 --workers 2
fi

# 2. The attribute judge, trained on the train split and scored on the test split.
if [[ ! -f $judge ]]; then
    vaegan-train judge --data "$data" --out "$judge" --epochs 6 --seed 0 | tee "$run_dir/judge.txt"
fi

# Every model: same data, preset, batch, seed and checkpointing; the recipe flags differ.
common=(--data "$data" --preset "$preset" --batch-size 64 --seed 0
    --checkpoint-every "$checkpoint_every" --log-every "$log_every" --quiet --resume-if-present)

# fit resumes a run with the recipe it started with, whatever the flags say now, so a folder
# trained with another recipe (the previous version of this script kept the authors' recipe in
# vaegan/) would silently fill the wrong column: refuse it.
check_recipe() { # RUN_FOLDER FIT_FLAGS...
    python - "$@" <<'EOF'
import json
import sys
from pathlib import Path

from model.checkpoint import read_checkpoint_header
from training.cli import build_parser
from training.fit import _recipe
from training.recipe import Recipe

out, *flags = sys.argv[1:]
run = Path(out)
if (run / "run.json").exists():
    recorded = json.loads((run / "run.json").read_text())["recipe"]
elif (run / "model.safetensors").exists():
    recorded = read_checkpoint_header(run / "model.safetensors").recipe
else:
    sys.exit(0)
fields = Recipe().to_dict()
# A checkpoint's recipe also records its name, command and budget; older files lack newer fields.
found = Recipe.from_dict({key: value for key, value in recorded.items() if key in fields})
wanted = _recipe(build_parser().parse_args(["fit", "--out", out, *flags]))
changed = [
    f"{key} {found.to_dict()[key]} (wanted {value})"
    for key, value in wanted.to_dict().items()
    if found.to_dict()[key] != value
]
if changed:
    sys.exit(f"{out} was trained with another recipe: {', '.join(changed)}; move it aside")
EOF
}

# train RUN_FOLDER STEPS FIT_FLAGS...: train, resume or skip (fit returns at once when finished).
train() {
    local out=$1 steps=$2
    shift 2
    local flags=(--steps "$steps" "${common[@]}" "$@")
    check_recipe "$out" "${flags[@]}"
    if [[ -f $out/model.safetensors && ! -f $out/state.safetensors ]]; then
        # A checkpoint placed there by hand (the previously bundled model as authors/): without
        # a training state fit would start a new run and overwrite it, so it is used as it is.
        local step
        step=$(python -c 'import sys; from model.checkpoint import read_checkpoint_header as h
print(h(sys.argv[1]).step)' "$out/model.safetensors")
        if ((step < steps)); then
            echo "$out/model.safetensors is at step $step, not $steps, and has no training" \
                "state to continue from: remove it or ask for $step steps" >&2
            exit 1
        fi
        echo "$out: using the checkpoint placed there (step $step, no training state)"
        return
    fi
    vaegan-train fit --out "$out" "${flags[@]}"
}

# 3.-5. The authors' recipe at its budget (the previous demo model), the new VAE-GAN, the plain
# VAE on the new VAE-GAN's recipe and budget (it has no GAN: only the optimiser settings apply),
# and ALI only when asked for.
train "$run_dir/authors" "$authors_steps" --recipe authors --decoder-loss non-saturating \
    --lr-schedule constant
train "$run_dir/vaegan" "$steps" --recipe "$recipe"
train "$run_dir/vae" "$steps" --recipe "$recipe" --objective vae
models=(vaegan vae authors)
if ((ali_steps > 0)); then
    train "$run_dir/ali" "$ali_steps" --recipe "$recipe" --objective ali
    models+=(ali)
fi

# 6. Each model's own per-attribute edit strengths, chosen on validation faces and written into
#    its checkpoint (before bundling, so the bundled model carries the new VAE-GAN's).
for name in "${models[@]}"; do
    model=$run_dir/$name/model.safetensors
    if ! python -c 'import sys; from model.checkpoint import read_checkpoint_header as h
attributes = h(sys.argv[1]).attributes.values()
sys.exit(not attributes or any("default_strength" not in a for a in attributes))' "$model"; then
        vaegan-train strengths --checkpoint "$model" --data "$data" --judge "$judge" --quiet \
            | tee "$run_dir/$name/strengths.txt"
    fi
done

# 7. The new VAE-GAN into the package: float16 weights (checked against float32), the judge, and
#    the command that made them. Skipped when the bundle already holds this checkpoint.
#    The recorded command names only the overrides that change a model.
reproduce=""
if [[ $recipe != balanced ]]; then reproduce+="RECIPE=$recipe "; fi
if ((authors_steps != 10000)); then reproduce+="AUTHORS_STEPS=$authors_steps "; fi
if ((ali_steps > 0)); then reproduce+="ALI_STEPS=$ali_steps "; fi
if [[ $preset != medium64 ]]; then reproduce+="PRESET=$preset "; fi
if [[ $data != "$run_dir/synth20k" ]]; then reproduce+="DATA=$data "; fi
reproduce+="bash scripts/train_demo.sh $run_dir $steps"
python scripts/bundle_demo.py "$run_dir" --model-out "$bundled" --judge-out "$bundled_judge" \
    --reproduce "$reproduce"

# 8. The bundled model, the VAE, the authors' (and ALI) judged on 1,000 held-out test faces,
#    each at its own recorded strengths; redone only when a checkpoint is newer than its figures.
evaluate=(--data "$data" --split test --count 1000 --judge "$judge" --json --quiet)
for name in "${models[@]}"; do
    model=$run_dir/$name/model.safetensors
    if [[ $name == vaegan ]]; then model=$bundled; fi
    if [[ ! $run_dir/$name.json -nt $model ]]; then
        vaegan-train evaluate --checkpoint "$model" "${evaluate[@]}" >"$run_dir/$name.json.tmp"
        mv "$run_dir/$name.json.tmp" "$run_dir/$name.json"
    fi
done

# 9. The page and its pictures.
results=(--data "$data" --bundle "$bundled" --docs "$docs")
if ((ali_steps > 0)); then results+=(--trained-ali); fi
python scripts/make_results.py "$run_dir" "${results[@]}"
