"""onnxruntime against PyTorch: encoder + decoder forward throughput on the bundled model.

Run from the repository root on an otherwise idle machine::

    python benchmarks/onnx_vs_torch.py                # 1 and 2 threads, batch 1 and 32
    python benchmarks/onnx_vs_torch.py --write-docs   # also docs/benchmarks.md's section
    python benchmarks/onnx_vs_torch.py --rounds 3 --seconds 0.2   # a quick look

The demo model is exported with `training.onnx_export` (what `vaegan-train export` writes) and
both engines do the same work: images -> encoder -> mu -> decoder -> images, the service's
`reconstruct` forward. PyTorch runs it as the service does (`service.predictor.Predictor`:
channels-last, inference mode); onnxruntime runs the exported graphs with its CPU provider.
Both get the same number of intra-op threads (1, then 2). Each round times both engines for
about --seconds each, in alternating order, so machine noise hits both alike; the figures are
the median over the rounds, and the ratio is taken within each round, then its median.

The question it answers: is onnxruntime clearly faster (at least 1.3x at batch 32) on this CPU,
enough to offer it as a service backend?
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Lets the script run from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from benchmarks.harness import ONNX_HEADING, ROOT, announce, git_revision, write_docs_section
from model.checkpoint import load_checkpoint
from model.demo import demo_checkpoint_path
from service.predictor import Predictor
from training.onnx_export import DECODER, ENCODER, MODEL_FILE, MODEL_VERSION, export_checkpoint
from training.onnx_export import load_session as onnx_session

# The bar for offering onnxruntime as a service backend.
TARGET_RATIO = 1.3


@dataclass
class Cell:
    """One (threads, batch) pair: images/s per round for each engine."""

    threads: int
    batch: int
    torch_rates: list[float] = field(default_factory=list)
    onnx_rates: list[float] = field(default_factory=list)

    @property
    def ratios(self) -> list[float]:
        return [o / t for o, t in zip(self.onnx_rates, self.torch_rates, strict=True)]

    def row(self) -> str:
        ratio = statistics.median(self.ratios)
        runs = ", ".join(f"{r:.2f}" for r in self.ratios)
        return (
            f"| {self.threads} | {self.batch} | {statistics.median(self.torch_rates):,.1f} "
            f"| {statistics.median(self.onnx_rates):,.1f} | **{ratio:.2f}x** | {runs} |"
        )


def images_per_second(forward: Callable[[], object], batch: int, iterations: int) -> float:
    start = time.perf_counter()
    for _ in range(iterations):
        forward()
    return batch * iterations / (time.perf_counter() - start)


def measure(
    predictor: Predictor, repository: Path, threads: int, batch: int, rounds: int, seconds: float
) -> Cell:
    torch.set_num_threads(threads)
    encoder = onnx_session(repository / ENCODER / MODEL_VERSION / MODEL_FILE, threads=threads)
    decoder = onnx_session(repository / DECODER / MODEL_VERSION / MODEL_FILE, threads=threads)
    size, channels = predictor.config.image_size, predictor.config.channels
    generator = torch.Generator().manual_seed(batch)
    images = torch.rand(batch, channels, size, size, generator=generator) * 2 - 1
    array = images.numpy()

    def with_torch() -> object:
        return predictor.run("reconstruct", images)

    def with_onnx() -> list[np.ndarray[Any, Any]]:
        (mu,) = encoder.run(["mu"], {"image": array})
        outputs: list[np.ndarray[Any, Any]] = decoder.run(["image"], {"z": mu})
        return outputs

    # Same answer first: a faster engine computing something else would be no result.
    (reference, _) = predictor.run("reconstruct", images)
    (answer,) = with_onnx()
    difference = float(np.abs(answer - reference.numpy()).max())
    if not difference < 1e-4:
        raise SystemExit(f"onnxruntime and PyTorch disagree by {difference:.3g}")

    # Warm up both, and size a measurement to about `seconds` from the slower engine's pace.
    pace = min(images_per_second(f, batch, 3) for f in (with_torch, with_onnx))
    iterations = max(3, math.ceil(seconds * pace / batch))
    cell = Cell(threads, batch)
    for index in range(rounds):
        engines = [("torch", with_torch), ("onnx", with_onnx)]
        for name, forward in engines if index % 2 == 0 else engines[::-1]:
            rate = images_per_second(forward, batch, iterations)
            (cell.torch_rates if name == "torch" else cell.onnx_rates).append(rate)
    print(
        f"  {threads} thread(s), batch {batch}: torch {statistics.median(cell.torch_rates):,.1f} "
        f"images/s, onnxruntime {statistics.median(cell.onnx_rates):,.1f} images/s, "
        f"ratio {statistics.median(cell.ratios):.2f} ({iterations} forwards a measurement, "
        f"max abs difference {difference:.2g})",
        flush=True,
    )
    return cell


def verdict(cells: list[Cell]) -> str:
    """Whether onnxruntime earns a service backend: at least TARGET_RATIO at batch 32 with every
    thread count measured, since the setting would be offered whatever VAEGAN_TORCH_THREADS is
    (the service's default is torch's: one thread per core)."""
    at_32 = {c.threads: statistics.median(c.ratios) for c in cells if c.batch == 32}
    if not at_32:
        return "No batch-32 figures: no verdict on a service backend."
    figures = ", ".join(f"{ratio:.2f}x with {n}" for n, ratio in sorted(at_32.items()))
    plural = "s" if max(at_32) > 1 else ""
    if min(at_32.values()) >= TARGET_RATIO:
        return (
            f"At batch 32 onnxruntime / PyTorch is {figures} thread{plural}: at least "
            f"{TARGET_RATIO}x throughout, clearly faster."
        )
    return (
        f"At batch 32 onnxruntime / PyTorch is {figures} thread{plural}: not the "
        f"{TARGET_RATIO}x throughout that would justify a second service backend, so the "
        "service keeps PyTorch; the export is for other runtimes (Triton, onnxruntime elsewhere)."
    )


def docs_section(
    command: str,
    started: datetime.datetime,
    minutes: float,
    machine_info: dict[str, str],
    cells: list[Cell],
    rounds: int,
    seconds: float,
    busy: bool,
) -> str:
    import onnxruntime

    described = ", ".join(f"{name} {value}" for name, value in machine_info.items())
    return "\n".join(
        [
            ONNX_HEADING,
            "",
            f"Measured by `{command}` on {started:%Y-%m-%d} in {minutes:.1f} minutes, commit "
            f"{git_revision()}, on: {described}; onnxruntime {onnxruntime.__version__}.",
            "",
            "The bundled demo model (medium64) exported by `vaegan-train export`'s code, "
            "against PyTorch as the service runs it (channels-last, inference mode): images -> "
            "encoder -> mu -> decoder -> images, the same intra-op thread count for both. "
            f"Images/s are medians of {rounds} rounds of about {seconds:g} s per engine, the "
            "engines alternating; the ratio (onnxruntime / PyTorch) is taken within each round, "
            "then its median, with the rounds listed.",
            "",
            "| threads | batch | PyTorch images/s | onnxruntime images/s | ratio | rounds |",
            "|---:|---:|---:|---:|---:|---|",
            *(cell.row() for cell in cells),
            "",
            verdict(cells),
            "",
            *([busy_note(machine_info), ""] if busy else []),
        ]
    )


def machine_is_busy() -> bool:
    """The harness's rule for its warning: a load average above half the cores. Asked before
    the benchmark starts, whose own threads would count otherwise."""
    return hasattr(os, "getloadavg") and os.getloadavg()[0] > 0.5 * (os.cpu_count() or 1)


def busy_note(machine_info: dict[str, str]) -> str:
    return (
        "**Busy machine, to be re-measured**: other work was running (load average "
        f"{machine_info.get('load average', '?')} at the start on "
        f"{machine_info.get('cores', '?')} cores), so every figure is pessimistic, "
        "PyTorch's with more than one thread most (its OpenMP threads spin against the other "
        "work); the ratios above are no verdict."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--rounds", type=int, default=7, help="measurements per engine and cell")
    parser.add_argument(
        "--seconds", type=float, default=1.0, help="about how long one measurement takes"
    )
    parser.add_argument(
        "--write-docs",
        action="store_true",
        help=f"replace (or add) the section '{ONNX_HEADING}' of docs/benchmarks.md",
    )
    parser.add_argument("--docs", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args(argv)

    command = shlex.join(["python", "benchmarks/onnx_vs_torch.py", *(argv or sys.argv[1:])])
    started = datetime.datetime.now()
    clock = time.monotonic()
    busy = machine_is_busy()
    machine_info = announce(f"onnx_vs_torch: {command}")
    checkpoint = load_checkpoint(demo_checkpoint_path())
    with tempfile.TemporaryDirectory(prefix="onnx-bench-") as tmp:
        repository = Path(tmp) / "repository"
        export_checkpoint(checkpoint, repository)
        predictor = Predictor(load_checkpoint(demo_checkpoint_path()), torch.device("cpu"))
        cells = [
            measure(predictor, repository, threads, batch, args.rounds, args.seconds)
            for threads in args.threads
            for batch in args.batch_sizes
        ]
    minutes = (time.monotonic() - clock) / 60
    print("\n| threads | batch | PyTorch images/s | onnxruntime images/s | ratio | rounds |")
    print("\n".join(cell.row() for cell in cells))
    print(verdict(cells))
    if args.write_docs:
        section = docs_section(
            command, started, minutes, machine_info, cells, args.rounds, args.seconds, busy
        )
        write_docs_section(args.docs, ONNX_HEADING, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
