"""Load, soak and overload of the inference service, every answer checked.

Run from the repository root (nothing else heavy should be running: check `uptime` first)::

    python benchmarks/load_soak.py                      # 20,000 requests at concurrency 64
    python benchmarks/load_soak.py --requests 2000 --concurrency 16 --overload-requests 500
    python benchmarks/load_soak.py --checkpoint model/assets/demo-medium64.safetensors
    python benchmarks/load_soak.py --phases overload --queue-size 8

The server is a real uvicorn, `python -m service` in a subprocess (its own interpreter and GIL).
The client keeps `--concurrency` requests in flight, one kept-alive connection per request slot,
cycling through four kinds: reconstruct (a 178x218 synthetic-face JPEG), sample (n=1 with a
seed), attribute-edit (the face with the model's first attribute) and encode. Before the load it
asks the idle server for the reference answer to each (kind, face or seed), one at a time; under
load every answer must be 200 and match:

* sample: the same PNG bytes as the reference (the API promises "same seed, same bytes");
* reconstruct, attribute-edit: a PNG of the model's size whose pixels are within
  PIXEL_TOLERANCE levels of the reference (batch composition may move a value across a rounding
  boundary; another face's answer is off by far more, so a row mixed up in a batch is caught);
* encode: JSON `mu` and `logvar` of shape (1, latent_dim), finite, within 1e-3 of the reference.

Soak: `--requests` requests after a warm-up; reports throughput, p50/p99 latency by kind,
failures, and the server's resident memory (VmRSS, sampled every 0.25 s) with its growth from
the first to the last quarter of the run (median of each), and its peak (VmHWM).

Overload: a second server with `VAEGAN_MAX_QUEUE=--queue-size`; `--overload-concurrency`
clients (many more than the queue holds) send `--overload-requests` requests, each resent at once
when refused. Excess requests must get 503 with Retry-After, and quickly (median and p99 of the
503s' latency); accepted requests must all be answered correctly; and afterwards the server's
latency at concurrency 1 must return to what it was before the burst.

Exits 1 when a check fails, so it can gate a release.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# Lets the script run from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import numpy as np
from PIL import Image

from benchmarks.harness import (
    Server,
    add_server_setting_option,
    face_jpeg,
    make_checkpoint,
    percentile,
    server_settings_env,
)

KINDS = ("reconstruct", "sample", "attribute-edit", "encode")
VARIANTS = 4  # faces (and seeds) the requests cycle through
PIXEL_TOLERANCE = 2  # of 255
LATENT_TOLERANCE = 1e-3
RSS_INTERVAL_S = 0.25
RSS_GROWTH_LIMIT = 0.10  # the bound for the full soak
# After an overload burst, concurrency-1 p50 within this factor (plus a few ms of timer and
# scheduling noise) of the p50 before it counts as recovered.
RECOVERY_FACTOR = 1.5
RECOVERY_SLACK_MS = 5.0


# --------------------------------------------------------------------------------------------
# the mixed workload


@dataclass(frozen=True)
class Request:
    kind: str
    variant: int  # which face, or which seed


@dataclass
class Outcome:
    """One answer: what was asked, how it went, and what was wrong with it (None: correct)."""

    kind: str
    status: int  # 0: no HTTP answer at all
    latency_ms: float
    problem: str | None = None
    retry_after: str | None = None


class Workload:
    """The request mix, the idle server's reference answers, and the checks against them."""

    def __init__(self, model: dict[str, Any], attributes: Sequence[str]) -> None:
        config = model["config"]
        self.image_size = int(config["image_size"])
        self.latent_dim = int(config["latent_dim"])
        self.faces = [face_jpeg(index) for index in range(1, VARIANTS + 1)]
        self.seeds = [1000 + index for index in range(VARIANTS)]
        self.attribute = attributes[0] if attributes else None
        # A model without attribute vectors cannot edit; the mix then leaves edits out.
        self.kinds = KINDS if self.attribute else tuple(k for k in KINDS if k != "attribute-edit")
        self.references: dict[Request, bytes] = {}
        self._reference_pixels: dict[Request, np.ndarray] = {}
        self._reference_latents: dict[Request, np.ndarray] = {}

    @classmethod
    async def for_server(cls, url: str) -> Workload:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            model = (await client.get("/model")).raise_for_status().json()
            listed = (await client.get("/attributes")).raise_for_status().json()
            workload = cls(model, [entry["name"] for entry in listed["attributes"]])
            await workload.fetch_references(client)
        if workload.indistinct():
            print(
                f"warning: this model answers different inputs alike for "
                f"{', '.join(workload.indistinct())}; an answer given to the wrong request "
                "would go unnoticed there"
            )
        return workload

    def indistinct(self) -> list[str]:
        """Kinds whose reference answers for different inputs are within the tolerance of each
        other (an untrained model's can be), so an answer swapped between requests would pass."""
        kinds = []
        for kind in self.kinds:
            if kind == "encode":
                store, tolerance = self._reference_latents, LATENT_TOLERANCE
            else:
                store, tolerance = self._reference_pixels, PIXEL_TOLERANCE
            answers = [store[Request(kind, variant)] for variant in range(VARIANTS)]
            if any(
                np.abs(answers[a] - answers[b]).max() <= tolerance
                for a in range(VARIANTS)
                for b in range(a + 1, VARIANTS)
            ):
                kinds.append(kind)
        return kinds

    def request(self, index: int) -> Request:
        kind = self.kinds[index % len(self.kinds)]
        return Request(kind, (index // len(self.kinds)) % VARIANTS)

    async def send(self, client: httpx.AsyncClient, request: Request) -> httpx.Response:
        face = ("face.jpg", self.faces[request.variant], "image/jpeg")
        if request.kind == "reconstruct":
            return await client.post("/reconstruct", files={"image": face})
        if request.kind == "sample":
            return await client.post(
                "/sample", params={"n": 1, "seed": self.seeds[request.variant]}
            )
        if request.kind == "attribute-edit":
            data = {"attribute": self.attribute or "", "strength": "1.5"}
            return await client.post("/attribute-edit", files={"image": face}, data=data)
        return await client.post("/encode", files={"image": face})

    async def fetch_references(self, client: httpx.AsyncClient) -> None:
        for kind in self.kinds:
            for variant in range(VARIANTS):
                request = Request(kind, variant)
                response = await self.send(client, request)
                if response.status_code != 200:
                    raise RuntimeError(
                        f"reference {kind} #{variant}: HTTP {response.status_code} "
                        f"{response.text[:300]}"
                    )
                self.references[request] = response.content
                if kind == "encode":
                    self._reference_latents[request] = self._latents(response.content)
                else:
                    self._reference_pixels[request] = self._pixels(response.content)

    def _pixels(self, content: bytes) -> np.ndarray:
        with Image.open(io.BytesIO(content)) as image:
            if image.format != "PNG":
                raise ValueError(f"a {image.format} image, not a PNG")
            if image.size != (self.image_size, self.image_size):
                width, height = image.size
                raise ValueError(f"{width}x{height} pixels, expected {self.image_size}")
            return np.asarray(image.convert("RGB"), dtype=np.int16)

    def _latents(self, content: bytes) -> np.ndarray:
        body = json.loads(content)
        arrays = [np.asarray(body[name], dtype=np.float64) for name in ("mu", "logvar")]
        for array in arrays:
            if array.shape != (1, self.latent_dim):
                raise ValueError(f"shape {array.shape}, expected (1, {self.latent_dim})")
            if not np.isfinite(array).all():
                raise ValueError("NaN or infinite values")
        return np.concatenate(arrays)

    def check(self, request: Request, response: httpx.Response) -> str | None:
        """What is wrong with a 200 answer, or None."""
        reference = self.references[request]
        try:
            if request.kind == "sample":
                seed = response.headers.get("x-seed")
                if seed != str(self.seeds[request.variant]):
                    return f"X-Seed {seed!r}, expected {self.seeds[request.variant]}"
                if response.content != reference:
                    difference = np.abs(
                        self._pixels(response.content) - self._reference_pixels[request]
                    ).max()
                    return f"sample bytes differ from the reference (max pixel diff {difference})"
                return None
            if request.kind == "encode":
                latents = self._latents(response.content)
                error = float(np.abs(latents - self._reference_latents[request]).max())
                if error > LATENT_TOLERANCE:
                    return f"latents {error:.2g} away from the reference"
                return None
            pixels = self._pixels(response.content)
            difference = int(np.abs(pixels - self._reference_pixels[request]).max())
            if difference > PIXEL_TOLERANCE:
                return f"pixels up to {difference} levels away from the reference"
        except (ValueError, KeyError, OSError) as exc:  # not JSON, not an image, wrong shape
            return f"malformed answer: {exc}"
        return None


# --------------------------------------------------------------------------------------------
# driving


async def _one(
    client: httpx.AsyncClient, workload: Workload, request: Request, *, busy_ok: bool
) -> Outcome:
    started = time.perf_counter()
    try:
        response = await workload.send(client, request)
    except httpx.HTTPError as exc:
        elapsed = (time.perf_counter() - started) * 1000
        return Outcome(request.kind, 0, elapsed, f"{type(exc).__name__}: {exc}")
    outcome = Outcome(
        request.kind,
        response.status_code,
        (time.perf_counter() - started) * 1000,
        retry_after=response.headers.get("retry-after"),
    )
    if response.status_code == 200:
        outcome.problem = workload.check(request, response)
    elif response.status_code == 503 and busy_ok:
        if outcome.retry_after is None or not outcome.retry_after.isdigit():
            outcome.problem = f"503 without a valid Retry-After ({outcome.retry_after!r})"
        elif not _has_detail(response):
            outcome.problem = f"503 without a JSON detail: {response.text[:200]}"
    else:
        outcome.problem = f"HTTP {response.status_code}: {response.text[:200]}"
    return outcome


def _has_detail(response: httpx.Response) -> bool:
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and bool(body.get("detail"))


async def drive(
    url: str,
    workload: Workload,
    count: int,
    concurrency: int,
    *,
    busy_ok: bool = False,
    first_index: int = 0,
    on_outcome: Callable[[Outcome], None] | None = None,
) -> tuple[float, list[Outcome]]:
    """`count` requests from `concurrency` workers; (wall seconds, outcomes in answer order).

    One client with one kept-alive connection per worker: a shared pool costs O(connections)
    of client CPU per request in httpcore (see serve_load.py), which would measure the client.
    """
    next_index = first_index
    end = first_index + count
    outcomes: list[Outcome] = []
    one = httpx.Limits(max_connections=1, max_keepalive_connections=1)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal next_index
        while next_index < end:
            request = workload.request(next_index)
            next_index += 1
            outcome = await _one(client, workload, request, busy_ok=busy_ok)
            outcomes.append(outcome)
            if on_outcome is not None:
                on_outcome(outcome)

    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(httpx.AsyncClient(base_url=url, timeout=60, limits=one))
            for _ in range(concurrency)
        ]
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for client in clients))
        return time.perf_counter() - started, outcomes


async def _sample_rss(server: Server, into: list[tuple[float, int]]) -> None:
    while True:
        rss = server.rss_kib()
        if rss is not None:
            into.append((time.perf_counter(), rss))
        await asyncio.sleep(RSS_INTERVAL_S)


# --------------------------------------------------------------------------------------------
# soak


@dataclass
class LatencySummary:
    count: int
    p50_ms: float
    p99_ms: float

    @classmethod
    def of(cls, outcomes: Sequence[Outcome]) -> LatencySummary:
        latencies = [o.latency_ms for o in outcomes]
        return cls(len(latencies), percentile(latencies, 50), percentile(latencies, 99))


@dataclass
class SoakReport:
    requests: int
    concurrency: int
    seconds: float
    overall: LatencySummary
    by_kind: dict[str, LatencySummary]
    failures: int
    failure_examples: list[str]
    rss_first_quarter_mib: float
    rss_last_quarter_mib: float
    peak_rss_mib: float
    rss_samples: int
    kinds: list[str]
    indistinct_kinds: list[str]  # see Workload.indistinct

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds

    @property
    def rss_growth(self) -> float:
        return self.rss_last_quarter_mib / self.rss_first_quarter_mib - 1


def _examples(outcomes: Sequence[Outcome], limit: int = 10) -> list[str]:
    return [f"{o.kind}: {o.problem}" for o in outcomes if o.problem][:limit]


def _progress(label: str, total: int, started: float) -> Callable[[Outcome], None]:
    """A progress line at every tenth of the run."""
    done = 0
    step = max(1, total // 10)

    def report(_: Outcome) -> None:
        nonlocal done
        done += 1
        if done % step == 0 or done == total:
            elapsed = time.perf_counter() - started
            print(f"  {label}: {done:,}/{total:,} answers, {done / elapsed:.0f} req/s", flush=True)

    return report


async def soak(
    server: Server, workload: Workload, requests: int, concurrency: int, *, warm_up: int
) -> SoakReport:
    await drive(server.url, workload, warm_up, concurrency)
    rss: list[tuple[float, int]] = []
    sampler = asyncio.create_task(_sample_rss(server, rss))
    try:
        seconds, outcomes = await drive(
            server.url,
            workload,
            requests,
            concurrency,
            first_index=warm_up,
            on_outcome=_progress("soak", requests, time.perf_counter()),
        )
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
    final = server.rss_kib()
    if final is not None:
        rss.append((time.perf_counter(), final))
    if not rss:
        raise RuntimeError("cannot read the server's memory use (/proc/PID/status)")
    start, end = rss[0][0], rss[-1][0]
    quarter = (end - start) / 4
    first = [kib for t, kib in rss if t <= start + quarter]
    last = [kib for t, kib in rss if t >= end - quarter]
    peak = server.peak_rss_kib() or max(kib for _, kib in rss)
    return SoakReport(
        requests=requests,
        concurrency=concurrency,
        seconds=seconds,
        overall=LatencySummary.of(outcomes),
        by_kind={
            kind: LatencySummary.of([o for o in outcomes if o.kind == kind])
            for kind in workload.kinds
        },
        failures=sum(o.problem is not None for o in outcomes),
        failure_examples=_examples(outcomes),
        rss_first_quarter_mib=statistics.median(first) / 1024,
        rss_last_quarter_mib=statistics.median(last) / 1024,
        peak_rss_mib=peak / 1024,
        rss_samples=len(rss),
        kinds=list(workload.kinds),
        indistinct_kinds=workload.indistinct(),
    )


def run_soak(
    checkpoint: Path,
    work_dir: Path,
    *,
    requests: int,
    concurrency: int,
    warm_up: int | None = None,
    server_env: dict[str, str] | None = None,
) -> SoakReport:
    """A server with the service's default settings, `requests` mixed requests, every answer
    checked; the server is stopped afterwards."""
    server = Server(checkpoint, {}, work_dir / "server-soak.log", server_env or {})
    try:
        server.wait_ready()
        workload = asyncio.run(Workload.for_server(server.url))
        warm = warm_up if warm_up is not None else min(1000, max(2 * concurrency, requests // 20))
        print(
            f"soak: {requests:,} requests at concurrency {concurrency} "
            f"({', '.join(workload.kinds)}), after {warm} warm-up requests",
            flush=True,
        )
        return asyncio.run(soak(server, workload, requests, concurrency, warm_up=warm))
    finally:
        server.stop()


# --------------------------------------------------------------------------------------------
# overload


@dataclass
class OverloadReport:
    queue_size: int
    concurrency: int
    requests: int
    seconds: float
    accepted: int
    rejected: int  # 503 with Retry-After
    failures: int  # wrong answers, other statuses, 503s without Retry-After, transport errors
    failure_examples: list[str]
    rejected_p50_ms: float
    rejected_p99_ms: float
    accepted_p50_ms: float
    accepted_p99_ms: float
    before_p50_ms: float  # concurrency 1, before the burst
    after_p50_ms: float  # concurrency 1, after it
    after_failures: int
    queue_rows_after: float = math.nan
    rejected_by_kind: dict[str, int] = field(default_factory=dict)
    # By kind: uploads are read (not decoded) before a full queue refuses them, samples are not.
    rejected_p50_by_kind_ms: dict[str, float] = field(default_factory=dict)

    def recovered(
        self, factor: float = RECOVERY_FACTOR, slack_ms: float = RECOVERY_SLACK_MS
    ) -> bool:
        """No failures after the burst, and p50 at concurrency 1 back near its level before."""
        bound = factor * self.before_p50_ms + slack_ms
        return self.after_failures == 0 and self.after_p50_ms <= bound

    @property
    def recovery_ratio(self) -> float:
        return self.after_p50_ms / self.before_p50_ms


async def _queue_rows(url: str) -> float:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        text = (await client.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith("vaegan_queue_rows "):
            return float(line.split()[1])
    return math.nan


async def overload(
    server: Server,
    workload: Workload,
    *,
    queue_size: int,
    concurrency: int,
    requests: int,
    probes: int,
) -> OverloadReport:
    # Warm the server up at concurrency 1, then time it there: the "normal" latency.
    await drive(server.url, workload, probes, 1)
    _, before = await drive(server.url, workload, probes, 1)
    print(f"overload: {requests:,} requests at concurrency {concurrency}", flush=True)
    seconds, burst = await drive(
        server.url,
        workload,
        requests,
        concurrency,
        busy_ok=True,
        on_outcome=_progress("overload", requests, time.perf_counter()),
    )
    # Nothing is in flight now, so the queue must be empty; then the same probes again.
    rows = await _queue_rows(server.url)
    _, after = await drive(server.url, workload, probes, 1)
    accepted = [o for o in burst if o.status == 200 and o.problem is None]
    rejected = [o for o in burst if o.status == 503 and o.problem is None]
    return OverloadReport(
        queue_size=queue_size,
        concurrency=concurrency,
        requests=requests,
        seconds=seconds,
        accepted=len(accepted),
        rejected=len(rejected),
        failures=sum(o.problem is not None for o in burst),
        failure_examples=_examples(burst) + _examples(after),
        rejected_p50_ms=percentile([o.latency_ms for o in rejected], 50),
        rejected_p99_ms=percentile([o.latency_ms for o in rejected], 99),
        accepted_p50_ms=percentile([o.latency_ms for o in accepted], 50),
        accepted_p99_ms=percentile([o.latency_ms for o in accepted], 99),
        before_p50_ms=percentile([o.latency_ms for o in before], 50),
        after_p50_ms=percentile([o.latency_ms for o in after], 50),
        after_failures=sum(o.problem is not None for o in after),
        queue_rows_after=rows,
        rejected_by_kind={k: sum(o.kind == k for o in rejected) for k in workload.kinds},
        rejected_p50_by_kind_ms={
            k: percentile([o.latency_ms for o in rejected if o.kind == k], 50)
            for k in workload.kinds
        },
    )


def run_overload(
    checkpoint: Path,
    work_dir: Path,
    *,
    queue_size: int,
    concurrency: int,
    requests: int,
    probes: int = 100,
    server_env: dict[str, str] | None = None,
) -> OverloadReport:
    """A server whose queue holds `queue_size` images, driven at `concurrency`; stopped after."""
    env = (server_env or {}) | {"VAEGAN_MAX_QUEUE": str(queue_size)}
    server = Server(checkpoint, {}, work_dir / "server-overload.log", env)
    try:
        server.wait_ready()
        workload = asyncio.run(Workload.for_server(server.url))
        return asyncio.run(
            overload(
                server,
                workload,
                queue_size=queue_size,
                concurrency=concurrency,
                requests=requests,
                probes=probes,
            )
        )
    finally:
        server.stop()


# --------------------------------------------------------------------------------------------
# report


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def print_soak(report: SoakReport) -> list[bool]:
    """The soak's figures and checks; returns the checks' results."""
    print(
        f"\nSoak: {report.requests:,} requests at concurrency {report.concurrency} in "
        f"{report.seconds:.1f} s = {report.throughput:.1f} req/s; "
        f"p50 {report.overall.p50_ms:.1f} ms, p99 {report.overall.p99_ms:.1f} ms"
    )
    print("| kind | requests | p50 ms | p99 ms |\n|---|---:|---:|---:|")
    for kind, summary in report.by_kind.items():
        print(f"| {kind} | {summary.count:,} | {summary.p50_ms:.1f} | {summary.p99_ms:.1f} |")
    print(
        f"server RSS: {report.rss_first_quarter_mib:.1f} MiB (first quarter, median) -> "
        f"{report.rss_last_quarter_mib:.1f} MiB (last quarter) = {report.rss_growth:+.1%}; "
        f"peak {report.peak_rss_mib:.1f} MiB ({report.rss_samples} samples)"
    )
    checks = [
        report.failures == 0,
        report.rss_growth < RSS_GROWTH_LIMIT,
    ]
    print(f"- failed or wrong answers: {report.failures} (target 0): {_verdict(checks[0])}")
    for example in report.failure_examples:
        print(f"    {example}")
    print(
        f"- RSS growth first -> last quarter: {report.rss_growth:+.1%} "
        f"(target < {RSS_GROWTH_LIMIT:.0%}): {_verdict(checks[1])}"
    )
    return checks


def print_overload(report: OverloadReport) -> list[bool]:
    print(
        f"\nOverload: queue of {report.queue_size} images, {report.requests:,} requests at "
        f"concurrency {report.concurrency} in {report.seconds:.1f} s: {report.accepted:,} "
        f"answered, {report.rejected:,} refused with 503 ({report.rejected_by_kind})"
    )
    print(
        f"503 latency: median {report.rejected_p50_ms:.1f} ms, p99 {report.rejected_p99_ms:.1f} "
        f"ms; accepted: p50 {report.accepted_p50_ms:.1f} ms, p99 {report.accepted_p99_ms:.1f} ms"
    )
    by_kind = ", ".join(f"{k} {v:.1f}" for k, v in report.rejected_p50_by_kind_ms.items())
    print(f"503 median latency by kind (ms): {by_kind}")
    checks = [report.rejected > 0, report.failures == 0, report.recovered()]
    print(f"- the burst overflowed the queue: {_verdict(checks[0])}")
    print(
        f"- wrong answers, other statuses or 503s without Retry-After: {report.failures} "
        f"(target 0): {_verdict(checks[1])}"
    )
    for example in report.failure_examples:
        print(f"    {example}")
    print(
        f"- concurrency-1 p50 before / after the burst: {report.before_p50_ms:.1f} / "
        f"{report.after_p50_ms:.1f} ms (target after <= {RECOVERY_FACTOR}x before "
        f"+ {RECOVERY_SLACK_MS:g} ms, no failures; queue rows after: "
        f"{report.queue_rows_after:g}): {_verdict(checks[2])}"
    )
    return checks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="serve this instead of a fresh small64")
    parser.add_argument("--requests", type=int, default=20_000, help="soak requests")
    parser.add_argument("--concurrency", type=int, default=64, help="soak concurrency")
    parser.add_argument("--queue-size", type=int, default=16, help="VAEGAN_MAX_QUEUE, overload")
    parser.add_argument("--overload-concurrency", type=int, default=128)
    parser.add_argument("--overload-requests", type=int, default=4000)
    parser.add_argument("--probes", type=int, default=200, help="concurrency-1 requests")
    parser.add_argument(
        "--phases", nargs="+", choices=["soak", "overload"], default=["soak", "overload"]
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    add_server_setting_option(parser)
    args = parser.parse_args()
    server_env = server_settings_env(parser, args.server_setting)
    if args.overload_concurrency <= args.queue_size:
        parser.error("--overload-concurrency must exceed --queue-size to overload the queue")

    checks: list[bool] = []
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="load-soak-") as tmp:
        checkpoint = args.checkpoint or make_checkpoint(Path(tmp))
        print(f"checkpoint {checkpoint}; server environment {server_env or 'default'}")
        if "soak" in args.phases:
            soak_report = run_soak(
                checkpoint,
                Path(tmp),
                requests=args.requests,
                concurrency=args.concurrency,
                server_env=server_env,
            )
            checks += print_soak(soak_report)
            figures["soak"] = asdict(soak_report) | {
                "throughput": soak_report.throughput,
                "rss_growth": soak_report.rss_growth,
            }
        if "overload" in args.phases:
            overload_report = run_overload(
                checkpoint,
                Path(tmp),
                queue_size=args.queue_size,
                concurrency=args.overload_concurrency,
                requests=args.overload_requests,
                probes=args.probes,
                server_env=server_env,
            )
            checks += print_overload(overload_report)
            figures["overload"] = asdict(overload_report) | {"recovered": overload_report.recovered}
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"\n{'all checks passed' if all(checks) else 'SOME CHECKS FAILED'}")
    return 0 if all(checks) else 1


if __name__ == "__main__":
    sys.exit(main())
