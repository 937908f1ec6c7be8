"""Figures of merit for a trained model.

`evaluate` measures what the paper claims: how close reconstructions are to their inputs, in
pixels and in the discriminator's learned feature space (Dis_l), how far the posterior strays from
the prior, and how sharp reconstructions and samples are compared with the data (a VAE trained
with an element-wise loss is blurry; the VAE-GAN should be less so).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from model.networks import VAEGAN
from training.data import CelebADataset, ImageFolderDataset
from training.inference import InferenceOptions, ReadableBatches, evaluation_mode

METRIC_NAMES = (
    "reconstruction_mse",
    "similarity_distance",
    "kl",
    "sharpness_reconstructions",
    "sharpness_samples",
)

# A discrete Laplacian: zero on flat regions and linear ramps, so its response is the detail a
# blurry decoder fails to draw.
_LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])

# What `evaluate` and the judged figures (`training.judge_eval`) read unless told otherwise.
EVALUATION_OPTIONS = InferenceOptions(count=1000)


def high_frequency_energy(images: Tensor) -> Tensor:
    """Per-image mean squared response of a 3x3 Laplacian filter, shape (B,).

    Applied to each channel of (B, C, H, W) images in the model's [-1, 1] range, over the interior
    pixels only (no padding, so image borders add no false edges). Blurring lowers it, a flat
    image scores 0, and scaling the contrast by k scales it by k**2.
    """
    if images.ndim != 4:
        raise ValueError(f"expected a (B, C, H, W) batch, got shape {tuple(images.shape)}")
    channels = images.shape[1]
    kernel = _LAPLACIAN.to(images).expand(channels, 1, 3, 3)
    response = F.conv2d(images, kernel, groups=channels)
    return response.pow(2).flatten(1).mean(1)


def prior_latents(count: int, latent_dim: int, *, seed: int) -> Tensor:
    """z ~ N(0, I), shape (count, latent_dim), from a seeded CPU generator: the same seed gives
    the same latents on every device and for every batch size."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(count, latent_dim, generator=generator)


def decode_in_batches(
    model: VAEGAN,
    latents: Tensor,
    *,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> Iterator[Tensor]:
    """Decoded images, one (b, C, H, W) batch at a time on `device`, in eval mode."""
    with evaluation_mode(model):
        for start in range(0, len(latents), batch_size):
            yield model.decode(latents[start : start + batch_size].to(device))


def generate_samples(
    model: VAEGAN,
    count: int,
    *,
    seed: int = 0,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> Tensor:
    """`count` images decoded from z ~ N(0, I) (see `prior_latents`), (count, C, H, W) on the CPU
    in [-1, 1]. The model is moved to `device`."""
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    model.to(device)
    latents = prior_latents(count, model.config.latent_dim, seed=seed)
    batches = decode_in_batches(model, latents, batch_size=batch_size, device=device)
    return torch.cat([batch.cpu() for batch in batches])


def evaluate(
    model: VAEGAN,
    dataset: CelebADataset | ImageFolderDataset,
    *,
    options: InferenceOptions = EVALUATION_OPTIONS,
    seed: int = 0,
) -> dict[str, float]:
    """Measure the model on the first `options.count` readable images of `dataset`.

    Runs in eval mode without gradients (the model's mode is restored afterwards; the model is
    moved to `options.device`). Reconstructions decode the posterior mean mu, never a sample, so
    the figures are deterministic. Every figure is an average over images, so it does not depend
    on the batch size. Pixels are in the model's [-1, 1] range.

    Returns:
        reconstruction_mse: mean over images of the mean squared per-pixel error of the
            reconstruction Dec(mu(x)) against x. 0 is perfect; predicting a flat grey image
            scores about the data's variance.
        similarity_distance: mean over images of the mean squared difference between the
            discriminator's learned features Dis_l (`discriminator.similarity_features`) of the
            reconstruction and of the input: the paper's learned similarity metric, per feature.
            NaN for ALI, whose joint discriminator has no image-only features.
        kl: mean over images of KL(q(z|x) || N(0, I)) in nats, summed over latent dimensions.
        sharpness_reconstructions: mean `high_frequency_energy` of the reconstructions divided
            by that of the real images. 1.0 means as much fine detail as the data; a blurry VAE
            scores far below 1; above 1 means noisier than the data. NaN if the real images are
            perfectly flat.
        sharpness_samples: the same ratio for as many images decoded from z ~ N(0, I), drawn
            from a generator seeded with `seed` (see `prior_latents`).
        images: how many images were evaluated.
        damaged: how many of the first `options.count` files could not be read and were skipped.
    """
    device = options.device
    batches = ReadableBatches(dataset, options, "evaluating")
    model.to(device)
    totals = dict.fromkeys(("mse", "similarity", "kl", "energy_real", "energy_recon"), 0.0)
    with evaluation_mode(model):
        for batch in batches:
            x = batch.images.to(device)
            posterior = model.encode(x)
            reconstruction = model.decode(posterior.mu)
            kl = 0.5 * (posterior.mu.pow(2) + posterior.logvar.exp() - 1.0 - posterior.logvar)
            per_image = {
                "mse": (reconstruction - x).pow(2).flatten(1).mean(1),
                "kl": kl.sum(1),
                "energy_real": high_frequency_energy(x),
                "energy_recon": high_frequency_energy(reconstruction),
            }
            if model.has_similarity_metric:
                # One call for both halves; in eval mode batch norm treats each image on its own.
                features = model.similarity_features(torch.cat([x, reconstruction]))
                real_features, reconstruction_features = features.chunk(2)
                per_image["similarity"] = (
                    (reconstruction_features - real_features).pow(2).flatten(1).mean(1)
                )
            for name, values in per_image.items():
                totals[name] += float(values.double().sum())
    images, damaged = batches.images, batches.damaged
    if images == 0:
        raise ValueError(f"none of the first {damaged} images could be read; nothing to evaluate")

    latents = prior_latents(images, model.config.latent_dim, seed=seed)
    energy_samples = sum(
        float(high_frequency_energy(samples).double().sum())
        for samples in decode_in_batches(
            model, latents, batch_size=options.batch_size, device=device
        )
    )
    energy_real = totals["energy_real"]
    return {
        "reconstruction_mse": totals["mse"] / images,
        "similarity_distance": (
            totals["similarity"] / images if model.has_similarity_metric else math.nan
        ),
        "kl": totals["kl"] / images,
        "sharpness_reconstructions": _ratio(totals["energy_recon"], energy_real),
        "sharpness_samples": _ratio(energy_samples, energy_real),
        "images": images,
        "damaged": damaged,
    }


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else float("nan")
