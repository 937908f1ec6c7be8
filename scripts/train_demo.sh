#!/usr/bin/env bash
# Regenerates the bundled demo model, its attribute judge and the VAE baseline of docs/results.md.
#
#   bash scripts/train_demo.sh [RUN_DIR] [STEPS]
#
# Every stage resumes or is skipped when its output exists, so a killed run continues where it
# stopped. On the 2-core CPU machines the whole script takes about 90 minutes at 4,000 steps.
set -euo pipefail

run_dir=${1:-runs/demo}
steps=${2:-4000}
data=${DATA:-$run_dir/synth20k}
mkdir -p "$run_dir"

# 1. 20,000 synthetic faces in the CelebA layout (seed 0): the same bytes on every machine.
if [[ ! -f $data/list_attr_celeba.txt ]]; then
    vaegan-train synth --out "$data" --count 20000 --seed 0 --workers 2
fi

# 2. The attribute judge, trained on the train split and scored on the test split.
if [[ ! -f $run_dir/judge.safetensors ]]; then
    vaegan-train judge --data "$data" --out "$run_dir/judge.safetensors" --epochs 6 --seed 0 \
        | tee "$run_dir/judge.txt"
fi

# 3. The VAE-GAN and the plain VAE on equal budgets: same preset, data, batch, steps and seed.
#    medium64 and the non-saturating decoder loss: see docs/results.md for why not small64.
common=(--data "$data" --preset medium64 --batch-size 64 --steps "$steps" --seed 0
    --lr-schedule constant --checkpoint-every 250 --log-every 50 --quiet --resume-if-present)
vaegan-train fit --out "$run_dir/vaegan" --objective vaegan --decoder-loss non-saturating "${common[@]}"
vaegan-train fit --out "$run_dir/vae" --objective vae "${common[@]}"

# 4. One edit strength for every attribute, chosen on validation faces; then into the package:
#    the VAE-GAN with float16 weights (checked against float32) and the judge.
python scripts/choose_edit_strength.py "$run_dir/vaegan/model.safetensors" --data "$data" \
    --judge "$run_dir/judge.safetensors" >"$run_dir/vaegan/edit_strength.json"
python scripts/bundle_demo.py "$run_dir"
strength=$(python -c 'import json, sys; print(json.load(open(sys.argv[1]))["edit_strength"])' \
    "$run_dir/vaegan/edit_strength.json")

# 5. The bundled model and the VAE, scored by the judge on 1,000 held-out test faces at that
#    strength, then the tables and pictures of docs/results.md.
for model in model/assets/demo-medium64.safetensors "$run_dir/vae/model.safetensors"; do
    name=$([[ $model == model/* ]] && echo vaegan || echo vae)
    vaegan-train evaluate --checkpoint "$model" --data "$data" --split test --count 1000 \
        --judge "$run_dir/judge.safetensors" --edit-strength "$strength" --json --quiet \
        >"$run_dir/$name/evaluation.json"
done
python scripts/make_results.py "$run_dir" --data "$data"
