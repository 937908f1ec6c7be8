#!/usr/bin/env bash
# The recipe study of docs/results.md: short medium64 VAE-GAN probes that differ in one recipe
# setting each, every one scored by the judge (checkpoint and, where averaged, raw weights).
#
#   bash scripts/recipe_study.sh [STEPS] [PARALLEL]
#
# STEPS per probe (default 2,000); PARALLEL probes at a time (default 2), each on one thread, so
# two fill a 2-core machine without their OpenMP threads fighting. Every probe resumes where a
# kill left it and is skipped once scored, so the study can be stopped and rerun at will; the
# table is then written by scripts/study_table.py. Probes share data, preset, batch, seed and the
# learning rate; all average their weights (--ema-decay 0.999) so averaging is measured in each.
set -euo pipefail
steps=${1:-2000}
parallel=${2:-2}
data=${DATA:-runs/demo/synth20k}
if [[ ! -f $data/list_attr_celeba.txt ]]; then
    vaegan-train synth --out "$data" --count 20000 --seed 0 --workers 2
fi
export DATA=$data OMP_NUM_THREADS=1

# name: fit flags. gamma 1e-6 is today's demo recipe. The decoder's gradient norms put
# gamma * |dL_llike| level with (1 - gamma) * |dL_gan| near gamma = 1e-3 in the first 100 steps,
# but the GAN's gradient grows about thirtyfold by step 2,000 (docs/recipe-study.md), so the
# sweep runs to 1e-1, and D sees reconstructions at 1e-2.
probes=(
    "authors-g1e-6:--gamma 1e-6"
    "g1e-3:--gamma 1e-3"
    "g1e-2:--gamma 1e-2"
    "g1e-1:--gamma 1e-1"
    "g1e-2-recon:--gamma 1e-2 --discriminate-reconstructions"
)

run_probe() {
    local name=${1%%:*} flags=${1#*:}
    if [[ -f runs/study/$name/score.json ]]; then
        return
    fi
    # shellcheck disable=SC2086  # the flags are words
    bash scripts/study_probe.sh "$name" "$steps" $flags --ema-decay 0.999 \
        >>"runs/study/$name.log" 2>&1
}

mkdir -p runs/study
running=0
for probe in "${probes[@]}"; do
    run_probe "$probe" &
    running=$((running + 1))
    if ((running >= parallel)); then
        wait -n
        running=$((running - 1))
    fi
done
wait
python scripts/study_table.py runs/study --page docs/recipe-study.md
