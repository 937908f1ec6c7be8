"""Every benchmark in one command, written up as docs/benchmarks.md.

Run from the repository root on an otherwise idle machine (check `uptime` first)::

    python benchmarks/run_all.py              # the full run (estimated 15-20 minutes, 2 cores)
    python benchmarks/run_all.py --quick      # a few minutes: fewer requests, steps and presets
    python benchmarks/run_all.py --checkpoint path/to/model.safetensors --out /tmp/bench.md

What it measures, each figure the median of `--repeats` runs (3, or 2 with --quick) because
shared machines are noisy; ratios are taken within each run, then their median:

1. Serving (benchmarks/serve_load.py): the concurrency sweep with batching on and off, against
   the bare model's throughput in this process without HTTP.
2. Training (benchmarks/train_throughput.py): seconds per step of this trainer against the
   naive per-network implementation, same process, same batch, alternating steps.
3. Memory and load (benchmarks/load_soak.py): a soak of mixed requests with every answer
   checked (20,000 at concurrency 64), the server's peak RSS and its growth from the first to
   the last quarter; then overload: 503 + Retry-After for what the queue cannot hold, how fast
   they come back, and recovery.
4. The machine: CPU model, cores, memory, torch version, GPU if any, load average.

The checkpoint is the bundled demo model (model/assets/demo-medium64.safetensors) unless
--checkpoint names another. Without the demo model it uses an untrained medium64 of the same
architecture (the timings depend on the architecture, not the weights) and says so in the
report. Exits 1 when a load or overload check failed.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import hashlib
import json
import os
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# Lets the script run from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness import (
    OWN_SECTIONS,
    ROOT,
    add_server_setting_option,
    announce,
    git_revision,
    make_checkpoint,
    markdown_section,
    server_settings_env,
)
from benchmarks.load_soak import (
    RSS_GROWTH_LIMIT,
    OverloadReport,
    SoakReport,
    run_overload,
    run_soak,
)
from benchmarks.serve_load import Bare, Sweep, run_sweep
from benchmarks.train_throughput import measure as measure_training
from model.checkpoint import read_checkpoint_header
from model.demo import demo_checkpoint_path

DEMO_PRESET = "medium64"


@dataclass
class Plan:
    """How much of everything to run."""

    repeats: int
    sweep_concurrency: list[int]
    sweep_quick: bool
    train_presets: list[str]
    train_batch: int
    train_steps: int
    soak_requests: int
    soak_concurrency: int
    queue_size: int
    overload_concurrency: int
    overload_requests: int
    probes: int


FULL = Plan(
    repeats=3,
    sweep_concurrency=[1, 4, 16, 32, 64],
    sweep_quick=False,
    train_presets=["small64", "medium64", "paper64"],
    train_batch=64,
    train_steps=5,
    soak_requests=20_000,
    soak_concurrency=64,
    queue_size=16,
    overload_concurrency=128,
    overload_requests=4000,
    probes=200,
)
QUICK = Plan(
    repeats=2,
    sweep_concurrency=[1, 16],
    sweep_quick=True,
    train_presets=["small64"],
    train_batch=64,
    train_steps=3,
    soak_requests=2000,
    soak_concurrency=16,
    queue_size=8,
    overload_concurrency=64,
    overload_requests=1000,
    probes=60,
)


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def spread(values: Sequence[float], fmt: str = "{:.2f}") -> str:
    """The runs behind a median, for the reader to judge the noise."""
    return ", ".join(fmt.format(v) for v in values)


def section(title: str) -> None:
    print(f"\n=== {title} ({time.strftime('%H:%M:%S')}) ===", flush=True)


# --------------------------------------------------------------------------------------------
# 1. serving


@dataclass
class SweepCell:
    mode: str
    endpoint: str
    concurrency: int
    rps: list[float]
    p50_ms: list[float]
    p99_ms: list[float]
    mean_batch: list[float]


def serving(checkpoint: Path, plan: Plan, work: Path, env: dict[str, str]) -> list[Sweep]:
    sweeps = []
    for run in range(plan.repeats):
        section(f"serving sweep, run {run + 1} of {plan.repeats}")
        directory = work / f"sweep-{run}"
        directory.mkdir()
        sweeps.append(
            run_sweep(
                checkpoint,
                directory,
                concurrencies=plan.sweep_concurrency,
                quick=plan.sweep_quick,
                server_env=env,
            )
        )
    return sweeps


def sweep_cells(sweeps: Sequence[Sweep]) -> list[SweepCell]:
    cells: dict[tuple[str, str, int], SweepCell] = {}
    for sweep in sweeps:
        for cell in sweep.cells:
            key = (cell.mode, cell.endpoint, cell.concurrency)
            merged = cells.setdefault(key, SweepCell(*key, [], [], [], []))
            merged.rps.append(cell.rps)
            merged.p50_ms.append(cell.percentile(50))
            merged.p99_ms.append(cell.percentile(99))
            merged.mean_batch.append(cell.mean_batch)
    return list(cells.values())


def serving_ratios(sweeps: Sequence[Sweep], concurrencies: Sequence[int]) -> list[str]:
    """The sweep's headline ratios, each computed within a run, as report lines."""
    lines = []
    high = 32 if 32 in concurrencies else max(concurrencies)

    def per_run(figure: Callable[[Sweep], float | None]) -> list[float]:
        return [value for value in map(figure, sweeps) if value is not None]

    def rps(sweep: Sweep, mode: str, endpoint: str, c: int) -> float | None:
        key = (mode, endpoint, c)
        found = [x for x in sweep.cells if (x.mode, x.endpoint, x.concurrency) == key]
        return found[0].rps if found else None

    for endpoint in ("reconstruct", "sample"):

        def on_off(sweep: Sweep, endpoint: str = endpoint) -> float | None:
            on, off = rps(sweep, "on", endpoint, high), rps(sweep, "off", endpoint, high)
            return on / off if on and off else None

        ratios = per_run(on_off)
        if ratios:
            target = "target >= 3x" if endpoint == "reconstruct" else "for comparison"
            lines.append(
                f"- batching on / off, {endpoint} at concurrency {high}: "
                f"**{median(ratios):.2f}x** (runs: {spread(ratios)}; {target})"
            )

    def saturation(sweep: Sweep) -> float | None:
        on = [x.rps for x in sweep.cells if (x.mode, x.endpoint) == ("on", "reconstruct")]
        return max(on) / sweep.bare.batch_images_per_s if on else None

    shares = per_run(saturation)
    if shares:
        lines.append(
            f"- best batching-on reconstruct req/s / bare model images/s at batch 32: "
            f"**{median(shares):.0%}** (runs: {spread(shares, '{:.0%}')}; target >= 60%)"
        )

    def overhead(sweep: Sweep) -> float | None:
        single = [
            x
            for x in sweep.cells
            if (x.mode, x.endpoint, x.concurrency) == ("on", "reconstruct", 1)
        ]
        return single[0].percentile(50) - sweep.bare.single_ms if single else None

    extra = per_run(overhead)
    if extra:
        lines.append(
            f"- HTTP overhead of a lone reconstruct (concurrency-1 p50 minus the bare batch-1 "
            f"time): **{median(extra):+.1f} ms** (runs: {spread(extra, '{:+.1f}')}; "
            "target <= 10 ms)"
        )
    return lines


def bare_median(sweeps: Sequence[Sweep]) -> Bare:
    fields = Bare.__dataclass_fields__
    return Bare(**{name: median([getattr(s.bare, name) for s in sweeps]) for name in fields})


# --------------------------------------------------------------------------------------------
# 2. training


@dataclass
class TrainingFigures:
    preset: str
    batch: int
    trainer_s: list[float]  # median seconds per step, one per run
    naive_s: list[float]

    @property
    def speedups(self) -> list[float]:
        return [n / t for t, n in zip(self.trainer_s, self.naive_s, strict=True)]


def training(plan: Plan, work: Path) -> list[TrainingFigures]:
    figures = []
    for preset in plan.train_presets:
        result = TrainingFigures(preset, plan.train_batch, [], [])
        for run in range(plan.repeats):
            ours, naive = measure_training(preset, plan.train_batch, plan.train_steps, work)
            result.trainer_s.append(ours)
            result.naive_s.append(naive)
            print(
                f"  {preset} run {run + 1}: trainer {ours:.3f} s/step, naive {naive:.3f} s/step, "
                f"speed-up {naive / ours:.2f}x",
                flush=True,
            )
        figures.append(result)
    return figures


# --------------------------------------------------------------------------------------------
# 3. memory, soak and overload


def soaks(checkpoint: Path, plan: Plan, work: Path, env: dict[str, str]) -> list[SoakReport]:
    reports = []
    for run in range(plan.repeats):
        section(f"soak, run {run + 1} of {plan.repeats}")
        directory = work / f"soak-{run}"
        directory.mkdir()
        reports.append(
            run_soak(
                checkpoint,
                directory,
                requests=plan.soak_requests,
                concurrency=plan.soak_concurrency,
                server_env=env,
            )
        )
    return reports


def overloads(
    checkpoint: Path, plan: Plan, work: Path, env: dict[str, str]
) -> list[OverloadReport]:
    reports = []
    for run in range(plan.repeats):
        section(f"overload, run {run + 1} of {plan.repeats}")
        directory = work / f"overload-{run}"
        directory.mkdir()
        reports.append(
            run_overload(
                checkpoint,
                directory,
                queue_size=plan.queue_size,
                concurrency=plan.overload_concurrency,
                requests=plan.overload_requests,
                probes=plan.probes,
                server_env=env,
            )
        )
    return reports


# --------------------------------------------------------------------------------------------
# the report


def describe_checkpoint(path: Path, stand_in: bool) -> str:
    header = read_checkpoint_header(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    config = header.config
    name = path.name
    if stand_in:
        name = (
            f"an untrained {DEMO_PRESET} stand-in (the demo model "
            f"{demo_checkpoint_path().name} was not built yet; timings depend on the "
            "architecture only)"
        )
    return (
        f"{name}: {config.image_size}px, latent {config.latent_dim}, encoder "
        f"{list(config.encoder_channels)}, step {header.step:,}, sha256 {digest}..."
    )


def _ms(value: float) -> str:
    return f"{value:.1f}"


def write_report(
    out: Path,
    *,
    command: str,
    plan: Plan,
    quick: bool,
    started: datetime.datetime,
    minutes: float,
    machine_info: dict[str, str],
    load_after: str,
    checkpoint: str,
    server_env: dict[str, str],
    sweeps: Sequence[Sweep],
    trainings: Sequence[TrainingFigures],
    soak_reports: Sequence[SoakReport],
    overload_reports: Sequence[OverloadReport],
) -> None:
    runs = plan.repeats
    lines = [
        "# Benchmarks",
        "",
        f"Measured by `{command}` on {started:%Y-%m-%d} in {minutes:.1f} minutes"
        f"{' (the --quick run: fewer requests, steps and presets)' if quick else ''}, commit "
        f"{git_revision()}. Every figure is the median of {runs} runs, since shared machines "
        "are noisy; ratios are taken within each run, then their median, with the runs "
        "listed. Rerun the command to reproduce them.",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        *[f"| {name} | {value} |" for name, value in machine_info.items()],
        f"| load average at the end | {load_after} (this benchmark's own load included) |",
        "",
        f"Served checkpoint: {checkpoint}.",
        "",
        "Service settings beyond the defaults: "
        + (", ".join(f"`{k}={v}`" for k, v in server_env.items()) or "none")
        + ".",
        "",
        "## Serving: concurrency sweep, batching on and off",
        "",
        "A real uvicorn (`python -m service`) in a subprocess; the client on the same machine, "
        "one kept-alive connection per request in flight. Batching on: the service defaults "
        "(max_batch_size 32, max_batch_delay_ms 5); off: max_batch_size 1. `reconstruct` "
        "uploads a 178x218 JPEG; `sample` asks for one face.",
        "",
        "| batching | endpoint | concurrency | req/s | p50 ms | p99 ms | mean batch |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for cell in sweep_cells(sweeps):
        lines.append(
            f"| {cell.mode} | {cell.endpoint} | {cell.concurrency} | {median(cell.rps):.1f} "
            f"| {_ms(median(cell.p50_ms))} | {_ms(median(cell.p99_ms))} "
            f"| {median(cell.mean_batch):.1f} |"
        )
    bare = bare_median(sweeps)
    lines += [
        "",
        f"The bare model (this process, no HTTP, the better of before and after each sweep): "
        f"reconstruct at batch 32 **{bare.batch_images_per_s:.0f} images/s** (JPEG decode, "
        f"forward, PNG); one image {bare.single_ms:.2f} ms (forward {bare.forward_single_ms:.2f} "
        f"ms, decode + preprocess {bare.codec_ms:.2f} ms, PNG {bare.png_ms:.2f} ms).",
        "",
        *serving_ratios(sweeps, plan.sweep_concurrency),
        "",
        "## Training throughput against the naive baseline",
        "",
        "This trainer (one forward pass, three backward passes restricted to each network) "
        "against the naive step public ports use (one forward and backward pass per network), "
        f"same process, batch and memory format, alternating steps; the median of "
        f"{plan.train_steps} timed steps in each run, on random images (no data loading).",
        "",
        "| preset | batch | trainer s/step | trainer img/s | naive s/step | naive img/s "
        "| speed-up | runs |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for figures in trainings:
        ours, naive = median(figures.trainer_s), median(figures.naive_s)
        lines.append(
            f"| {figures.preset} | {figures.batch} | {ours:.3f} | {figures.batch / ours:.1f} "
            f"| {naive:.3f} | {figures.batch / naive:.1f} | **{median(figures.speedups):.2f}x** "
            f"| {spread(figures.speedups)} |"
        )
    soak = soak_reports
    growth = [r.rss_growth for r in soak]
    failures = sum(r.failures for r in soak)
    lines += [
        "",
        "## Memory, soak and overload",
        "",
        f"Soak: {plan.soak_requests:,} mixed requests (reconstruct, sample, attribute-edit, "
        f"encode, in turn) at concurrency {plan.soak_concurrency} against a server with the "
        "default settings, every answer checked (200; a PNG of the right size within 2 levels "
        "of the idle server's answer to the same input; sample bytes equal to the reference for "
        "its seed; encode JSON of the right shape within 1e-3). Resident memory (VmRSS) sampled "
        "every 0.25 s; growth is the median of the last quarter of the run over that of the "
        "first.",
        "",
        "| figure | median | runs |",
        "|---|---:|---|",
        f"| throughput, req/s | {median([r.throughput for r in soak]):.1f} "
        f"| {spread([r.throughput for r in soak], '{:.1f}')} |",
        f"| p50 latency, ms | {median([r.overall.p50_ms for r in soak]):.1f} "
        f"| {spread([r.overall.p50_ms for r in soak], '{:.1f}')} |",
        f"| p99 latency, ms | {median([r.overall.p99_ms for r in soak]):.1f} "
        f"| {spread([r.overall.p99_ms for r in soak], '{:.1f}')} |",
        f"| failed or wrong answers | {failures} (all runs) | |",
        f"| peak RSS of the server (VmHWM), MiB | {median([r.peak_rss_mib for r in soak]):.0f} "
        f"| {spread([r.peak_rss_mib for r in soak], '{:.0f}')} |",
        f"| RSS, first quarter, MiB | {median([r.rss_first_quarter_mib for r in soak]):.0f} "
        f"| {spread([r.rss_first_quarter_mib for r in soak], '{:.0f}')} |",
        f"| RSS growth, first to last quarter | **{median(growth):+.1%}** "
        f"| {spread(growth, '{:+.1%}')} (target < {RSS_GROWTH_LIMIT:.0%}) |",
    ]
    by_kind = {kind: [r.by_kind[kind].p99_ms for r in soak] for kind in soak[0].by_kind}
    lines.append(
        "| p99 by kind, ms | "
        + ", ".join(f"{kind} {median(values):.1f}" for kind, values in by_kind.items())
        + " | |"
    )
    over = overload_reports
    first = over[0]
    lines += [
        "",
        f"Overload: a server whose queue holds {first.queue_size} images "
        f"(`VAEGAN_MAX_QUEUE={first.queue_size}`), {first.requests:,} of the same mixed "
        f"requests from {first.concurrency} clients, each resending at once when refused.",
        "",
        "| figure | median | runs |",
        "|---|---:|---|",
        f"| answered (200, correct) | {median([r.accepted for r in over]):.0f} "
        f"| {spread([r.accepted for r in over], '{:.0f}')} |",
        f"| refused (503 with Retry-After) | {median([r.rejected for r in over]):.0f} "
        f"| {spread([r.rejected for r in over], '{:.0f}')} |",
        f"| wrong answers, other statuses, 503 without Retry-After | "
        f"{sum(r.failures for r in over)} (all runs) | |",
        f"| 503 latency, median, ms | **{median([r.rejected_p50_ms for r in over]):.1f}** "
        f"| {spread([r.rejected_p50_ms for r in over], '{:.1f}')} |",
        f"| 503 latency, p99, ms | {median([r.rejected_p99_ms for r in over]):.1f} "
        f"| {spread([r.rejected_p99_ms for r in over], '{:.1f}')} |",
        f"| accepted latency, p50 / p99, ms | {median([r.accepted_p50_ms for r in over]):.1f} / "
        f"{median([r.accepted_p99_ms for r in over]):.1f} | |",
        f"| concurrency-1 p50 before / after the burst, ms | "
        f"{median([r.before_p50_ms for r in over]):.1f} / "
        f"{median([r.after_p50_ms for r in over]):.1f} "
        f"| after/before {spread([r.recovery_ratio for r in over])} |",
        f"| recovered (after <= 1.5x before + 5 ms, no failures) | "
        f"{sum(r.recovered() for r in over)} of {len(over)} runs | |",
    ]
    kinds = list(first.rejected_p50_by_kind_ms)
    lines += [
        "",
        "503 median latency by kind, ms (a 503 waits its turn for the two cores like any request): "
        + ", ".join(
            f"{kind} {median([r.rejected_p50_by_kind_ms[kind] for r in over]):.1f}"
            for kind in kinds
        )
        + ".",
        "",
        "## Reproducing",
        "",
        "```bash",
        command,
        "python benchmarks/serve_load.py      # the sweep alone, with CPU time per request",
        "python benchmarks/train_throughput.py",
        "python benchmarks/load_soak.py       # soak and overload alone; exits 1 on a failed check",
        "python benchmarks/attacks.py --write-docs  # the sections below (kept by run_all.py)",
        "python benchmarks/onnx_vs_torch.py --write-docs",
        "```",
        "",
    ]
    # The attack and ONNX benchmarks' sections are their own runs': keep them rather than lose
    # them.
    previous = out.read_text() if out.is_file() else ""
    for heading in OWN_SECTIONS:
        kept = markdown_section(previous, heading)
        if kept is not None:
            lines += [kept]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))


# --------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few minutes, fewer of everything")
    parser.add_argument("--checkpoint", type=Path, help="default: the bundled demo model")
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "docs" / "benchmarks.md",
        help="where the report goes (default docs/benchmarks.md)",
    )
    parser.add_argument("--json", type=Path, help="also write every figure here")
    add_server_setting_option(parser)
    sizes = parser.add_argument_group("sizes (override --quick or the full run's)")
    sizes.add_argument("--repeats", type=int, metavar="N")
    sizes.add_argument("--sweep-concurrency", type=int, nargs="+", metavar="N")
    sizes.add_argument("--train-presets", nargs="+", metavar="PRESET")
    sizes.add_argument("--train-batch-size", type=int, metavar="N")
    sizes.add_argument("--train-steps", type=int, metavar="N")
    sizes.add_argument("--soak-requests", type=int, metavar="N")
    sizes.add_argument("--soak-concurrency", type=int, metavar="N")
    sizes.add_argument("--queue-size", type=int, metavar="N")
    sizes.add_argument("--overload-concurrency", type=int, metavar="N")
    sizes.add_argument("--overload-requests", type=int, metavar="N")
    sizes.add_argument("--probes", type=int, metavar="N", help="concurrency-1 requests")
    args = parser.parse_args()
    env = server_settings_env(parser, args.server_setting)
    overrides = {
        "repeats": args.repeats,
        "sweep_concurrency": args.sweep_concurrency,
        "train_presets": args.train_presets,
        "train_batch": args.train_batch_size,
        "train_steps": args.train_steps,
        "soak_requests": args.soak_requests,
        "soak_concurrency": args.soak_concurrency,
        "queue_size": args.queue_size,
        "overload_concurrency": args.overload_concurrency,
        "overload_requests": args.overload_requests,
        "probes": args.probes,
    }
    plan = dataclasses.replace(
        QUICK if args.quick else FULL,
        **{name: value for name, value in overrides.items() if value is not None},
    )
    if plan.repeats < 1 or plan.overload_concurrency <= plan.queue_size:
        parser.error("--repeats must be >= 1 and --overload-concurrency above --queue-size")

    command = shlex.join(["python", "benchmarks/run_all.py", *sys.argv[1:]])
    started = datetime.datetime.now()
    clock = time.monotonic()
    machine_info = announce(f"run_all: {command}")

    with tempfile.TemporaryDirectory(prefix="run-all-") as tmp:
        work = Path(tmp)
        stand_in = False
        checkpoint = args.checkpoint or demo_checkpoint_path()
        if args.checkpoint is None and not checkpoint.is_file():
            print(f"warning: {checkpoint} does not exist yet; using an untrained {DEMO_PRESET}")
            checkpoint, stand_in = make_checkpoint(work, DEMO_PRESET), True
        described = describe_checkpoint(checkpoint, stand_in)
        print(f"checkpoint: {described}")

        sweeps = serving(checkpoint, plan, work, env)
        section("training throughput")
        train_dir = work / "train"
        train_dir.mkdir()
        trainings = training(plan, train_dir)
        soak_reports = soaks(checkpoint, plan, work, env)
        overload_reports = overloads(checkpoint, plan, work, env)

    minutes = (time.monotonic() - clock) / 60
    load_after = " ".join(f"{value:.2f}" for value in os.getloadavg())
    write_report(
        args.out,
        command=command,
        plan=plan,
        quick=args.quick,
        started=started,
        minutes=minutes,
        machine_info=machine_info,
        load_after=load_after,
        checkpoint=described,
        server_env=env,
        sweeps=sweeps,
        trainings=trainings,
        soak_reports=soak_reports,
        overload_reports=overload_reports,
    )
    if args.json:
        raw: dict[str, Any] = {
            "command": command,
            "plan": asdict(plan),
            "machine": machine_info,
            "checkpoint": described,
            "sweep": [asdict(cell) for cell in sweep_cells(sweeps)],
            "bare": [asdict(sweep.bare) for sweep in sweeps],
            "training": [asdict(t) | {"speedups": t.speedups} for t in trainings],
            "soak": [asdict(r) | {"rss_growth": r.rss_growth} for r in soak_reports],
            "overload": [asdict(r) | {"recovered": r.recovered()} for r in overload_reports],
        }
        args.json.write_text(json.dumps(raw, indent=2) + "\n")
    ok = all(r.failures == 0 and r.rss_growth < RSS_GROWTH_LIMIT for r in soak_reports) and all(
        r.failures == 0 and r.rejected > 0 and r.recovered() for r in overload_reports
    )
    print(
        f"\nwrote {args.out} in {minutes:.1f} minutes; load and overload checks: "
        f"{'all passed' if ok else 'SOME FAILED (see the report)'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
