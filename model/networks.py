"""The three VAE-GAN networks (Larsen et al. 2016, section 2 and the authors' `architectures.py`),
and ALI's joint discriminator (Dumoulin et al. 2016), which replaces D for `--objective ali`.

All are plain `nn.Module`s built from a `VAEGANConfig`; they do no I/O. "same" padding with
5x5 kernels: stride-2 convs halve the size, stride-2 transposed convs double it.
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

from model.config import VAEGANConfig


class EncoderOutput(NamedTuple):
    """q(z|x) = N(mu, exp(logvar)); both (B, latent_dim)."""

    mu: Tensor
    logvar: Tensor

    def sample(
        self, generator: torch.Generator | None = None, *, eps: Tensor | None = None
    ) -> Tensor:
        """z = mu + sigma * eps, the reparameterisation trick (gradients flow to mu and logvar).

        eps ~ N(0, I) is drawn from `generator` unless given: a trainer that must replay a step
        exactly draws it from its own seeded generator and passes it in.
        """
        if eps is None:
            eps = torch.randn(
                self.mu.shape, generator=generator, device=self.mu.device, dtype=self.mu.dtype
            )
        return self.mu + torch.exp(0.5 * self.logvar) * eps


class DiscriminatorOutput(NamedTuple):
    logit: Tensor  # (B,) pre-sigmoid; D(x) = sigmoid(logit)
    features: Tensor  # (B, C, base, base): Dis_l, the learned similarity representation


def _padding(kernel_size: int) -> int:
    return kernel_size // 2


class ConvBlock(nn.Module):
    """Conv (no bias: BN follows) -> BatchNorm -> ReLU; transposed when upsampling."""

    def __init__(
        self, in_channels: int, out_channels: int, config: VAEGANConfig, *, transposed: bool
    ) -> None:
        super().__init__()
        k, pad = config.kernel_size, _padding(config.kernel_size)
        self.conv: nn.Conv2d | nn.ConvTranspose2d
        if transposed:
            # output_padding=1 makes the output exactly twice the input, DeepPy's "same".
            self.conv = nn.ConvTranspose2d(
                in_channels, out_channels, k, stride=2, padding=pad, output_padding=1, bias=False
            )
        else:
            self.conv = nn.Conv2d(in_channels, out_channels, k, stride=2, padding=pad, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=config.conv_bn_eps, momentum=config.bn_momentum)

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.bn(self.conv(x)))


def _fc_block(in_features: int, out_features: int, config: VAEGANConfig) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_features, out_features, bias=False),
        nn.BatchNorm1d(out_features, eps=config.fc_bn_eps, momentum=config.bn_momentum),
        nn.ReLU(),
    )


class Encoder(nn.Module):
    def __init__(self, config: VAEGANConfig) -> None:
        super().__init__()
        self.config = config
        widths = (config.channels, *config.encoder_channels)
        self.features = nn.Sequential(
            *(
                ConvBlock(c_in, c_out, config, transposed=False)
                for c_in, c_out in itertools.pairwise(widths)
            )
        )
        flat = config.encoder_channels[-1] * config.base_size**2
        self.fc = _fc_block(flat, config.encoder_fc, config)
        self.mu = nn.Linear(config.encoder_fc, config.latent_dim)
        self.logvar = nn.Linear(config.encoder_fc, config.latent_dim)
        initialize(self, config)

    def forward(self, x: Tensor) -> EncoderOutput:
        h = self.features(x)  # (B, C_last, base, base)
        h = self.fc(h.flatten(1))  # (B, encoder_fc)
        return EncoderOutput(self.mu(h), self.logvar(h))


class Decoder(nn.Module):
    def __init__(self, config: VAEGANConfig) -> None:
        super().__init__()
        self.config = config
        self.fc = _fc_block(
            config.latent_dim, config.decoder_base_channels * config.base_size**2, config
        )
        widths = (config.decoder_base_channels, *config.decoder_channels)
        self.features = nn.Sequential(
            *(
                ConvBlock(c_in, c_out, config, transposed=True)
                for c_in, c_out in itertools.pairwise(widths)
            )
        )
        k = config.kernel_size
        self.to_image = nn.Conv2d(
            config.decoder_channels[-1], config.channels, k, padding=_padding(k)
        )
        initialize(self, config)

    def forward(self, z: Tensor) -> Tensor:
        base = self.config.base_size
        h = self.fc(z).view(-1, self.config.decoder_base_channels, base, base)  # (B, C, 8, 8)
        h = self.features(h)  # (B, C_last, size, size)
        return torch.tanh(self.to_image(h))  # (B, channels, size, size) in [-1, 1]


class Discriminator(nn.Module):
    def __init__(self, config: VAEGANConfig) -> None:
        super().__init__()
        self.config = config
        k = config.kernel_size
        self.stem = nn.Conv2d(
            config.channels, config.discriminator_first_channels, k, padding=_padding(k)
        )
        widths = (config.discriminator_first_channels, *config.discriminator_channels)
        blocks = [
            ConvBlock(c_in, c_out, config, transposed=False)
            for c_in, c_out in itertools.pairwise(widths)
        ]
        self.lower_stages = nn.Sequential(*blocks[:-1])
        # The last stride-2 stage: its conv output, before BN and ReLU, is Dis_l.
        self.similarity_stage = blocks[-1]
        flat = config.discriminator_channels[-1] * config.base_size**2
        self.fc = _fc_block(flat, config.discriminator_fc, config)
        self.classifier = nn.Linear(config.discriminator_fc, 1)
        initialize(self, config)

    def forward(self, x: Tensor) -> DiscriminatorOutput:
        features = self.similarity_features(x)  # (B, C_last, base, base)
        h = torch.relu(self.similarity_stage.bn(features))
        h = self.fc(h.flatten(1))  # (B, discriminator_fc)
        return DiscriminatorOutput(self.classifier(h).squeeze(1), features)

    def similarity_features(self, x: Tensor) -> Tensor:
        """Dis_l(x): the last conv's output before its BN and ReLU, as in the authors' code."""
        h = torch.relu(self.stem(x))  # (B, first, size, size)
        h = self.lower_stages(h)
        features: Tensor = self.similarity_stage.conv(h)
        return features


# ALI's slope for the discriminator's leaky ReLUs.
_LEAK = 0.2


class JointDiscriminator(nn.Module):
    """ALI's D(x, z): is (x, z) an image with its inferred latent, or a latent with its decoding?

    Three parts, as in the ALI paper: an image branch (a stride-1 conv, then the same stride-2
    conv stages as the VAE-GAN's D, then a fully connected layer), a latent branch (two fully
    connected layers), and joint layers on the two concatenated. Leaky ReLUs throughout, batch
    norm on the strided convs only (none on z, whose statistics are the point), and dropout after
    every hidden layer, which the ALI paper needed to keep D from memorising pairs.
    """

    def __init__(self, config: VAEGANConfig) -> None:
        super().__init__()
        self.config = config
        k, pad, p = config.kernel_size, _padding(config.kernel_size), config.joint_dropout
        image_layers: list[nn.Module] = [
            nn.Conv2d(config.channels, config.discriminator_first_channels, k, padding=pad),
            nn.LeakyReLU(_LEAK),
            nn.Dropout(p),
        ]
        widths = (config.discriminator_first_channels, *config.discriminator_channels)
        for c_in, c_out in itertools.pairwise(widths):
            image_layers += [
                nn.Conv2d(c_in, c_out, k, stride=2, padding=pad, bias=False),
                nn.BatchNorm2d(c_out, eps=config.conv_bn_eps, momentum=config.bn_momentum),
                nn.LeakyReLU(_LEAK),
                nn.Dropout(p),
            ]
        self.image_branch = nn.Sequential(*image_layers)
        width = config.discriminator_fc
        flat = config.discriminator_channels[-1] * config.base_size**2
        self.image_fc = _leaky_fc(flat, width, p)
        self.latent_branch = nn.Sequential(
            _leaky_fc(config.latent_dim, width, p), _leaky_fc(width, width, p)
        )
        self.joint = _leaky_fc(2 * width, 2 * width, p)
        self.classifier = nn.Linear(2 * width, 1)
        initialize(self, config)

    def forward(self, x: Tensor, z: Tensor) -> DiscriminatorOutput:
        """Logits for each (x_i, z_i) pair; `features` are the joint layer's activations."""
        h_x = self.image_fc(self.image_branch(x).flatten(1))  # (B, fc)
        h_z = self.latent_branch(z)  # (B, fc)
        joint = self.joint(torch.cat([h_x, h_z], dim=1))  # (B, 2 fc)
        return DiscriminatorOutput(self.classifier(joint).squeeze(1), joint)


def _leaky_fc(in_features: int, out_features: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_features, out_features), nn.LeakyReLU(_LEAK), nn.Dropout(dropout)
    )


class VAEGAN(nn.Module):
    """The three networks together, so one state dict (and one checkpoint) holds them all.

    `config.discriminator` picks D: the VAE-GAN's image discriminator, or ALI's joint one.
    """

    def __init__(self, config: VAEGANConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.discriminator: Discriminator | JointDiscriminator = (
            JointDiscriminator(config) if config.discriminator == "joint" else Discriminator(config)
        )

    @property
    def has_similarity_metric(self) -> bool:
        """Whether D has Dis_l, the learned image similarity (ALI's D judges pairs instead)."""
        return isinstance(self.discriminator, Discriminator)

    def similarity_features(self, x: Tensor) -> Tensor:
        """Dis_l(x), the paper's learned similarity representation: (B, C, base, base)."""
        if not isinstance(self.discriminator, Discriminator):
            raise TypeError(
                "this model has ALI's joint discriminator, which judges (image, latent) pairs; "
                "the learned similarity Dis_l needs a VAE-GAN's image discriminator"
            )
        return self.discriminator.similarity_features(x)

    def encode(self, x: Tensor) -> EncoderOutput:
        out: EncoderOutput = self.encoder(x)
        return out

    def decode(self, z: Tensor) -> Tensor:
        out: Tensor = self.decoder(z)
        return out

    def reconstruct(self, x: Tensor) -> Tensor:
        """Decode the posterior mean: the deterministic reconstruction a user expects."""
        return self.decode(self.encode(x).mu)

    def forward(self, x: Tensor) -> Tensor:
        return self.reconstruct(x)


def build_vaegan(config: VAEGANConfig, *, seed: int | None = None) -> VAEGAN:
    """Build all three networks; with a seed, the initial weights are reproducible."""
    if seed is None:
        return VAEGAN(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return VAEGAN(config)


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@torch.no_grad()
def initialize(module: nn.Module, config: VAEGANConfig) -> None:
    """Initialise weights the authors' way, or keep PyTorch's defaults.

    The authors' DeepPy `AutoFiller` draws U(-b, b) with b = gain / sqrt(3 * fan), where fan is the
    product of the weight's trailing dimensions (inputs for a linear layer, in_channels * k * k for
    a conv, out_channels * k * k for a transposed conv; PyTorch lays out all three the same way).
    Biases start at 0, BN scales at U(0, 1), BN shifts at 0.
    """
    if config.init == "pytorch":
        return
    for layer in module.modules():
        if isinstance(layer, nn.Linear | nn.Conv2d | nn.ConvTranspose2d):
            fan = math.prod(layer.weight.shape[1:])
            bound = config.init_gain / math.sqrt(3.0 * fan)
            nn.init.uniform_(layer.weight, -bound, bound)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.BatchNorm1d | nn.BatchNorm2d):
            nn.init.uniform_(layer.weight, 0.0, 1.0)
            nn.init.zeros_(layer.bias)
