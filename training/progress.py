"""What a training run reports as it goes: each step's figures, their means over the steps since
the last log line, the run's counters, and the bar (or log line) that shows them.

The figures here are what metrics.jsonl records; the counters are also kept in the resume state,
so a resumed run goes on counting where the killed one stopped.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

# The loss terms shown beside the bar; metrics.jsonl has them all.
_SHOWN = ("L_prior", "L_llike", "L_gan", "L_gen", "D_x", "D_G_z")

# What each shown figure is, logged once when a run starts: a newcomer sees `skip_D=86%` long
# before reading the README, and a figure nobody can read is noise.
_MEANINGS = {
    "L_prior": "KL of the codes from N(0, I); near 0 after a few hundred steps: they carry nothing",
    "L_llike": "reconstruction error in D's features (pixels for --objective vae); falls",
    "L_gan": "the discriminator's loss on real and generated images",
    "L_gen": "the encoder's and decoder's GAN loss",
    "D_x": "D's mean verdict on real images (1 = real, 0 = fake)",
    "D_G_z": "D's mean verdict on images decoded from z ~ N(0, I)",
}
_SKIP_MEANINGS = {
    "skip_D": "% of steps the equilibrium rule paused D because it was winning; 65-95% is usual",
    "skip_dec": "% of steps it paused the decoder because it was losing; near 0% is usual",
}


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
    """Steps done out of the run's total, with the ETA, the rate and the figures of the steps since
    the last log line, updated every step; with the bar hidden (--quiet), `show` logs the figures
    as a line every --log-every steps instead."""

    def __init__(
        self,
        total_steps: int,
        *,
        done_steps: int,
        visible: bool,
        main: bool,
        equilibrium: bool,
    ) -> None:
        from tqdm import tqdm

        self.total_steps = total_steps
        # Only the main process of a distributed run reports anything.
        self.main = main
        # Only runs under the equilibrium rule skip updates; elsewhere the rates are always 0.
        self.equilibrium = equilibrium
        self.explained = False
        # Steps, not images: the step is what --steps, --log-every, checkpoints and the README's
        # timings count. tqdm shows s/step instead of step/s when a step takes over a second.
        self.bar = tqdm(
            total=total_steps,
            initial=done_steps,
            unit="step",
            bar_format="step {n_fmt}/{total_fmt} {percentage:3.0f}%|{bar}| "
            "{elapsed}<{remaining}, {rate_fmt}{postfix}",
            disable=not (visible and main),
            dynamic_ncols=True,
            file=sys.stderr,
        )

    def advance(self, window: Window) -> None:
        """One step done; `window` holds the steps since the last log line, this one included."""
        first_figures = self.main and window.count > 0 and not self.explained
        if first_figures:
            self.explained = True
            with self.bar.external_write_mode(file=sys.stderr):
                log.info("%s", explain(window.sums, equilibrium=self.equilibrium))
        if not self.bar.disable and window.count:
            # A few dict operations a step, against a training step of a tenth of a second or more.
            self.bar.set_postfix(self._postfix(window.summary()), refresh=False)
        self.bar.update(1)
        if first_figures:
            # tqdm redraws at most every 0.1 s; the first figures are shown at once.
            self.bar.refresh()

    def _postfix(self, figures: dict[str, float]) -> dict[str, str]:
        postfix = {name: f"{figures[name]:.3g}" for name in _SHOWN if name in figures}
        if self.equilibrium:
            postfix["skip_D"] = f"{figures['skip_rate_discriminator']:.0%}"
            postfix["skip_dec"] = f"{figures['skip_rate_decoder']:.0%}"
        return postfix

    def show(self, step: int, figures: dict[str, float]) -> None:
        """A log line of `figures` when the bar is hidden; the bar already shows them."""
        if self.main and self.bar.disable:
            log.info(
                "step %d/%d %.1f img/s %s",
                step,
                self.total_steps,
                figures["images_per_second"],
                " ".join(f"{k}={v}" for k, v in self._postfix(figures).items()),
            )

    def close(self) -> None:
        self.bar.close()


def explain(names: Iterable[str], *, equilibrium: bool) -> str:
    """The legend for the figures a run shows: one line each, for those among `names`."""
    present = set(names)
    meanings = {name: text for name, text in _MEANINGS.items() if name in present}
    if equilibrium:
        meanings |= _SKIP_MEANINGS
    width = max(map(len, meanings), default=0)
    lines = [f"  {name:<{width}}  {text}" for name, text in meanings.items()]
    return "\n".join(
        [
            "the figures are means over the steps since the last log line, losses per image "
            '(README: "Reading the training output"):',
            *lines,
        ]
    )
