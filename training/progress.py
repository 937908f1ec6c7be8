"""What a training run reports as it goes: each step's figures, their means over the steps since
the last log line, the run's counters, and the bar (or log line) that shows them.

The figures here are what metrics.jsonl records; the counters are also kept in the resume state,
so a resumed run goes on counting where the killed one stopped.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

# The loss terms shown beside the bar; metrics.jsonl has them all.
_SHOWN = ("L_prior", "L_llike", "L_gan", "L_gen", "D_x", "D_G_z")


@dataclass
class StepStats:
    """One step's figures, per image: the paper's loss terms by name and the GAN's state."""

    values: dict[str, float]
    update_discriminator: bool
    update_decoder: bool
    images: int


@dataclass
class Counters:
    """The run's totals since step 0."""

    steps: int = 0
    discriminator_skips: int = 0
    decoder_skips: int = 0
    damaged_images: int = 0
    thin_batches: int = 0  # batches with < 2 good images, which batch norm cannot train on

    def to_dict(self) -> dict[str, int]:
        return dict(self.__dict__)

    def reported(self) -> dict[str, int]:
        """The totals each metrics line and checkpoint carry."""
        return {
            "discriminator_skips": self.discriminator_skips,
            "decoder_skips": self.decoder_skips,
            "damaged_images": self.damaged_images,
        }


@dataclass
class Window:
    """Running means of the figures since the last log line."""

    sums: dict[str, float] = field(default_factory=dict)
    count: int = 0
    images: int = 0
    discriminator_skips: int = 0
    decoder_skips: int = 0
    started: float = field(default_factory=time.perf_counter)

    def add(self, stats: StepStats) -> None:
        for name, value in stats.values.items():
            self.sums[name] = self.sums.get(name, 0.0) + value
        self.count += 1
        self.images += stats.images
        self.discriminator_skips += not stats.update_discriminator
        self.decoder_skips += not stats.update_decoder

    def summary(self) -> dict[str, float]:
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        count = max(self.count, 1)
        figures = {name: total / count for name, total in self.sums.items()}
        figures["images_per_second"] = self.images / elapsed
        figures["skip_rate_discriminator"] = self.discriminator_skips / count
        figures["skip_rate_decoder"] = self.decoder_skips / count
        return figures


class ProgressBar:
    """Images trained out of the run's total, with the latest figures beside them; with the bar
    hidden (--quiet), `show` logs them as a line instead."""

    def __init__(
        self,
        total_steps: int,
        batch_size: int,
        *,
        done_steps: int,
        visible: bool,
        equilibrium: bool,
    ) -> None:
        from tqdm import tqdm

        self.total_steps = total_steps
        self.batch_size = batch_size
        # Only runs under the equilibrium rule skip updates; elsewhere the rates are always 0.
        self.equilibrium = equilibrium
        self.bar = tqdm(
            total=total_steps * batch_size,
            initial=done_steps * batch_size,
            unit="img",
            unit_scale=True,
            disable=not visible,
            dynamic_ncols=True,
        )

    def advance(self) -> None:
        self.bar.update(self.batch_size)

    def show(self, step: int, figures: dict[str, float]) -> None:
        postfix = {name: f"{figures[name]:.3g}" for name in _SHOWN if name in figures}
        if self.equilibrium:
            postfix["skip_D"] = f"{figures['skip_rate_discriminator']:.0%}"
            postfix["skip_dec"] = f"{figures['skip_rate_decoder']:.0%}"
        self.bar.set_postfix(postfix, refresh=False)
        if self.bar.disable:
            log.info(
                "step %d/%d %.1f img/s %s",
                step,
                self.total_steps,
                figures["images_per_second"],
                " ".join(f"{k}={v}" for k, v in postfix.items()),
            )

    def close(self) -> None:
        self.bar.close()
