"""The weights checkpoints carry when a run averages: an exponential moving average of the encoder
and decoder, updated after every optimiser step.

The discriminator is never averaged: it only trains, so the averaged model shares the live one.
"""

from __future__ import annotations

import copy

import torch

from model.networks import VAEGAN

# The networks whose weights are averaged; the resume file stores these under `averaged.`.
AVERAGED_NETWORKS = ("encoder", "decoder")


class WeightAverage:
    """An exponential moving average of a VAE-GAN's encoder and decoder; `model` holds it, beside
    the live discriminator, for checkpoints, sample grids and attribute vectors."""

    def __init__(self, model: VAEGAN, decay: float) -> None:
        self.decay = decay
        self.model = _averaged_copy(model)

    @torch.no_grad()
    def update(self, live: VAEGAN, step: int) -> None:
        """Move the average towards `live`'s weights after step `step` (counted from 0)."""
        # Short runs must not keep the initial weights in the average: the decay ramps up as
        # (1 + t) / (10 + t) until it reaches the recipe's.
        decay = min(self.decay, (1 + step) / (10 + step))
        for name in AVERAGED_NETWORKS:
            weights = getattr(live, name).state_dict()
            for key, average in getattr(self.model, name).state_dict().items():
                if average.is_floating_point():
                    average.lerp_(weights[key], 1.0 - decay)
                else:
                    average.copy_(weights[key])


def _averaged_copy(model: VAEGAN) -> VAEGAN:
    """A copy of the encoder and decoder to average into, sharing `model`'s discriminator."""
    discriminator = model.discriminator
    del model.discriminator  # so deepcopy leaves D (and its size) out
    try:
        averaged = copy.deepcopy(model).eval()
    finally:
        model.discriminator = discriminator
    for parameter in averaged.parameters():
        parameter.requires_grad_(False)
    averaged.discriminator = discriminator
    return averaged
