#!/usr/bin/env bash
# Regenerates the bundled demo model, its attribute judge and the comparison of docs/results.md.
#
#   bash scripts/train_demo.sh [RUN_DIR] [COMPARE_STEPS] [DEMO_STEPS]
#
# The VAE-GAN, the plain VAE and ALI each train COMPARE_STEPS (default 4,000) steps on equal terms
# for the comparison; the VAE-GAN then goes on to DEMO_STEPS (default: COMPARE_STEPS) and that
# model is bundled. Every stage resumes or is skipped when its output exists, so a killed run
# continues where it stopped. On the 2-core CPU machines the comparison alone takes about 2.5
# hours at 4,000 steps, and each further 1,000 VAE-GAN steps about 12 minutes.
set -euo pipefail

run_dir=${1:-runs/demo}
compare_steps=${2:-4000}
demo_steps=${3:-$compare_steps}
data=${DATA:-$run_dir/synth20k}
compare=$run_dir/compare
mkdir -p "$run_dir" "$compare"
if ((demo_steps < compare_steps)); then
    echo "DEMO_STEPS ($demo_steps) must be at least COMPARE_STEPS ($compare_steps)" >&2
    exit 2
fi

# 1. 20,000 synthetic faces in the CelebA layout (seed 0): the same bytes on every machine.
if [[ ! -f $data/list_attr_celeba.txt ]]; then
    vaegan-train synth --out "$data" --count 20000 --seed 0 --workers 2
fi

# 2. The attribute judge, trained on the train split and scored on the test split.
if [[ ! -f $run_dir/judge.safetensors ]]; then
    vaegan-train judge --data "$data" --out "$run_dir/judge.safetensors" --epochs 6 --seed 0 \
        | tee "$run_dir/judge.txt"
fi

# 3. The VAE-GAN, the plain VAE and ALI on equal budgets: same preset, data, batch, steps, seed
#    and learning rate. medium64 and the non-saturating generator loss: see docs/results.md.
common=(--data "$data" --preset medium64 --batch-size 64 --seed 0 --lr-schedule constant
    --checkpoint-every 250 --log-every 50 --quiet --resume-if-present)
vaegan-train fit --out "$run_dir/vaegan" --objective vaegan --decoder-loss non-saturating \
    --steps "$compare_steps" "${common[@]}"
if [[ ! -f $compare/vaegan.safetensors ]]; then
    # The VAE-GAN's final checkpoint moves on with it below; keep this budget's copy.
    python - "$run_dir/vaegan/model.safetensors" "$compare_steps" <<'EOF'
import sys
from model.checkpoint import read_checkpoint_header
step = read_checkpoint_header(sys.argv[1]).step
if step != int(sys.argv[2]):
    sys.exit(f"{sys.argv[1]} is at step {step}, not {sys.argv[2]}: retrain it to compare")
EOF
    cp "$run_dir/vaegan/model.safetensors" "$compare/vaegan.safetensors"
    cp "$run_dir/vaegan/loss_curves.png" "$compare/loss-curves-vaegan.png"
fi
vaegan-train fit --out "$run_dir/vae" --objective vae --steps "$compare_steps" "${common[@]}"
vaegan-train fit --out "$run_dir/ali" --objective ali --steps "$compare_steps" "${common[@]}"

# 4. One edit strength for every attribute and model, chosen on validation faces for the
#    VAE-GAN; then the three scored by the judge on 1,000 held-out test faces.
if [[ ! -f $compare/edit_strength.json ]]; then
    python scripts/choose_edit_strength.py "$compare/vaegan.safetensors" --data "$data" \
        --judge "$run_dir/judge.safetensors" >"$compare/edit_strength.json"
fi
strength=$(python -c 'import json, sys; print(json.load(open(sys.argv[1]))["edit_strength"])' \
    "$compare/edit_strength.json")
evaluate=(--data "$data" --split test --count 1000 --judge "$run_dir/judge.safetensors" --json
    --quiet)
for name in vaegan vae ali; do
    model=$run_dir/$name/model.safetensors
    if [[ $name == vaegan ]]; then model=$compare/vaegan.safetensors; fi
    if [[ ! -f $compare/$name.json ]]; then
        vaegan-train evaluate --checkpoint "$model" --edit-strength "$strength" "${evaluate[@]}" \
            >"$compare/$name.json.tmp"
        mv "$compare/$name.json.tmp" "$compare/$name.json"
    fi
done

# 5. The demo model: the same VAE-GAN run, on to DEMO_STEPS; its own strength, then into the
#    package with float16 weights (checked against float32) and the judge, and scored the same way.
vaegan-train fit --out "$run_dir/vaegan" --objective vaegan --decoder-loss non-saturating \
    --steps "$demo_steps" "${common[@]}"
python scripts/choose_edit_strength.py "$run_dir/vaegan/model.safetensors" --data "$data" \
    --judge "$run_dir/judge.safetensors" >"$run_dir/vaegan/edit_strength.json"
python scripts/bundle_demo.py "$run_dir"
strength=$(python -c 'import json, sys; print(json.load(open(sys.argv[1]))["edit_strength"])' \
    "$run_dir/vaegan/edit_strength.json")
vaegan-train evaluate --checkpoint model/assets/demo-medium64.safetensors \
    --edit-strength "$strength" "${evaluate[@]}" >"$run_dir/vaegan/evaluation.json"
python scripts/make_results.py "$run_dir" --data "$data"
