"""Our service against the servers its users would otherwise pick, on the same model and machine.

LitServe (1 and 2 inference workers, its throughput settings: benchmarks/peers/litserve_app.py),
a plain FastAPI app (one process, and `uvicorn --workers 2`: benchmarks/peers/plain_fastapi.py)
and vaegan with its defaults (and with one worker) all serve the bundled demo model with the same
codec, forward and PNG encoder. One client drives them all: `POST /reconstruct` with a 178x218
JPEG face, `concurrency` requests in flight, each slot with its own kept-alive connection. The
servers take turns round by round, so a passing background load hits them all alike; each cell
is the median over rounds. Needs `pip install -e ".[peers]"`; run on a quiet machine:

    python benchmarks/peers_compare.py                  # c = 1 8 32 64, 3 rounds
    python benchmarks/peers_compare.py --quick          # one round, fewer requests
    python benchmarks/peers_compare.py --write-docs     # also docs/benchmarks.md's section

"Bare" is the same work without HTTP at saturation: one process per core, each decoding 32 JPEGs,
running one batch-32 forward on one torch thread and encoding 32 PNGs, over and over.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

# Lets the script run from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import torch

from benchmarks.harness import (
    PEERS_HEADING,
    ROOT,
    announce,
    face_jpeg,
    free_port,
    measured_by,
    percentile,
    write_docs_section,
)
from model.demo import demo_checkpoint_path

BARE_BATCH = 32


# --------------------------------------------------------------------------------------------
# the servers


@dataclass(frozen=True)
class Peer:
    name: str
    command: list[str]  # {port} and {checkpoint} are filled in
    env: dict[str, str]
    ready_path: str


def peers(cores: int) -> list[Peer]:
    service = [sys.executable, "-m", "service", "--checkpoint", "{checkpoint}", "--port", "{port}"]
    service += ["--device", "cpu", "--log-level", "warning"]
    litserve = [sys.executable, "-m", "benchmarks.peers.litserve_app"]
    litserve += ["--checkpoint", "{checkpoint}", "--port", "{port}", "--workers"]
    uvicorn = [sys.executable, "-m", "uvicorn", "benchmarks.peers.plain_fastapi:app"]
    uvicorn += ["--port", "{port}", "--log-level", "warning", "--workers"]
    plain = {"PEER_CHECKPOINT": "{checkpoint}"}
    return [
        Peer("vaegan (defaults)", service, {}, "/health/ready"),
        Peer("vaegan, 1 worker", service, {"VAEGAN_WORKERS": "1"}, "/health/ready"),
        Peer("LitServe, 1 worker", [*litserve, "1"], {}, "/health"),
        Peer("LitServe, 2 workers", [*litserve, "2"], {}, "/health"),
        Peer(
            "plain FastAPI, 1 process",
            [*uvicorn, "1"],
            plain | {"PEER_TORCH_THREADS": str(cores)},
            "/health",
        ),
        Peer(
            "plain FastAPI, uvicorn --workers 2",
            [*uvicorn, "2"],
            plain | {"PEER_TORCH_THREADS": str(max(1, cores // 2))},
            "/health",
        ),
    ]


class Running:
    def __init__(self, peer: Peer, checkpoint: Path, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        fill = {"port": str(self.port), "checkpoint": str(checkpoint)}
        env = {k: v for k, v in os.environ.items() if not k.startswith("VAEGAN_")}
        env |= {k: v.format(**fill) for k, v in peer.env.items()}
        env["PYTHONPATH"] = str(ROOT)
        self.log = log.open("ab")
        self.process = subprocess.Popen(
            [part.format(**fill) for part in peer.command],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.peer = peer
        self._wait_ready(log)

    def _wait_ready(self, log: Path, timeout_s: float = 180.0) -> None:
        deadline = time.monotonic() + timeout_s
        ready = 0
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                ok = httpx.get(self.url + self.peer.ready_path, timeout=2).status_code == 200
            except httpx.TransportError:
                ok = False
            # Several in a row: with several processes each must have loaded its model.
            ready = ready + 1 if ok else 0
            if ready >= 8:
                return
            time.sleep(0.1 if ok else 0.25)
        self.stop()
        raise RuntimeError(f"{self.peer.name} did not become ready; see {log}")

    def cpu_seconds(self) -> float:
        """User + system CPU of the server and every process it started."""
        return sum(_cpu_seconds(pid) for pid in _tree(self.process.pid))

    def stop(self) -> None:
        import signal

        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.log.close()


def _tree(pid: int) -> list[int]:
    pids, queue = [], [pid]
    while queue:
        current = queue.pop()
        pids.append(current)
        try:
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        queue += [int(child) for child in children]
    return pids


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------------------------
# load


@dataclass
class Cell:
    server: str
    concurrency: int
    rps: list[float] = field(default_factory=list)  # one per round
    p50_ms: list[float] = field(default_factory=list)
    p99_ms: list[float] = field(default_factory=list)
    server_cpu_ms: list[float] = field(default_factory=list)  # per request

    def median(self, name: str) -> float:
        values: list[float] = getattr(self, name)
        return statistics.median(values) if values else float("nan")


async def drive(url: str, upload: bytes, concurrency: int, count: int) -> tuple[float, list[float]]:
    remaining = count
    latencies: list[float] = []
    one = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    files = {"image": ("face.jpg", upload, "image/jpeg")}

    async def slot(client: httpx.AsyncClient) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            response = await client.post("/reconstruct", files=files)
            if response.status_code != 200 or not response.content.startswith(b"\x89PNG"):
                raise RuntimeError(f"{url}: {response.status_code} {response.text[:200]}")
            latencies.append((time.perf_counter() - started) * 1000)

    clients = [httpx.AsyncClient(base_url=url, limits=one, timeout=120) for _ in range(concurrency)]
    try:
        started = time.perf_counter()
        await asyncio.gather(*(slot(client) for client in clients))
        return time.perf_counter() - started, latencies
    finally:
        await asyncio.gather(*(client.aclose() for client in clients))


def measure(running: Running, cell: Cell, upload: bytes, count: int) -> None:
    c = cell.concurrency
    asyncio.run(drive(running.url, upload, c, max(20, 2 * c)))  # warm-up at this concurrency
    cpu = running.cpu_seconds()
    seconds, latencies = asyncio.run(drive(running.url, upload, c, count))
    cell.rps.append(count / seconds)
    cell.p50_ms.append(percentile(latencies, 50))
    cell.p99_ms.append(percentile(latencies, 99))
    cell.server_cpu_ms.append((running.cpu_seconds() - cpu) / count * 1000)


def request_count(concurrency: int, quick: bool) -> int:
    return max(60, 5 * concurrency) if quick else max(200, 20 * concurrency)


# --------------------------------------------------------------------------------------------
# bare


def bare_worker(checkpoint: Path, seconds: float) -> None:
    """One core's share of the bare figure: images/s of decode + batch forward + PNG."""
    from benchmarks.peers.work import ReconstructWork

    work = ReconstructWork(checkpoint, torch_threads=1)
    upload = face_jpeg()
    images = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        batch = work.forward(torch.stack([work.decode(upload) for _ in range(BARE_BATCH)]))
        for image in batch:
            work.png(image)
        images += BARE_BATCH
    print(images / (time.perf_counter() - started))


def measure_bare(checkpoint: Path, cores: int, seconds: float) -> float:
    command = [sys.executable, __file__, "--bare-worker", str(seconds), "--checkpoint"]
    workers = [
        subprocess.Popen(
            [*command, str(checkpoint)],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        for _ in range(cores)
    ]
    return sum(float(worker.communicate()[0].split()[-1]) for worker in workers)


# --------------------------------------------------------------------------------------------
# report


def table(cells: dict[tuple[str, int], Cell], servers: Sequence[str], cs: Sequence[int]) -> str:
    lines = [
        "| server | " + " | ".join(f"c={c} req/s (p50 / p99 ms)" for c in cs) + " |",
        "|---|" + "---:|" * len(cs),
    ]
    for name in servers:
        row = []
        for c in cs:
            cell = cells[(name, c)]
            row.append(
                f"{cell.median('rps'):.0f} ({cell.median('p50_ms'):.0f} / "
                f"{cell.median('p99_ms'):.0f})"
            )
        lines.append(f"| {name} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def cpu_table(cells: dict[tuple[str, int], Cell], servers: Sequence[str], cs: Sequence[int]) -> str:
    lines = [
        "| server | " + " | ".join(f"c={c}" for c in cs) + " |",
        "|---|" + "---:|" * len(cs),
    ]
    for name in servers:
        row = [f"{cells[(name, c)].median('server_cpu_ms'):.1f}" for c in cs]
        lines.append(f"| {name} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def checks(cells: dict[tuple[str, int], Cell], cs: Sequence[int], bare: float) -> list[str]:
    def rps(name: str, c: int) -> float:
        cell = cells.get((name, c))
        return cell.median("rps") if cell else float("nan")

    ours = "vaegan (defaults)"
    lines = []
    for c in [c for c in cs if c >= 32]:
        best = max(rps("LitServe, 1 worker", c), rps("LitServe, 2 workers", c))
        ratio = rps(ours, c) / best
        lines.append(_check(f"req/s at c={c} / LitServe's best", ratio, 1.3))
    for c in cs:
        ratio = rps(ours, c) / rps("plain FastAPI, uvicorn --workers 2", c)
        lines.append(_check(f"req/s at c={c} / plain FastAPI with 2 workers", ratio, 1.2))
    if 1 in cs:
        plain = min(
            cells[(name, 1)].median("p50_ms")
            for name in ("plain FastAPI, 1 process", "plain FastAPI, uvicorn --workers 2")
        )
        ours_p50 = cells[(ours, 1)].median("p50_ms")
        ok = ours_p50 <= plain
        lines.append(
            f"- c=1 p50 {ours_p50:.1f} ms vs plain FastAPI's best {plain:.1f} ms "
            f"(target: no worse): {'met' if ok else 'MISSED'}"
        )
    saturated = max(rps(ours, c) for c in cs)
    lines.append(_check("best req/s / bare images/s", saturated / bare, 0.75, percent=True))
    return lines


def _check(what: str, value: float, target: float, percent: bool = False) -> str:
    shown = f"{value:.0%}" if percent else f"{value:.2f}x"
    wanted = f"{target:.0%}" if percent else f"{target:g}x"
    return f"- {what}: {shown} (target >= {wanted}): {'met' if value >= target else 'MISSED'}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one round, fewer requests")
    parser.add_argument("--only", nargs="+", help="run only the servers whose names start so")
    parser.add_argument("--checkpoint", type=Path, default=demo_checkpoint_path())
    parser.add_argument("--write-docs", action="store_true")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--bare-worker", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.bare_worker is not None:
        bare_worker(args.checkpoint, args.bare_worker)
        return 0

    command = shlex.join(["python", "benchmarks/peers_compare.py", *(argv or sys.argv[1:])])
    started, clock = datetime.datetime.now(), time.monotonic()
    machine_info = announce(f"peers_compare: {command}")
    cores = len(os.sched_getaffinity(0))
    rounds = 1 if args.quick else args.rounds
    servers = [
        peer
        for peer in peers(cores)
        if not args.only or any(peer.name.startswith(prefix) for prefix in args.only)
    ]
    upload = face_jpeg()
    cells = {(p.name, c): Cell(p.name, c) for p in servers for c in args.concurrency}
    bare = [measure_bare(args.checkpoint, cores, 5.0)]
    print(f"bare: {bare[0]:.0f} images/s")
    with tempfile.TemporaryDirectory(prefix="peers-") as tmp:
        for round_number in range(1, rounds + 1):
            for peer in servers:
                running = Running(peer, args.checkpoint, Path(tmp) / "servers.log")
                try:
                    for c in args.concurrency:
                        cell = cells[(peer.name, c)]
                        measure(running, cell, upload, request_count(c, args.quick))
                        print(
                            f"round {round_number} {peer.name:36} c={c:<3} "
                            f"{cell.rps[-1]:6.1f} req/s p50 {cell.p50_ms[-1]:6.1f} ms "
                            f"p99 {cell.p99_ms[-1]:7.1f} ms "
                            f"cpu/req {cell.server_cpu_ms[-1]:.1f} ms",
                            flush=True,
                        )
                finally:
                    running.stop()
    bare.append(measure_bare(args.checkpoint, cores, 5.0))
    best_bare = max(bare)
    names = [peer.name for peer in servers]
    results = table(cells, names, args.concurrency)
    verdicts = checks(cells, args.concurrency, best_bare) if len(servers) == 6 else []
    print("\n" + results + "\n\n" + "\n".join(verdicts))
    print(f"bare: {best_bare:.0f} images/s (best of {[round(b) for b in bare]})")
    if args.write_docs:
        minutes = (time.monotonic() - clock) / 60
        section = "\n".join(
            [
                PEERS_HEADING,
                "",
                measured_by(command, started, minutes, machine_info),
                "",
                "Every server serves the bundled demo model (medium64) with the same codec, "
                "forward and PNG encoder (benchmarks/peers/); one client drives them all "
                "(`POST /reconstruct`, a 178x218 JPEG face, one kept-alive connection per "
                "request in flight). Medians of "
                f"{rounds} round{'s' if rounds != 1 else ''}, the servers taking turns.",
                "",
                results,
                "",
                "Server CPU per request (ms, all of its processes):",
                "",
                cpu_table(cells, names, args.concurrency),
                "",
                f"Bare (no HTTP, one process per core, batch {BARE_BATCH}): "
                f"{best_bare:.0f} images/s.",
                "",
                *verdicts,
                "",
            ]
        )
        write_docs_section(args.docs, PEERS_HEADING, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
