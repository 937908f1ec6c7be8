#!/usr/bin/env bash
# One probe of the recipe study (docs/results.md, "Recipe study"): a medium64 VAE-GAN trained
# on the synthetic faces with the given recipe flags, then scored by the judge.
#
#   bash scripts/study_probe.sh NAME STEPS [fit flags...]
#
# Every probe shares the data, preset, batch, seed, learning rate and step count; only the flags
# differ. Runs resume where a kill left them. Outputs go to runs/study/NAME.
set -euo pipefail
name=$1
steps=$2
shift 2
data=${DATA:-runs/demo/synth20k}
out=runs/study/$name
vaegan-train fit --data "$data" --out "$out" --preset medium64 --batch-size 64 --seed 0 \
    --lr-schedule constant --decoder-loss non-saturating --steps "$steps" \
    --checkpoint-every 250 --log-every 50 --quiet --resume-if-present "$@"
python scripts/score_probe.py "$out" --data "$data"
