"""Load test of the inference service: throughput and latency under concurrency, batching on/off.

Run from the repository root (nothing else heavy should be running: check `uptime` first)::

    python benchmarks/serve_load.py                    # concurrency 1 4 16 32 64, both endpoints
    python benchmarks/serve_load.py --quick            # fewer requests, for a smoke run
    python benchmarks/serve_load.py --concurrency 1 4 16 --endpoints reconstruct
    python benchmarks/serve_load.py --checkpoint path/to/model.safetensors

The server runs as a subprocess (`python -m service`), so it has its own interpreter and GIL and
the client's work does not hide inside the server's timings; it is restarted for each mode:

* batching on:  the default settings (max_batch_size 32, max_batch_delay_ms 5)
* batching off: max_batch_size 1, max_batch_delay_ms 0

Each (mode, endpoint, concurrency) cell keeps `concurrency` requests in flight, one worker per
request slot, each with its own `AsyncVAEGANClient` reused for all its requests, for
max(200, 20 * concurrency) requests after a warm-up. Endpoints:
`reconstruct` uploads one 178x218 synthetic-face JPEG; `sample` asks for one face (`n=1`).

The "bare" figures are the same work without HTTP, in this process, with no server running,
measured before and after the sweep (the better figure counts):
(a) reconstruct throughput at batch 32: JPEG decode + preprocess per image, one forward, one PNG
per image; (b) the same for a single image. The script ends with three target checks:

* batching on / off req/s at concurrency 32, reconstruct      target >= 3x
* concurrency-1 p50 (batching on) minus bare batch-1 time      target <= 10 ms
* best batching-on req/s / bare batch-32 throughput            target >= 60 %

Besides latency, each row shows the mean batch size and the model thread's busy share over the
run (from the server's /metrics), and the CPU time the client and the server spent per request,
which says where the time goes when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Lets the script run from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import torch

from benchmarks.harness import (
    Server,
    add_server_setting_option,
    face_jpeg,
    make_checkpoint,
    percentile,
    server_settings_env,
)
from model.checkpoint import load_checkpoint
from model.codec import encode_png, load_image_tensor
from service.client import AsyncVAEGANClient
from service.predictor import Predictor

MODES: dict[str, dict[str, str]] = {
    "on": {},  # the service's defaults
    "off": {"--max-batch-size": "1", "--max-batch-delay-ms": "0"},
}
ENDPOINTS = ("reconstruct", "sample")
BARE_BATCH = 32


# --------------------------------------------------------------------------------------------
# the bare model


@dataclass
class Bare:
    batch_images_per_s: float  # (a)
    single_ms: float  # (b)
    forward_batch_ms: float
    forward_single_ms: float
    codec_ms: float  # JPEG decode + preprocess, one image
    png_ms: float  # one 64x64 PNG


def best_of(first: Bare, second: Bare) -> Bare:
    """Field by field the better figure, so a passing background load does not flatter ratios."""
    return Bare(
        batch_images_per_s=max(first.batch_images_per_s, second.batch_images_per_s),
        single_ms=min(first.single_ms, second.single_ms),
        forward_batch_ms=min(first.forward_batch_ms, second.forward_batch_ms),
        forward_single_ms=min(first.forward_single_ms, second.forward_single_ms),
        codec_ms=min(first.codec_ms, second.codec_ms),
        png_ms=min(first.png_ms, second.png_ms),
    )


def _median_ms(function: Callable[[], object], repeats: int) -> float:
    function()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def measure_bare(checkpoint: Path, upload: bytes, repeats: int) -> Bare:
    predictor = Predictor(load_checkpoint(checkpoint), torch.device("cpu"))
    predictor.warm_up(BARE_BATCH)
    prep = predictor.preprocessing

    def reconstruct(count: int) -> None:
        batch = torch.stack([load_image_tensor(upload, prep) for _ in range(count)])
        images, _ = predictor.run("reconstruct", batch)
        for image in images:
            encode_png(image)

    one = load_image_tensor(upload, prep).unsqueeze(0)
    many = one.repeat(BARE_BATCH, 1, 1, 1)
    output = predictor.run("reconstruct", one)[0][0]
    batch_ms = _median_ms(lambda: reconstruct(BARE_BATCH), max(3, repeats // 4))
    return Bare(
        batch_images_per_s=BARE_BATCH / batch_ms * 1000,
        single_ms=_median_ms(lambda: reconstruct(1), repeats),
        forward_batch_ms=_median_ms(lambda: predictor.run("reconstruct", many), repeats // 4),
        forward_single_ms=_median_ms(lambda: predictor.run("reconstruct", one), repeats),
        codec_ms=_median_ms(lambda: load_image_tensor(upload, prep), repeats),
        png_ms=_median_ms(lambda: encode_png(output), repeats),
    )


# --------------------------------------------------------------------------------------------
# the server's metrics


_METRIC = re.compile(r'^(vaegan_\w+)\{operation="(\w+)"\} ([0-9.eE+-]+)$', re.MULTILINE)


def batch_stats(metrics: str) -> dict[str, float]:
    """Cumulative sums/counts of the batch-size and forward-time histograms, by operation."""
    return {
        f"{name}/{op}": float(value)
        for name, op, value in _METRIC.findall(metrics)
        if name.endswith(("_sum", "_count"))
    }


# --------------------------------------------------------------------------------------------
# load


@dataclass
class Cell:
    mode: str
    endpoint: str
    concurrency: int
    requests: int
    seconds: float
    latencies_ms: list[float]
    mean_batch: float
    model_busy: float  # share of wall time the model thread spent in forwards
    client_cpu_ms: float  # per request
    server_cpu_ms: float  # per request

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def percentile(self, q: float) -> float:
        return percentile(self.latencies_ms, q)


async def drive(
    requests: Sequence[Callable[[], Coroutine[Any, Any, object]]], count: int
) -> tuple[float, list[float]]:
    """`count` requests, one worker per callable; (wall seconds, per-request latencies in ms)."""
    remaining = count
    latencies: list[float] = []

    async def worker(request: Callable[[], Coroutine[Any, Any, object]]) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            await request()
            latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(worker(request) for request in requests))
    return time.perf_counter() - started, latencies


def _client_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure_cell(
    server: Server,
    mode: str,
    endpoint: str,
    concurrency: int,
    count: int,
    upload: bytes,
) -> Cell:
    operation = "reconstruct" if endpoint == "reconstruct" else "decode"
    # One client (one kept-alive connection) per worker, each reused for all its requests: one
    # client shared by all workers costs O(connections) of pool bookkeeping per request in
    # httpcore (encode/httpx#3215), ~10 ms of client CPU per request at 64 in flight, which on
    # a 2-core machine starves the server and measures the client instead.
    one = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(AsyncVAEGANClient(server.url, limits=one))
            for _ in range(concurrency)
        ]

        def caller(client: AsyncVAEGANClient) -> Callable[[], Coroutine[Any, Any, object]]:
            if endpoint == "reconstruct":
                return lambda: client.reconstruct(upload)
            return lambda: client.sample(n=1)

        calls = [caller(client) for client in clients]
        # Warm-up: open the connections and let the server settle at this concurrency.
        await drive(calls, max(20, 2 * concurrency))
        before = batch_stats(await clients[0].metrics())
        cpu_client, cpu_server = _client_cpu(), server.cpu_seconds()
        seconds, latencies = await drive(calls, count)
        cpu_client, cpu_server = _client_cpu() - cpu_client, server.cpu_seconds() - cpu_server
        after = batch_stats(await clients[0].metrics())

    def delta(key: str) -> float:
        return after.get(key, 0.0) - before.get(key, 0.0)

    batches = delta(f"vaegan_batch_size_count/{operation}")
    return Cell(
        mode=mode,
        endpoint=endpoint,
        concurrency=concurrency,
        requests=count,
        seconds=seconds,
        latencies_ms=latencies,
        mean_batch=delta(f"vaegan_batch_size_sum/{operation}") / batches if batches else 0.0,
        model_busy=delta(f"vaegan_forward_seconds_sum/{operation}") / seconds,
        client_cpu_ms=cpu_client / count * 1000,
        server_cpu_ms=cpu_server / count * 1000,
    )


def request_count(concurrency: int, quick: bool) -> int:
    return max(50, 5 * concurrency) if quick else max(200, 20 * concurrency)


# --------------------------------------------------------------------------------------------
# report


def print_table(cells: Sequence[Cell]) -> None:
    print(
        "| mode | endpoint | concurrency | req/s | p50 ms | p95 ms | p99 ms "
        "| mean batch | model busy | client CPU ms/req | server CPU ms/req |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for cell in cells:
        print(
            f"| {cell.mode} | {cell.endpoint} | {cell.concurrency} | {cell.rps:.1f} "
            f"| {cell.percentile(50):.1f} | {cell.percentile(95):.1f} "
            f"| {cell.percentile(99):.1f} | {cell.mean_batch:.1f} | {cell.model_busy:.0%} "
            f"| {cell.client_cpu_ms:.2f} | {cell.server_cpu_ms:.2f} |"
        )


def _find(cells: Sequence[Cell], mode: str, endpoint: str, concurrency: int) -> Cell | None:
    return next(
        (c for c in cells if (c.mode, c.endpoint, c.concurrency) == (mode, endpoint, concurrency)),
        None,
    )


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def print_checks(cells: Sequence[Cell], bare: Bare, concurrencies: Sequence[int]) -> None:
    print("\nTarget checks (reconstruct):")
    high = 32 if 32 in concurrencies else max(concurrencies)
    on, off = _find(cells, "on", "reconstruct", high), _find(cells, "off", "reconstruct", high)
    if on and off:
        ratio = on.rps / off.rps
        print(
            f"- batching on / off at concurrency {high}: {on.rps:.1f} / {off.rps:.1f} req/s "
            f"= {ratio:.2f}x (target >= 3x): {_verdict(ratio >= 3)}"
        )
    on, off = _find(cells, "on", "sample", high), _find(cells, "off", "sample", high)
    if on and off:
        print(
            f"  (sample n=1 at concurrency {high}, for comparison: {on.rps:.1f} / {off.rps:.1f} "
            f"req/s = {on.rps / off.rps:.2f}x)"
        )
    for mode in ("on", "off"):
        single = _find(cells, mode, "reconstruct", 1)
        if single:
            overhead = single.percentile(50) - bare.single_ms
            note = " (target <= 10 ms)" if mode == "on" else " (for comparison)"
            verdict = f": {_verdict(overhead <= 10)}" if mode == "on" else ""
            print(
                f"- concurrency-1 p50, batching {mode}: {single.percentile(50):.1f} ms - bare "
                f"batch-1 {bare.single_ms:.1f} ms = {overhead:+.1f} ms{note}{verdict}"
            )
    batching_on = [c for c in cells if (c.mode, c.endpoint) == ("on", "reconstruct")]
    if batching_on:
        best = max(batching_on, key=lambda c: c.rps)
        share = best.rps / bare.batch_images_per_s
        print(
            f"- saturation (batching on, concurrency {best.concurrency}): {best.rps:.1f} req/s / "
            f"bare {bare.batch_images_per_s:.1f} images/s = {share:.0%} (target >= 60%): "
            f"{_verdict(share >= 0.6)}"
        )


def print_bare(bare: Bare, when: str) -> None:
    print(f"\nBare model, this process, no HTTP (medians, {when}):")
    print(
        f"- (a) reconstruct at batch {BARE_BATCH}: {bare.batch_images_per_s:.1f} images/s "
        f"(forward {bare.forward_batch_ms:.1f} ms per batch)"
    )
    print(
        f"- (b) reconstruct at batch 1: {bare.single_ms:.2f} ms per request "
        f"(forward {bare.forward_single_ms:.2f} ms)"
    )
    print(
        f"- per image: JPEG decode + preprocess {bare.codec_ms:.2f} ms, "
        f"PNG encode {bare.png_ms:.2f} ms"
    )


# --------------------------------------------------------------------------------------------


@dataclass
class Sweep:
    cells: list[Cell]
    bare: Bare  # the better of before and after the sweep


def run_sweep(
    checkpoint: Path,
    work_dir: Path,
    *,
    modes: Sequence[str] = tuple(MODES),
    endpoints: Sequence[str] = ENDPOINTS,
    concurrencies: Sequence[int] = (1, 4, 16, 32, 64),
    quick: bool = False,
    server_env: dict[str, str] | None = None,
) -> Sweep:
    """The bare model, then every (mode, endpoint, concurrency) cell, then the bare model again;
    progress lines as it goes. Server logs go to `work_dir`."""
    upload = face_jpeg()
    repeats = 20 if quick else 60
    bare = measure_bare(checkpoint, upload, repeats)
    print_bare(bare, "before the sweep")
    cells: list[Cell] = []
    for mode in modes:
        server = Server(checkpoint, MODES[mode], work_dir / f"server-{mode}.log", server_env or {})
        try:
            server.wait_ready()
            for endpoint in endpoints:
                for concurrency in concurrencies:
                    count = request_count(concurrency, quick)
                    cell = asyncio.run(
                        measure_cell(server, mode, endpoint, concurrency, count, upload)
                    )
                    cells.append(cell)
                    print(
                        f"  batching {mode:3} {endpoint:11} c={concurrency:<3} "
                        f"{cell.rps:7.1f} req/s  p50 {cell.percentile(50):6.1f} ms",
                        flush=True,
                    )
        finally:
            server.stop()
    # Again with the servers gone; the better of the two runs is the reference.
    return Sweep(cells, best_of(bare, measure_bare(checkpoint, upload, repeats)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="serve this instead of a fresh small64")
    parser.add_argument("--quick", action="store_true", help="fewer requests per cell")
    parser.add_argument(
        "--concurrency", type=int, nargs="+", default=[1, 4, 16, 32, 64], metavar="N"
    )
    parser.add_argument(
        "--endpoints", nargs="+", choices=ENDPOINTS, default=list(ENDPOINTS), metavar="NAME"
    )
    parser.add_argument(
        "--modes", nargs="+", choices=list(MODES), default=list(MODES), help="batching on/off"
    )
    add_server_setting_option(parser)
    args = parser.parse_args()
    server_env = server_settings_env(parser, args.server_setting)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(
        f"serve load: {cores} usable cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), load average {load:.2f} at start"
    )
    if load > 0.5 * (cores or 1):
        print("warning: the machine is busy; the figures below will be pessimistic")

    with tempfile.TemporaryDirectory(prefix="serve-load-") as tmp:
        checkpoint = args.checkpoint or make_checkpoint(Path(tmp))
        print(f"checkpoint {checkpoint}, upload {len(face_jpeg()):,} bytes (178x218 JPEG)")
        if server_env:
            print(f"server environment: {server_env}")
        sweep = run_sweep(
            checkpoint,
            Path(tmp),
            modes=args.modes,
            endpoints=args.endpoints,
            concurrencies=args.concurrency,
            quick=args.quick,
            server_env=server_env,
        )

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    print(f"\nload average {load:.2f} at the end (this benchmark's own load included)\n")
    print_table(sweep.cells)
    print_bare(sweep.bare, "the better of before and after the sweep")
    if "reconstruct" in args.endpoints:
        print_checks(sweep.cells, sweep.bare, args.concurrency)


if __name__ == "__main__":
    main()
