"""The training recipe: every hyperparameter of the authors' CelebA run, and the options around it.

Values come from the authors' code (andersbll/autoencoding_beyond_pixels, `celeba_aegan.py`,
`aegan.py`, `model/aegan.py`, DeepPy's RMSProp and GammaAnnealer), as summarised in
docs/design.md section 2. A `Recipe` is stored in every checkpoint and resume file, so a run can
be reproduced from its outputs.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from model.config import OBJECTIVES, Objective

DecoderGanLoss = Literal["saturating", "non-saturating"]
LearningRateSchedule = Literal["authors", "constant"]


@dataclass(frozen=True)
class Recipe:
    objective: Objective = "vaegan"
    batch_size: int = 64
    # RMSProp, one optimiser per network. The authors set lr = 0.02 / batch_size on summed
    # losses, i.e. ~3e-4 on per-image losses as here.
    lr: float = 3e-4
    lr_schedule: LearningRateSchedule = "authors"
    # DeepPy's GammaAnnealer: lr falls from `lr` to `lr_final` as (epoch / epochs) ** 0.75,
    # stepped once per "epoch" of 250 iterations.
    lr_final: float = 1e-5 / 64
    lr_power: float = 0.75
    lr_epoch_steps: int = 250
    rmsprop_alpha: float = 0.9
    rmsprop_eps: float = 1e-8
    # DeepPy adds 2 * weight_decay * w to the batch-summed gradient of conv and FC weights (not
    # biases, BN or the mu/logvar heads); on per-image losses that is 2 * wd / batch_size.
    weight_decay: float = 1e-5
    # Decoder: gamma * L_llike - (1 - gamma) * L_gan. (ALI has no L_llike: gamma is unused.)
    gamma: float = 1e-6
    decoder_gan_loss: DecoderGanLoss = "saturating"
    gan_eps: float = 1e-3
    # The discriminator's loss weights real vs generated images 0.5 : 0.5 (real_vs_gen_weight).
    real_weight: float = 0.5
    # The authors' CelebA run fed only prior samples to D; the paper's text also feeds
    # reconstructions.
    discriminate_reconstructions: bool = False
    # Equilibrium: skip D's update if either cost < equilibrium - margin, the decoder's if either
    # cost > equilibrium + margin; None disables.
    equilibrium: float = 0.68
    margin: float | None = 0.35
    # Element-wise baseline (objective "vae"): Gaussian pixel likelihood with this sigma.
    pixel_sigma: float = 1.0
    # Inference weights: an exponential moving average of the encoder's and decoder's weights
    # (and batch-norm statistics) with this decay, written to checkpoints instead of the raw
    # weights; None (the authors') writes the raw weights.
    ema_decay: float | None = None
    flip: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        if self.objective not in OBJECTIVES:
            problems.append(
                f"objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}"
            )
        if self.batch_size < 2:
            problems.append(f"batch_size must be at least 2 (batch norm), got {self.batch_size}")
        for name in ("lr", "rmsprop_alpha", "rmsprop_eps", "gan_eps", "pixel_sigma"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                problems.append(f"{name} must be a positive number, got {value}")
        if not 0 <= self.lr_final <= self.lr:
            problems.append(f"lr_final must be between 0 and lr, got {self.lr_final}")
        if not 0.0 <= self.gamma <= 1.0:
            problems.append(f"gamma must be in [0, 1], got {self.gamma}")
        if not 0.0 < self.real_weight < 1.0:
            problems.append(f"real_weight must be in (0, 1), got {self.real_weight}")
        if self.margin is not None and self.margin < 0:
            problems.append(f"margin must be non-negative or None, got {self.margin}")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            problems.append(f"ema_decay must be in (0, 1) or None, got {self.ema_decay}")
        if self.weight_decay < 0:
            problems.append(f"weight_decay must be non-negative, got {self.weight_decay}")
        if self.lr_epoch_steps < 1:
            problems.append("lr_epoch_steps must be positive")
        if self.decoder_gan_loss not in ("saturating", "non-saturating"):
            problems.append(
                "decoder_gan_loss must be saturating or non-saturating, "
                f"got {self.decoder_gan_loss!r}"
            )
        if self.lr_schedule not in ("authors", "constant"):
            problems.append(f"lr_schedule must be authors or constant, got {self.lr_schedule!r}")
        if problems:
            raise ValueError("invalid training recipe: " + "; ".join(problems))

    @property
    def trains_encoder(self) -> bool:
        return self.objective != "gan"

    @property
    def uses_discriminator(self) -> bool:
        return self.objective != "vae"

    @property
    def uses_equilibrium(self) -> bool:
        """The authors' update-skipping rule applies to the objectives with their GAN game."""
        return self.objective in ("vaegan", "gan") and self.margin is not None

    def learning_rate(self, step: int, total_steps: int) -> float:
        """The learning rate for 0-based `step` of a run of `total_steps`."""
        if self.lr_schedule == "constant":
            return self.lr
        epochs = max(1.0, total_steps / self.lr_epoch_steps)
        progress = min(1.0, (step // self.lr_epoch_steps) / epochs)
        return float(self.lr - progress**self.lr_power * (self.lr - self.lr_final))

    def optimizer(self, network: nn.Module) -> torch.optim.RMSprop:
        """One network's RMSProp, with the weight decay only on conv and FC weights."""
        decayed: list[nn.Parameter] = []
        plain: list[nn.Parameter] = []
        for name, parameter in network.named_parameters():
            is_weight = name.endswith("weight") and parameter.ndim > 1
            is_latent_head = name.startswith(("mu.", "logvar."))
            (decayed if is_weight and not is_latent_head else plain).append(parameter)
        decay = 2.0 * self.weight_decay / self.batch_size
        return torch.optim.RMSprop(
            [{"params": decayed, "weight_decay": decay}, {"params": plain, "weight_decay": 0.0}],
            lr=self.lr,
            alpha=self.rmsprop_alpha,
            eps=self.rmsprop_eps,
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recipe:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown recipe keys: {', '.join(unknown)}")
        return cls(**data)

    def replace(self, **changes: Any) -> Recipe:
        return dataclasses.replace(self, **changes)


# `vaegan-train fit --recipe NAME`. The authors' stays the default and exactly faithful.
RECIPES: dict[str, Recipe] = {
    "authors": Recipe(),
    # At gamma = 1e-6 the decoder's L_llike gradient is about a thousandth of its GAN gradient,
    # so on a short budget reconstructions only keep what the generator happens to draw. At
    # 1e-2 the two are within a factor of a few all run long, and every judged figure of the
    # 2,000-step study improved; at 1e-1 the decoder fools Dis_l with high-frequency noise
    # (docs/recipe-study.md). Averaged weights measured worse there, so there are none.
    "balanced": Recipe(gamma=1e-2, decoder_gan_loss="non-saturating", lr_schedule="constant"),
}
RECIPE_SUMMARIES = {
    "authors": "the authors' CelebA run as published (few GPU hours: use this)",
    "balanced": "gamma 1e-2, so the decoder learns from the learned similarity as well as from "
    "D; the non-saturating generator loss; a constant lr (CPU or a short budget: use this)",
}
# Not part of what a recipe prescribes: what is trained, and the run's own seed.
_RUN_FIELDS = ("objective", "seed")


def describe_recipe(recipe: Recipe) -> str:
    """The named recipe `recipe` is, or the closest one and what differs from it: "authors",
    "authors + gamma=0.001, lr_schedule=constant"."""

    def differences(name: str) -> list[str]:
        named = RECIPES[name].to_dict()
        return [
            f"{key}={value}"
            for key, value in recipe.to_dict().items()
            if key not in _RUN_FIELDS and named[key] != value
        ]

    closest = min(RECIPES, key=lambda name: (len(differences(name)), name != "authors"))
    changed = differences(closest)
    return closest if not changed else f"{closest} + {', '.join(changed)}"
