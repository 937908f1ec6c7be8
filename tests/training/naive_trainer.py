"""A naive implementation of the same recipe: one forward and backward pass per network.

This is how public ports structure the VAE-GAN step (minus their crash: each network's forward
is redone after zeroing gradients, and every optimiser steps only after all three gradients
exist). It serves as the baseline for `train_throughput.py` and as the reference in the test
that proves the trainer's one-forward gradients are the same gradients.
"""

from __future__ import annotations

import torch
from torch import Tensor

from model.networks import VAEGAN
from training import losses
from training.recipe import Recipe
from training.step import Noise, frozen_batch_norm_statistics


def _reconstruct(model: VAEGAN, images: Tensor, noise: Noise) -> tuple[Tensor, Tensor, Tensor]:
    encoded = model.encoder(images)
    z = encoded.mu + torch.exp(0.5 * encoded.logvar) * noise.eps
    return encoded.mu, encoded.logvar, model.decoder(z)


def _similarity(model: VAEGAN, reconstruction: Tensor, images: Tensor) -> Tensor:
    with frozen_batch_norm_statistics(model.discriminator):
        features = model.discriminator.similarity_features(torch.cat([reconstruction, images]))
    fake, real = features.split(images.shape[0])
    return losses.similarity_loss(fake, real).mean()


def naive_gradients(
    model: VAEGAN, images: Tensor, recipe: Recipe, noise: Noise
) -> dict[str, list[Tensor]]:
    """Each network's gradient from its own forward and backward pass (VAE-GAN objective)."""
    batch = images.shape[0]
    grads: dict[str, list[Tensor]] = {}

    # Encoder: L_prior + L_llike.
    model.zero_grad(set_to_none=True)
    mu, logvar, reconstruction = _reconstruct(model, images, noise)
    encoder_loss = losses.prior_loss(mu, logvar).mean() + _similarity(model, reconstruction, images)
    encoder_loss.backward()
    grads["encoder"] = [p.grad.clone() for p in model.encoder.parameters()]  # type: ignore[union-attr]

    # Decoder: gamma * L_llike - (1 - gamma) * L_gan on prior samples.
    model.zero_grad(set_to_none=True)
    _, _, reconstruction = _reconstruct(model, images, noise)
    llike = _similarity(model, reconstruction, images)
    sampled = model.decoder(noise.z_prior)
    logits = model.discriminator(torch.cat([images, sampled])).logit
    fake_cost = losses.fake_cost(logits[batch:], recipe.gan_eps)
    decoder_loss = recipe.gamma * llike - (1.0 - recipe.gamma) * fake_cost.sum() / batch
    decoder_loss.backward()
    grads["decoder"] = [p.grad.clone() for p in model.decoder.parameters()]  # type: ignore[union-attr]

    # Discriminator: weighted L_gan on real images and prior samples.
    model.zero_grad(set_to_none=True)
    with torch.no_grad():
        sampled = model.decoder(noise.z_prior)
    logits = model.discriminator(torch.cat([images, sampled])).logit
    real_cost = losses.real_cost(logits[:batch], recipe.gan_eps)
    fake_cost = losses.fake_cost(logits[batch:], recipe.gan_eps)
    discriminator_loss = (
        recipe.real_weight * real_cost.sum() + (1.0 - recipe.real_weight) * fake_cost.sum()
    ) / batch
    discriminator_loss.backward()
    grads["discriminator"] = [p.grad.clone() for p in model.discriminator.parameters()]  # type: ignore[union-attr]
    model.zero_grad(set_to_none=True)
    return grads


def naive_step(
    model: VAEGAN,
    optimizers: dict[str, torch.optim.Optimizer],
    images: Tensor,
    recipe: Recipe,
    noise: Noise,
) -> None:
    """A full naive training step: three forward/backward passes, then the optimiser steps."""
    grads = naive_gradients(model, images, recipe, noise)
    for name, network in (
        ("encoder", model.encoder),
        ("decoder", model.decoder),
        ("discriminator", model.discriminator),
    ):
        for parameter, grad in zip(network.parameters(), grads[name], strict=True):
            parameter.grad = grad
        optimizers[name].step()
