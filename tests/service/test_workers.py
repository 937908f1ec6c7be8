"""Several worker processes behind one port (service/workers.py), started as users start them
(`python -m service` with VAEGAN_WORKERS): every worker answers, /metrics counts the whole
service, the API key holds in each, a worker that dies is replaced, SIGTERM stops them all
cleanly, and killing the supervisor outright takes its workers with it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from service.server import DRAIN_S
from tests.service.conftest import free_port

KEY = "workers-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


@dataclass
class Supervised:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def workers(self) -> list[int]:
        """The worker processes' ids (children of the supervisor running service.workers)."""
        pids = []
        for child in Path("/proc").iterdir():
            if not child.name.isdigit():
                continue
            try:
                stat = (child / "stat").read_text().rsplit(")", 1)[1].split()
                command = (child / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if int(stat[1]) == self.process.pid and b"service.workers" in command:
                pids.append(int(child.name))
        return sorted(pids)

    def access_pids(self, route: str) -> set[int]:
        pids = set()
        for line in self.log.read_text().splitlines():
            if line.startswith("{"):
                record = json.loads(line)
                if record.get("route") == route:
                    pids.add(record["pid"])
        return pids

    def metric(self, prefix: str) -> float:
        text = httpx.get(f"{self.url}/metrics", headers=AUTH, timeout=10).text
        return sum(
            float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix)
        )


def _alive(pid: int) -> bool:
    """Running (a zombie nobody has reaped yet counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _all_ready(url: str, probes: int = 8) -> bool:
    """Ready on `probes` fresh connections in a row: the kernel spreads them over the workers,
    so one still loading its model would answer 503 to some."""
    for _ in range(probes):
        try:
            if httpx.get(f"{url}/health/ready", timeout=5).status_code != 200:
                return False
        except httpx.TransportError:
            return False
    return True


def _wait(condition, what: str, timeout: float = 90) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.2)


@contextmanager
def supervised(checkpoint: Path, tmp_path: Path, workers: int = 2) -> Iterator[Supervised]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAEGAN_")}
    env |= {
        "VAEGAN_CHECKPOINT": str(checkpoint),
        "VAEGAN_WORKERS": str(workers),
        "VAEGAN_CPUS": str(workers),
        "VAEGAN_API_KEY": KEY,
        "VAEGAN_MAX_BATCH_SIZE": "4",
    }
    log = tmp_path / "server.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "service", "--port", str(port), "--device", "cpu"],
            env=env,
            stdout=output,
            stderr=output,
        )
    running = Supervised(process, f"http://127.0.0.1:{port}", log)
    try:
        _wait(lambda: process.poll() is not None or _all_ready(running.url), "all workers ready")
        assert process.poll() is None, log.read_text()[-3000:]
        yield running
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for pid in running.workers():
            os.kill(pid, signal.SIGKILL)


def _sample(url: str, seed: int) -> int:
    # A fresh connection per request: each is handed to whichever worker accepts first.
    return httpx.post(
        f"{url}/sample", params={"n": 2, "seed": seed}, headers=AUTH, timeout=60
    ).status_code


def test_workers_share_the_port_the_metrics_and_the_key_then_drain_on_sigterm(
    checkpoint_path: Path, tmp_path: Path
) -> None:
    with supervised(checkpoint_path, tmp_path) as server:
        workers = server.workers()
        assert len(workers) == 2
        # The key reached the workers through stdin, not their command lines.
        for pid in workers:
            assert KEY.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
        assert httpx.post(f"{server.url}/sample", params={"n": 1}).status_code == 401

        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(lambda seed: _sample(server.url, seed), range(48)))
        assert statuses == [200] * 48
        # Both workers answered, and /metrics (whichever worker serves it) counts them all.
        assert server.access_pids("/sample") == set(workers)
        answered = (
            'vaegan_request_duration_seconds_count{method="POST",route="/sample",status="200"'
        )
        for _ in range(4):
            assert server.metric(answered) == 48
        assert server.metric("vaegan_model_info{") == 1

        # A worker that dies is replaced; the other serves meanwhile; its counts stay counted.
        os.kill(workers[0], signal.SIGKILL)
        assert _sample(server.url, 1000) == 200
        _wait(lambda: len(server.workers()) == 2 and workers[0] not in server.workers(), "respawn")
        _wait(lambda: _all_ready(server.url), "the new worker is ready")
        assert server.metric(answered) == 49
        assert "worker 0 exited (status -9); starting another" in server.log.read_text()

        # SIGTERM: every worker drains and exits, then the supervisor, well within the grace.
        current = server.workers()
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=DRAIN_S + 10) == 0, server.log.read_text()[-3000:]
        assert time.monotonic() - started < DRAIN_S
        assert not [pid for pid in current if _alive(pid)]
        try:
            httpx.get(f"{server.url}/health/live", timeout=2)
            raise AssertionError("the port still accepts connections after the shutdown")
        except httpx.ConnectError:
            pass


def test_workers_die_with_a_killed_supervisor(checkpoint_path: Path, tmp_path: Path) -> None:
    with supervised(checkpoint_path, tmp_path) as server:
        workers = server.workers()
        assert len(workers) == 2
        server.process.kill()
        server.process.wait()
        _wait(
            lambda: not [pid for pid in workers if _alive(pid)],
            "the orphaned workers are gone",
            timeout=DRAIN_S + 10,
        )
