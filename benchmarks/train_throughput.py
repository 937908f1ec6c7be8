"""Training throughput: this trainer against a naive implementation of the same recipe.

    python benchmarks/train_throughput.py                 # small64 and paper64 at batch 64
    python benchmarks/train_throughput.py --presets small64 --steps 10

Both run in the same process, on the same batch, preset and memory format (channels-last, which
the trainer uses), alternating step by step so machine noise hits both alike. The naive step
(`tests/training/naive_trainer.py`, the reference the gradient tests compare with) does one
forward and backward pass per network, as public ports do; the trainer does one forward pass and
three backward passes restricted to each network's weights. Equilibrium skipping is off in
both, so both always update all three networks.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.codec import Preprocessing
from model.config import get_preset
from model.networks import build_vaegan
from tests.training.naive_trainer import naive_step
from training.data import Batch, Sample
from training.distributed import DistributedContext
from training.recipe import Recipe
from training.step import Noise
from training.trainer import Trainer, TrainerOptions


class RandomImages:
    """Just enough of a data set for the Trainer's constructor."""

    def __init__(self, count: int, channels: int, size: int) -> None:
        self.images = torch.rand(count, channels, size, size) * 2 - 1
        self.attribute_names: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Sample:
        return Sample(self.images[index], torch.empty(0, dtype=torch.int8), index)

    def describe(self) -> dict[str, Any]:
        return {"kind": "random"}


def measure(preset: str, batch_size: int, steps: int, run_dir: Path) -> tuple[float, float]:
    config = get_preset(preset)
    recipe = Recipe(batch_size=batch_size, margin=None)
    data = RandomImages(batch_size, config.channels, config.image_size)
    batch = Batch(data.images, torch.empty(batch_size, 0), torch.arange(batch_size), 0)

    trainer = Trainer(
        build_vaegan(config, seed=0),
        data,
        recipe,
        run_dir,
        TrainerOptions(total_steps=10**9, progress=False),
        DistributedContext(),
        preprocessing=Preprocessing(config.image_size, config.channels),
    )
    naive_model = build_vaegan(config, seed=0).train().to(memory_format=torch.channels_last)
    naive_optimizers = {
        name: torch.optim.RMSprop(
            getattr(naive_model, name).parameters(), lr=recipe.lr, alpha=0.9, eps=1e-8
        )
        for name in ("encoder", "decoder", "discriminator")
    }
    images = data.images.contiguous(memory_format=torch.channels_last)
    generator = torch.Generator().manual_seed(0)

    def ours(step: int) -> None:
        trainer.train_step(batch, step)

    def naive(step: int) -> None:
        noise = Noise(
            torch.randn(batch_size, config.latent_dim, generator=generator),
            torch.randn(batch_size, config.latent_dim, generator=generator),
        )
        naive_step(naive_model, naive_optimizers, images, recipe, noise)

    timings: dict[str, list[float]] = {"trainer": [], "naive": []}
    ours(0)  # warm-up: allocator, oneDNN kernel choice
    naive(0)
    for step in range(1, steps + 1):
        for name, function in (("trainer", ours), ("naive", naive)):
            start = time.perf_counter()
            function(step)
            timings[name].append(time.perf_counter() - start)
    return statistics.median(timings["trainer"]), statistics.median(timings["naive"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=["small64", "paper64"])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5, help="timed steps of each, alternating")
    args = parser.parse_args()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}, "
        f"median of {args.steps} steps"
    )
    import tempfile

    with tempfile.TemporaryDirectory() as run_dir:
        for preset in args.presets:
            ours, naive = measure(preset, args.batch_size, args.steps, Path(run_dir))
            print(
                f"{preset:9s} trainer {ours:6.3f} s/step {args.batch_size / ours:7.1f} img/s | "
                f"naive {naive:6.3f} s/step {args.batch_size / naive:7.1f} img/s | "
                f"speed-up {naive / ours:.2f}x"
            )


if __name__ == "__main__":
    main()
