"""Time one full VAE-GAN training step per preset (a benchmark, not a test).

    python benchmarks/step_time.py                      # paper64 and small64 at batch 64
    python benchmarks/step_time.py --presets small64 --steps 10 --memory-format contiguous

The step is the paper's: one forward pass (encoder, decoder on z ~ q(z|x) and on z_p ~ N(0, I),
the discriminator on real, reconstructed and sampled images as one batch), then the three
networks' gradients (encoder: L_prior + L_llike; decoder: gamma * L_llike - (1 - gamma) * L_gan;
discriminator: L_gan), then an RMSProp step for each. It is what one iteration of the trainer
costs, without data loading.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from model.config import get_preset
from model.networks import VAEGAN, build_vaegan


def make_step(model: VAEGAN, batch: torch.Tensor, gamma: float = 1e-6):
    nets = (model.encoder, model.decoder, model.discriminator)
    optimisers = [
        torch.optim.RMSprop(net.parameters(), lr=3e-4, alpha=0.9, eps=1e-8, weight_decay=1e-5)
        for net in nets
    ]
    params = [list(net.parameters()) for net in nets]
    size = batch.shape[0]

    def step() -> None:
        encoded = model.encoder(batch)
        reconstruction = model.decoder(encoded.sample())
        z_prior = torch.randn_like(encoded.mu)
        sampled = model.decoder(z_prior)
        judged = model.discriminator(torch.cat([batch, reconstruction, sampled]))
        real_features, fake_features, _ = judged.features.split(size)
        real_logit, _, sampled_logit = judged.logit.split(size)

        l_prior = -0.5 * (1 + encoded.logvar - encoded.mu**2 - encoded.logvar.exp()).sum()
        l_llike = 0.5 * ((fake_features - real_features.detach()) ** 2).sum()
        l_gan = F.softplus(-real_logit).sum() + F.softplus(sampled_logit).sum()

        grads = (
            torch.autograd.grad(l_prior + l_llike, params[0], retain_graph=True),
            torch.autograd.grad(
                gamma * l_llike - (1 - gamma) * l_gan, params[1], retain_graph=True
            ),
            torch.autograd.grad(l_gan, params[2]),
        )
        for optimiser, group, group_grads in zip(optimisers, params, grads, strict=True):
            for parameter, grad in zip(group, group_grads, strict=True):
                parameter.grad = grad
            optimiser.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=["small64", "paper64"])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up")
    parser.add_argument(
        "--memory-format",
        choices=["channels_last", "contiguous", "both"],
        default="both",
        help="channels_last is several times faster for thin convs on CPUs",
    )
    args = parser.parse_args()
    formats = (
        ["channels_last", "contiguous"] if args.memory_format == "both" else [args.memory_format]
    )
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}")
    for name in args.presets:
        config = get_preset(name)
        for memory_format in formats:
            layout = getattr(torch, memory_format.replace("contiguous", "contiguous_format"))
            model = build_vaegan(config, seed=0).train().to(memory_format=layout)
            size = config.image_size
            batch = (torch.rand(args.batch_size, config.channels, size, size) * 2 - 1).to(
                memory_format=layout
            )
            step = make_step(model, batch)
            step()  # warm-up: allocator, oneDNN kernel selection
            times = []
            for _ in range(args.steps):
                start = time.perf_counter()
                step()
                times.append(time.perf_counter() - start)
            print(
                f"{name:9s} {memory_format:13s} {statistics.median(times):7.3f} s/step "
                f"(median of {args.steps}; min {min(times):.3f}, max {max(times):.3f}) "
                f"{args.batch_size / statistics.median(times):7.1f} images/s"
            )


if __name__ == "__main__":
    main()
