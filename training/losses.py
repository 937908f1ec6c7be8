"""The paper's loss terms, per image (summed over features, as in the authors' code).

Each function returns one value per image, shape (B,); the trainer averages over the batch, which
is the authors' sum over the batch with the learning rate divided by the batch size.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def prior_loss(mu: Tensor, logvar: Tensor) -> Tensor:
    """L_prior = KL(q(z|x) || N(0, I)), eq. (3): -1/2 sum(1 + logvar - mu^2 - exp(logvar))."""
    return -0.5 * (1.0 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)


def similarity_loss(fake_features: Tensor, real_features: Tensor) -> Tensor:
    """L_llike^Dis_l, eq. (9): a Gaussian with identity covariance on Dis_l features.

    1/2 sum (Dis_l(x~) - Dis_l(x))^2 per image; the constant of the log-likelihood is dropped.
    """
    return 0.5 * (fake_features - real_features).pow(2).flatten(1).sum(dim=1)


def pixel_loss(reconstruction: Tensor, image: Tensor, sigma: float = 1.0) -> Tensor:
    """The element-wise baseline: a Gaussian pixel likelihood, 1/(2 sigma^2) sum (x~ - x)^2."""
    return (reconstruction - image).pow(2).flatten(1).sum(dim=1) / (2.0 * sigma**2)


def real_cost(real_logits: Tensor, eps: float) -> Tensor:
    """-log(D(x) + eps), the discriminator's cost on real images (the authors' eps = 1e-3)."""
    return -torch.log(torch.sigmoid(real_logits) + eps)


def fake_cost(fake_logits: Tensor, eps: float) -> Tensor:
    """-log(1 - D(G(z)) + eps), the discriminator's cost on generated images."""
    return -torch.log(1.0 - torch.sigmoid(fake_logits) + eps)


def non_saturating_cost(fake_logits: Tensor, eps: float) -> Tensor:
    """-log(D(G(z)) + eps): the generator loss of Goodfellow et al.'s non-saturating variant."""
    return -torch.log(torch.sigmoid(fake_logits) + eps)


def equilibrium_updates(
    real: float, fake: float, equilibrium: float, margin: float | None
) -> tuple[bool, bool]:
    """(update the discriminator, update the decoder), by the authors' equilibrium rule.

    D pauses while it wins too easily (either mean cost below equilibrium - margin), the decoder
    while it loses too badly (either above equilibrium + margin); if both would pause, both train.
    """
    if margin is None or not (math.isfinite(real) and math.isfinite(fake)):
        return True, True
    update_discriminator = not (real < equilibrium - margin or fake < equilibrium - margin)
    update_decoder = not (real > equilibrium + margin or fake > equilibrium + margin)
    if not (update_discriminator or update_decoder):
        return True, True
    return update_discriminator, update_decoder
