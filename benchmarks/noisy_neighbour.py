"""The service and `fit` beside a noisy neighbour: a process that keeps one core busy.

On a shared machine (a CI runner, a Kubernetes node without CPU limits, a laptop) something else
is often running. Torch's OpenMP threads spin-wait for each other; when one of them is
descheduled for the neighbour, the others burn their cores waiting. The service sizes itself
to avoid that (one torch thread per worker process: service/sizing.py); this measures what is
left, quiet and beside the neighbour, for

- the service: `POST /reconstruct` at concurrency 32 (req/s and p99), with its defaults and as it
  was before worker processes (one process, torch threads = cores);
- `fit`: seconds per medium64 training step at batch 64 (benchmarks/step_time.py) on all the
  cores with libgomp's own waiting (spin, then sleep: `fit`'s default), with passive waiting
  (OMP_WAIT_POLICY=PASSIVE), and on one thread.

Target: beside the neighbour, each keeps >= 45% of its quiet throughput (losing one core of two
costs 50%; worse than that is the collapse). Run on a quiet machine:

    python benchmarks/noisy_neighbour.py [--write-docs]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Lets the script run from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness import (
    NEIGHBOUR_HEADING,
    ROOT,
    announce,
    face_jpeg,
    measured_by,
    percentile,
    write_docs_section,
)
from benchmarks.peers_compare import Cell, Peer, Running, drive
from model.demo import demo_checkpoint_path

TARGET = 0.45


@contextmanager
def neighbour(busy: bool) -> Iterator[None]:
    """A process spinning on one core, for as long as the block runs."""
    if not busy:
        yield
        return
    process = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        yield
    finally:
        process.kill()
        process.wait()


def serve(peer: Peer, busy: bool, requests: int, tmp: Path) -> Cell:
    cell = Cell(peer.name, 32)
    with neighbour(busy):
        running = Running(peer, demo_checkpoint_path(), tmp / "server.log")
        try:
            upload = face_jpeg()
            asyncio.run(drive(running.url, upload, 32, 64))  # warm-up
            seconds, latencies = asyncio.run(drive(running.url, upload, 32, requests))
        finally:
            running.stop()
    cell.rps.append(requests / seconds)
    cell.p99_ms.append(percentile(latencies, 99))
    return cell


def fit_step_s(env: dict[str, str], busy: bool, steps: int) -> float:
    command = [sys.executable, str(ROOT / "benchmarks" / "step_time.py"), "--presets", "medium64"]
    command += ["--steps", str(steps)]
    with neighbour(busy):
        base = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
        output = subprocess.run(
            command, env=base | env, capture_output=True, text=True, check=True
        ).stdout
    match = re.search(r"medium64\s+\S+\s+([0-9.]+) s/step", output)
    if match is None:
        raise RuntimeError(f"no step time in:\n{output}")
    return float(match.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=800, help="per server measurement")
    parser.add_argument("--steps", type=int, default=6, help="timed fit steps per measurement")
    parser.add_argument("--write-docs", action="store_true")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args(argv)
    command = shlex.join(["python", "benchmarks/noisy_neighbour.py", *(argv or sys.argv[1:])])
    started, clock = datetime.datetime.now(), time.monotonic()
    machine_info = announce(f"noisy_neighbour: {command}")
    cores = len(os.sched_getaffinity(0))
    service = [sys.executable, "-m", "service", "--checkpoint", "{checkpoint}", "--port", "{port}"]
    service += ["--device", "cpu", "--log-level", "warning"]
    servers = [
        Peer("vaegan (defaults)", service, {}, "/health/ready"),
        Peer(
            f"one process, {cores} torch threads (before workers)",
            service,
            {"VAEGAN_WORKERS": "1", "VAEGAN_TORCH_THREADS": str(cores)},
            "/health/ready",
        ),
    ]
    rows = []
    with tempfile.TemporaryDirectory(prefix="neighbour-") as tmp:
        for peer in servers:
            quiet = serve(peer, False, args.requests, Path(tmp))
            busy = serve(peer, True, args.requests, Path(tmp))
            ratio = busy.median("rps") / quiet.median("rps")
            rows.append(
                f"| service: {peer.name} | {quiet.median('rps'):.0f} req/s (p99 "
                f"{quiet.median('p99_ms'):.0f} ms) | {busy.median('rps'):.0f} req/s (p99 "
                f"{busy.median('p99_ms'):.0f} ms) | {ratio:.0%} | "
                f"{'met' if ratio >= TARGET else 'MISSED'} |"
            )
            print(rows[-1], flush=True)
    fits = [
        (f"`fit`, {cores} threads (the default)", {"OMP_NUM_THREADS": str(cores)}),
        (
            f"`fit`, {cores} threads, OMP_WAIT_POLICY=PASSIVE",
            {"OMP_NUM_THREADS": str(cores), "OMP_WAIT_POLICY": "PASSIVE"},
        ),
        ("`fit --threads 1`", {"OMP_NUM_THREADS": "1"}),
    ]
    for name, env in fits:
        quiet_s = fit_step_s(env, False, args.steps)
        busy_s = fit_step_s(env, True, args.steps)
        ratio = quiet_s / busy_s
        rows.append(
            f"| {name} | {quiet_s:.2f} s/step | {busy_s:.2f} s/step | {ratio:.0%} | "
            f"{'met' if ratio >= TARGET else 'MISSED'} |"
        )
        print(rows[-1], flush=True)
    table = "\n".join(
        [
            "| what | quiet | beside the neighbour | kept | target >= 45% |",
            "|---|---:|---:|---:|---|",
            *rows,
        ]
    )
    print("\n" + table)
    if args.write_docs:
        minutes = (time.monotonic() - clock) / 60
        section = "\n".join(
            [
                NEIGHBOUR_HEADING,
                "",
                measured_by(command, started, minutes, machine_info),
                "",
                "The neighbour is `python -c 'while True: pass'`: one core kept busy. The "
                "service answers `POST /reconstruct` at concurrency 32 (the bundled model); "
                "`fit` is one medium64 VAE-GAN step at batch 64 (benchmarks/step_time.py). "
                "'Kept' is throughput beside the neighbour over quiet throughput.",
                "",
                table,
                "",
            ]
        )
        write_docs_section(args.docs, NEIGHBOUR_HEADING, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
