"""One training step's gradients: every loss term from one forward pass, then each network's
gradient from those terms, all of them before any optimiser steps.

Every public PyTorch port of the paper crashes with an in-place autograd error because it steps
one optimiser before the next network's backward pass has run through the weights it just
changed. Here the three gradients exist before the trainer steps any optimiser, so that error
cannot occur.

The paper's names (Larsen et al. 2016, section 2 and Algorithm 1): x the images, z = mu(x) +
sigma(x) * eps drawn from q(z|x), x~ = Dec(z) the reconstruction, z_p ~ N(0, I) and
x_p = Dec(z_p) the prior samples, Dis_l(x) the discriminator's l-th layer. Per image:

    L_prior = KL(q(z|x) || N(0, I))
    L_llike = 1/2 |Dis_l(x~) - Dis_l(x)|^2     (the pixel likelihood for `--objective vae`)
    L_GAN   = -log D(x) - log(1 - D(x_p))     (+ x~ with `discriminate_reconstructions`)

L_GAN here is D's cross-entropy, the paper's L_GAN with the sign D minimises; it is logged as
`L_gan`. `--objective vae` has no D and `gan` no encoder; ALI's game has its own step,
`_ali_forward_pass`, at the end.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from model.networks import VAEGAN
from training import losses
from training.distributed import DistributedContext
from training.recipe import Recipe


@dataclass
class Noise:
    """The random draws of one step: reparameterisation eps and prior samples z_p."""

    eps: Tensor  # (B, latent)
    z_prior: Tensor  # (B, latent)

    @classmethod
    def draw(cls, seed: int, shape: tuple[int, int], device: torch.device) -> Noise:
        """A pure function of `seed`: a resumed run draws the same noise with no saved state."""
        generator = torch.Generator(device=device)
        generator.manual_seed(seed)
        eps = torch.randn(shape, generator=generator, device=device)
        return cls(eps, torch.randn(shape, generator=generator, device=device))


def step_seed(seed: int, rank: int, step: int) -> int:
    """The seed of one step's random draws on one rank: a pure function, so a resumed run draws
    exactly what the uninterrupted run did, with no generator state saved."""
    return ((seed * 1_000_003 + rank) * 1_000_000_007 + step) % 2**63


@contextlib.contextmanager
def seeded_global_generator(seed: int, device: torch.device) -> Iterator[None]:
    """Seed the global generator, which dropout (ALI's D) draws from, and leave the caller's
    random state as it was afterwards."""
    cuda_devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(seed)
        yield


class Networks:
    """The three networks as the step calls them: DDP-wrapped when distributed."""

    def __init__(self, model: VAEGAN, context: DistributedContext) -> None:
        self.model = model
        self.encoder: nn.Module = context.wrap(model.encoder)
        self.decoder: nn.Module = context.wrap(model.decoder)
        self.discriminator: nn.Module = context.wrap(model.discriminator)


@contextlib.contextmanager
def frozen_batch_norm_statistics(module: nn.Module) -> Iterator[None]:
    """Batch norm normalises with batch statistics but leaves its running averages alone.

    The authors' similarity pass ran through a copy of D's lower layers with shared weights but
    its own BN buffers, so only the GAN pass shaped D's running statistics; momentum 0 does that.
    """
    layers = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [layer.momentum for layer in layers]
    for layer in layers:
        layer.momentum = 0.0
    try:
        yield
    finally:
        for layer, momentum in zip(layers, saved, strict=True):
            layer.momentum = momentum


def compute_gradients(
    nets: Networks, images: Tensor, recipe: Recipe, noise: Noise, *, autocast: bool = False
) -> dict[str, Tensor]:
    """One forward pass, then every network's gradient into its parameters' `.grad`.

    Returns the per-image terms by name for the logs and the equilibrium rule, detached.
    """
    started = forward_pass(nets, images, recipe, noise, autocast=autocast)
    return started.figures | started.backward()


class ForwardPass:
    """A step after its forward pass: its figures, and the gradients still to be taken.

    The trainer decides from the figures which networks the step updates before any gradient
    is taken: the equilibrium rule pauses D on most steps (65-95%), and D's backward pass is
    about a sixth of a step, so a paused D's gradient is never computed.
    """

    def __init__(
        self, figures: dict[str, Tensor], take_gradients: Callable[[bool], dict[str, Tensor]]
    ) -> None:
        self.figures = {name: value.detach() for name, value in figures.items()}
        self._take_gradients = take_gradients

    def backward(self, *, discriminator: bool = True) -> dict[str, Tensor]:
        """Each network's gradient into `.grad`, D's only when `discriminator`; returns the
        decoder's gradient norms by part (none under DistributedDataParallel), detached."""
        norms = self._take_gradients(discriminator)
        return {name: value.detach() for name, value in norms.items()}


def forward_pass(
    nets: Networks, images: Tensor, recipe: Recipe, noise: Noise, *, autocast: bool = False
) -> ForwardPass:
    """Every term of the step from one forward pass; no gradient is taken yet."""
    if recipe.objective == "ali":
        return _ali_forward_pass(nets, images, recipe, noise, autocast=autocast)
    with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=autocast):
        terms = forward(nets, images, recipe, noise)
    return ForwardPass(
        terms.figures(recipe),
        lambda discriminator: backward(nets, terms, recipe, discriminator=discriminator),
    )


# --------------------------------------------------------------------------------------------
# forward: every term once


@dataclass
class VAETerms:
    """The autoencoder's half of the step."""

    x_tilde: Tensor  # Dec(z), z ~ q(z|x): (B, C, H, W)
    L_prior: Tensor  # batch mean
    L_llike: Tensor  # batch mean


@dataclass
class GANTerms:
    """The adversarial half: D on x against x_p (and x~), and what each player takes from it."""

    L_gan: Tensor  # batch mean of L_GAN: real and generated costs summed, over B
    discriminator_loss: Tensor  # L_GAN with its real and generated costs weighted by the recipe
    decoder_loss: Tensor  # the decoder's GAN term: -(L_GAN's generated costs) or -log D(x_p)
    real_cost: Tensor  # (B,) -log D(x)
    fake_cost: Tensor  # (B_fake,) -log(1 - D(x_p)), with x~ first when it is discriminated
    real_logits: Tensor  # (B,)
    fake_logits: Tensor  # (B_fake,)


@dataclass
class Terms:
    """Every term of one step, each built once; None for the half an objective leaves out."""

    vae: VAETerms | None  # None for --objective gan
    gan: GANTerms | None  # None for --objective vae

    def decoder_weights(self, recipe: Recipe) -> tuple[float, float]:
        """The weights of L_llike and of the GAN term in the decoder's loss: gamma and
        1 - gamma when it has both, 1 for the one term it has otherwise."""
        if self.vae is not None and self.gan is not None:
            return recipe.gamma, 1.0 - recipe.gamma
        return 1.0, 1.0

    def figures(self, recipe: Recipe) -> dict[str, Tensor]:
        """The terms by the names metrics.jsonl logs them under, with L_dec, the decoder's loss."""
        figures: dict[str, Tensor] = {}
        if self.vae is not None:
            figures |= {"L_prior": self.vae.L_prior, "L_llike": self.vae.L_llike}
        if self.gan is not None:
            gan = self.gan
            figures["L_gan"] = gan.L_gan
            figures["real_cost"] = gan.real_cost.mean()
            figures["fake_cost"] = gan.fake_cost.mean()
            figures["D_x"] = torch.sigmoid(gan.real_logits).mean()
            figures["D_G_z"] = torch.sigmoid(gan.fake_logits).mean()
        figures["L_dec"] = self._decoder_loss(recipe)
        return figures

    def _decoder_loss(self, recipe: Recipe) -> Tensor:
        vae, gan = self.vae, self.gan
        if vae is not None and gan is not None:
            llike_weight, gan_weight = self.decoder_weights(recipe)
            return llike_weight * vae.L_llike + gan_weight * gan.decoder_loss
        if vae is not None:
            return vae.L_llike
        assert gan is not None, "every objective has an autoencoder or a GAN half"
        return gan.decoder_loss


def forward(nets: Networks, images: Tensor, recipe: Recipe, noise: Noise) -> Terms:
    """x~ from x, then x_p from z_p and D's verdicts: each network runs once per input."""
    vae = _vae_terms(nets, images, recipe, noise) if recipe.trains_encoder else None
    x_tilde = vae.x_tilde if vae is not None and recipe.discriminate_reconstructions else None
    gan = _gan_terms(nets, images, x_tilde, recipe, noise) if recipe.uses_discriminator else None
    return Terms(vae, gan)


def _vae_terms(nets: Networks, images: Tensor, recipe: Recipe, noise: Noise) -> VAETerms:
    encoded = nets.encoder(images)
    x_tilde = nets.decoder(encoded.sample(eps=noise.eps))  # (B, C, H, W)
    prior = losses.prior_loss(encoded.mu.float(), encoded.logvar.float()).mean()
    if recipe.objective == "vaegan":
        llike = _similarity_llike(nets.model, x_tilde, images)
    else:
        llike = losses.pixel_loss(x_tilde.float(), images.float(), recipe.pixel_sigma).mean()
    return VAETerms(x_tilde, prior, llike)


def _similarity_llike(model: VAEGAN, x_tilde: Tensor, images: Tensor) -> Tensor:
    """L_llike on Dis_l. x~ and x share one batch through D's lower layers, so one set of
    batch statistics normalises both, and D's running statistics are left to the GAN pass."""
    batch = images.shape[0]
    with frozen_batch_norm_statistics(model.discriminator):
        features = model.similarity_features(torch.cat([x_tilde, images])).float()  # (2B, ...)
    return losses.similarity_loss(features[:batch], features[batch:]).mean()


def _gan_terms(
    nets: Networks, images: Tensor, x_tilde: Tensor | None, recipe: Recipe, noise: Noise
) -> GANTerms:
    batch = images.shape[0]
    x_p = nets.decoder(noise.z_prior)  # (B, C, H, W)
    generated = [x_p] if x_tilde is None else [x_tilde, x_p]
    # Real and generated images go through D as one batch, so its batch norm sees both.
    logits = nets.discriminator(torch.cat([images, *generated])).logit.float()  # (B + B_fake,)
    real_logits, fake_logits = logits[:batch], logits[batch:]
    real_cost = losses.real_cost(real_logits, recipe.gan_eps)
    fake_cost = losses.fake_cost(fake_logits, recipe.gan_eps)
    # With x~ among them there are 2B generated images; together they keep their share.
    fake_weight = (1.0 - recipe.real_weight) * batch / fake_logits.shape[0]
    l_gan = (real_cost.sum() + fake_cost.sum()) / batch
    weighted = (recipe.real_weight * real_cost.sum() + fake_weight * fake_cost.sum()) / batch
    if recipe.decoder_gan_loss == "saturating":
        decoder_loss = -fake_cost.sum() / batch
    else:
        decoder_loss = losses.non_saturating_cost(fake_logits, recipe.gan_eps).sum() / batch
    return GANTerms(
        L_gan=l_gan,
        discriminator_loss=weighted,
        decoder_loss=decoder_loss,
        real_cost=real_cost,
        fake_cost=fake_cost,
        real_logits=real_logits,
        fake_logits=fake_logits,
    )


# --------------------------------------------------------------------------------------------
# backward: the three gradients
#
# `inputs=` keeps each loss's gradient to its own network (L_llike must not train D; L_GAN must
# not train the encoder), and each network's parameters accumulate exactly once, which
# DistributedDataParallel requires.


def backward(
    nets: Networks, terms: Terms, recipe: Recipe, *, discriminator: bool = True
) -> dict[str, Tensor]:
    """Each network's gradient into `.grad` (D's only when `discriminator`); returns the
    decoder's gradient norms by part."""
    llike_weight, gan_weight = terms.decoder_weights(recipe)
    # The decoder's gradient in its weighted parts, by name: (output, seed) for autograd.
    decoder_parts: dict[str, tuple[Tensor, Tensor]] = {}
    if terms.vae is not None:
        x_tilde = terms.vae.x_tilde
        # L_llike goes back through Dis_l once, to x~; the encoder and decoder go on from there.
        (llike_grad,) = torch.autograd.grad(terms.vae.L_llike, x_tilde, retain_graph=True)
        # (1) Encoder: minimise L_prior + L_llike.
        _encoder_gradient(nets.model, terms.vae, llike_grad)
        decoder_parts["llike"] = (x_tilde, llike_weight * llike_grad)
    if terms.gan is not None:
        loss = terms.gan.decoder_loss
        decoder_parts["gan"] = (loss, torch.full_like(loss, gan_weight))
    # (2) Decoder: minimise gamma * L_llike - (1 - gamma) * L_GAN (or its non-saturating form).
    discriminator_loss = (
        terms.gan.discriminator_loss if terms.gan is not None and discriminator else None
    )
    norms = _decoder_gradient(nets, decoder_parts, keep_graph=discriminator_loss is not None)
    if discriminator_loss is not None:
        # (3) Discriminator: minimise L_GAN.
        parameters = list(nets.model.discriminator.parameters())
        torch.autograd.backward(discriminator_loss, inputs=parameters)
    return norms


def _encoder_gradient(model: VAEGAN, vae: VAETerms, llike_grad: Tensor) -> None:
    torch.autograd.backward(
        [vae.x_tilde, vae.L_prior],
        [llike_grad, torch.ones_like(vae.L_prior)],
        inputs=list(model.encoder.parameters()),
        retain_graph=True,
    )


def _decoder_gradient(
    nets: Networks, parts: dict[str, tuple[Tensor, Tensor]], *, keep_graph: bool
) -> dict[str, Tensor]:
    """The decoder's gradient into `.grad`; its parts' norms when it is not DDP-wrapped.

    The parts (gamma * L_llike through x~, (1 - gamma) * the GAN term through x_p) run through
    separate decoder passes, so computing them apart costs no more than one backward; their
    norms show which signal the decoder actually follows, which is how gamma is chosen
    (`grad_dec_llike` vs `grad_dec_gan` in metrics.jsonl).
    """
    params = list(nets.model.decoder.parameters())
    if nets.decoder is not nets.model.decoder:
        # DistributedDataParallel reduces gradients in backward hooks: one backward, no norms.
        outputs, seeds = zip(*parts.values(), strict=True)
        torch.autograd.backward(list(outputs), list(seeds), inputs=params, retain_graph=keep_graph)
        return {}
    norms: dict[str, Tensor] = {}
    for index, (name, (output, seed)) in enumerate(parts.items()):
        last = index == len(parts) - 1
        # Every decoder weight takes part in both decoder passes, so no gradient is None.
        grads = torch.autograd.grad(output, params, seed, retain_graph=keep_graph or not last)
        norms[f"grad_dec_{name}"] = torch.linalg.vector_norm(
            torch.stack([torch.linalg.vector_norm(g.float()) for g in grads])
        )
        for param, grad in zip(params, grads, strict=True):
            if param.grad is None:
                param.grad = grad
            else:
                param.grad += grad
    return norms


# --------------------------------------------------------------------------------------------
# ALI


def _ali_forward_pass(
    nets: Networks, images: Tensor, recipe: Recipe, noise: Noise, *, autocast: bool = False
) -> ForwardPass:
    """ALI (Dumoulin et al. 2016): D(x, z) tells encoder pairs from decoder pairs.

    Encoder pairs are (x, z^) with z^ = mu(x) + sigma(x) * eps drawn by the reparameterisation
    trick; decoder pairs are (G_x(z), z) with z ~ N(0, I). D's loss: -log D(x, z^) and
    -log(1 - D(G_x(z), z)), weighted `real_weight : 1 - real_weight`. The encoder and decoder
    share one loss, L_gen: non-saturating (swapped labels, -log(1 - D(x, z^)) - log D(G_x(z), z),
    the ALI paper's choice) or saturating (minus D's unweighted loss). Both pair kinds go through
    D as one batch, so its batch norm sees both, as in the VAE-GAN step.
    """
    model = nets.model
    batch = images.shape[0]
    with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=autocast):
        z_hat = nets.encoder(images).sample(eps=noise.eps)  # (B, latent)
        generated = nets.decoder(noise.z_prior)  # (B, C, H, W)
        logits = nets.discriminator(
            torch.cat([images, generated]), torch.cat([z_hat, noise.z_prior])
        ).logit.float()  # (2B,)
    real_logits, fake_logits = logits[:batch], logits[batch:]
    real_cost = losses.real_cost(real_logits, recipe.gan_eps)
    fake_cost = losses.fake_cost(fake_logits, recipe.gan_eps)
    discriminator_loss = (
        recipe.real_weight * real_cost.sum() + (1.0 - recipe.real_weight) * fake_cost.sum()
    ) / batch
    if recipe.decoder_gan_loss == "non-saturating":
        generator_loss = (
            losses.fake_cost(real_logits, recipe.gan_eps).sum()
            + losses.non_saturating_cost(fake_logits, recipe.gan_eps).sum()
        ) / batch
    else:
        generator_loss = -(real_cost.sum() + fake_cost.sum()) / batch
    figures = {
        "L_gan": (real_cost.sum() + fake_cost.sum()) / batch,
        "L_gen": generator_loss,
        "real_cost": real_cost.mean(),
        "fake_cost": fake_cost.mean(),
        "D_x": torch.sigmoid(real_logits).mean(),
        "D_G_z": torch.sigmoid(fake_logits).mean(),
    }

    def take_gradients(discriminator: bool) -> dict[str, Tensor]:
        # (1) Encoder and decoder: minimise L_gen.
        generators = [*model.encoder.parameters(), *model.decoder.parameters()]
        torch.autograd.backward(generator_loss, inputs=generators, retain_graph=discriminator)
        if discriminator:
            # (2) Discriminator: minimise D's weighted loss.
            parameters = list(model.discriminator.parameters())
            torch.autograd.backward(discriminator_loss, inputs=parameters)
        return {}

    return ForwardPass(figures, take_gradients)
