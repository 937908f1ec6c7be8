"""Pictures of a run: the sample grids written with each checkpoint, and the loss curves drawn
from metrics.jsonl at the end."""

from __future__ import annotations

import io
import math
from pathlib import Path

import torch
from torch import Tensor

from model.atomic import atomic_write_bytes
from model.codec import encode_png, make_grid
from model.networks import VAEGAN
from training.run_dir import read_metrics

# (title, metrics drawn, logarithmic y axis), top to bottom; a panel whose metrics the run did
# not log is left out.
_SKIPS = ("equilibrium skips", ("skip_rate_discriminator", "skip_rate_decoder"), False)
_PANELS = (
    ("losses (per image)", ("L_prior", "L_llike", "L_gan", "L_gen"), True),
    # What the decoder follows: gamma * |dL_llike| against (1 - gamma) * |dL_gan|.
    ("decoder gradient norms", ("grad_dec_llike", "grad_dec_gan"), True),
    ("discriminator", ("D_x", "D_G_z"), False),
    _SKIPS,
    ("throughput (images/s)", ("images_per_second",), False),
)


@torch.no_grad()
def write_sample_grids(
    directory: Path, step: int, model: VAEGAN, z: Tensor, originals: Tensor | None
) -> None:
    """Dec(z) as `samples-{step}.png` and, given originals, each beside its reconstruction as
    `reconstructions-{step}.png`; eight images a row. The caller puts `model` in eval mode."""
    samples = model.decode(z).float().cpu()
    atomic_write_bytes(
        directory / f"samples-{step:07d}.png", encode_png(make_grid(samples, nrow=8))
    )
    if originals is None:
        return
    reconstructions = model.reconstruct(originals).float().cpu()
    # Pairs side by side: (N, C, H, W) twice -> (2N, C, H, W), original then reconstruction.
    paired = torch.stack([originals.cpu(), reconstructions], dim=1).flatten(0, 1)
    grid = make_grid(paired, nrow=8)
    atomic_write_bytes(directory / f"reconstructions-{step:07d}.png", encode_png(grid))


def plot_loss_curves(metrics_path: Path, out_path: Path, *, equilibrium: bool = True) -> bool:
    """Loss terms, D outputs and skip rates against step, as a PNG; False without data.

    Without `equilibrium` (a run without D, or with the rule off) nothing was ever skipped, and
    the skip-rate panel, always zero, is left out."""
    records = read_metrics(metrics_path)
    if not records:
        return False
    # The object API, not pyplot: no global figure state, and it starts faster; fixed margins
    # and legend corners, because tight_layout and loc="best" measured more than half of the
    # plot's second, paid at the end of every run.
    from matplotlib.figure import Figure

    steps = [r["step"] for r in records]
    present = [p for p in _PANELS if any(name in records[0] for name in p[1])]
    if not equilibrium:
        present = [p for p in present if p is not _SKIPS]
    height = 2.6 * len(present)
    figure = Figure(figsize=(8, height))
    axes = figure.subplots(len(present), 1, sharex=True, squeeze=False)[:, 0]
    for axis, (title, names, logarithmic) in zip(axes, present, strict=True):
        for name in names:
            if name in records[0]:
                axis.plot(steps, [r.get(name, math.nan) for r in records], label=name)
        if logarithmic and all(r.get(n, 1) > 0 for r in records for n in names if n in r):
            axis.set_yscale("log")
        axis.set_title(title, fontsize=10)
        axis.legend(fontsize=8, loc="upper right")
        axis.grid(alpha=0.3)
    figure.supxlabel("step")
    # Margins in inches, whatever the number of panels: 0.45 above, 0.6 below for "step".
    figure.subplots_adjust(
        left=0.1, right=0.97, top=1 - 0.45 / height, bottom=0.6 / height, hspace=0.45
    )
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    atomic_write_bytes(out_path, buffer.getvalue())
    return True
