"""Throughput of the synthetic-faces generator, end to end (sample, render, JPEG, write).

Run from the repository root::

    python benchmarks/synth_throughput.py            # 2000 images, workers=1 then workers=2
    python benchmarks/synth_throughput.py --count 500 --workers 1 2 4

Each run writes into a fresh temporary folder, so disk caching of earlier runs does not flatter
later ones. The target is >= 200 images/s with workers=1 (a single core); the workers>1 figures
include the cost of starting "spawn" worker processes.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

# Lets the script run from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.synth import generate_synthetic_celeba


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000, help="images per run")
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[1, 2], help="worker counts to measure"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"synthetic CelebA throughput: {args.count} images, {cores} usable cores")
    for workers in args.workers:
        with tempfile.TemporaryDirectory(prefix="synth-bench-") as tmp:
            report = generate_synthetic_celeba(
                Path(tmp) / "celeba", args.count, seed=args.seed, workers=workers, progress=False
            )
        print(
            f"workers={workers}: {report.images_per_second:7.1f} images/s "
            f"({report.seconds:.2f} s for {report.count})"
        )


if __name__ == "__main__":
    main()
