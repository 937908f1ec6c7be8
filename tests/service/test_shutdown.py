"""SIGTERM to a real `python -m service` while it serves a burst: every request it has received is
answered in full and correctly (graceful shutdown), new connections are refused as soon as the
drain starts, and the process exits well within the drain period (DRAIN_S), with one worker
process or several (service/workers.py).
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from service.server import DRAIN_S
from tests.service.conftest import free_port, wait_until_ready

GRACE_S = DRAIN_S
DRAIN_TARGET_S = 2.5  # how long the burst should still run after SIGTERM
SEEDS = (11, 22, 33, 44)
ROWS = 16  # faces per request


def _metric(text: str, prefix: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix)
    )


async def _received(client: httpx.AsyncClient) -> int:
    """Burst requests the server has taken in: in flight (less this one) plus answered."""
    text = (await client.get("/metrics")).text
    in_flight = _metric(text, "vaegan_requests_in_flight ") - 1
    answered = _metric(text, 'vaegan_request_duration_seconds_count{method="POST",route="/sample"')
    return int(in_flight + answered)


async def _refused(url: str) -> bool:
    try:
        async with httpx.AsyncClient(timeout=2) as fresh:
            await fresh.get(f"{url}/health/live")
    except httpx.ConnectError:
        return True
    return False


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_under_load_drains_in_flight_requests_and_exits_in_time(
    checkpoint_path, tmp_path, workers
):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAEGAN_")}
    env |= {
        "VAEGAN_CHECKPOINT": str(checkpoint_path),
        # One row per forward pass, on one thread: every answer is computed exactly as the
        # reference answers below were, and the burst drains slowly enough to watch.
        "VAEGAN_MAX_BATCH_SIZE": "1",
        "VAEGAN_TORCH_THREADS": "1",
        "VAEGAN_MAX_QUEUE": "4096",  # this is about draining, not overload: accept every row
        "VAEGAN_WORKERS": str(workers),
    }
    log = tmp_path / "server.log"  # a file, not a pipe nobody reads while the server writes
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "service", "--port", str(port), "--device", "cpu"],
            env=env,
            stdout=stderr,
            stderr=stderr,
            text=True,
        )
    try:
        wait_until_ready(url, process)
        # The reference answers (same seed, same bytes), which also time one request.
        started = time.perf_counter()
        expected = {
            seed: httpx.post(f"{url}/sample", params={"n": ROWS, "seed": seed}, timeout=30).content
            for seed in SEEDS
        }
        per_request = (time.perf_counter() - started) / len(SEEDS)
        # Enough requests for the drain to take about DRAIN_TARGET_S on this machine, however
        # busy it is, and never near the grace period.
        burst = len(SEEDS) * min(12, max(2, math.ceil(DRAIN_TARGET_S / per_request / len(SEEDS))))

        async def scenario() -> tuple[list[httpx.Response], int, bool, float]:
            limits = httpx.Limits(max_connections=burst + 1)
            async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
                requests = [
                    asyncio.create_task(
                        client.post("/sample", params={"n": ROWS, "seed": SEEDS[i % len(SEEDS)]})
                    )
                    for i in range(burst)
                ]
                # Signal only once the server holds every request: one still connecting when
                # the listener closes would rightly be refused, which is not what this tests.
                deadline = time.monotonic() + 30
                while await _received(client) < burst:
                    assert time.monotonic() < deadline, "the burst never reached the server"
                    await asyncio.sleep(0.02)
                process.send_signal(signal.SIGTERM)
                signalled = time.monotonic()
                pending = sum(not request.done() for request in requests)
                # New connections are refused while the received requests are still being
                # answered.
                refused = False
                while not refused and time.monotonic() - signalled < 3:
                    refused = await _refused(url)
                    if not refused:
                        await asyncio.sleep(0.05)
                refused_while_draining = refused and not all(r.done() for r in requests)
                responses = await asyncio.gather(*requests)
                return responses, pending, refused_while_draining, signalled

        responses, pending, refused_while_draining, signalled = asyncio.run(scenario())
        process.wait(timeout=GRACE_S + 20)
        exited_after = time.monotonic() - signalled
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = log.read_text()

    assert pending >= 3, f"only {pending} of {burst} requests were in flight at SIGTERM"
    for index, response in enumerate(responses):
        assert response.status_code == 200, (response.status_code, response.text[:200])
        seed = SEEDS[index % len(SEEDS)]
        assert response.headers["x-seed"] == str(seed)
        assert response.content == expected[seed]
    assert refused_while_draining, "a new connection was accepted after SIGTERM"
    assert exited_after < GRACE_S, f"exited {exited_after:.1f} s after SIGTERM"
    # uvicorn re-raises SIGTERM after its own shutdown so a supervisor sees why it ended.
    assert process.returncode in (0, -signal.SIGTERM), output[-2000:]
    assert "Application shutdown complete" in output
    assert "timeout graceful shutdown exceeded" not in output
    assert "Traceback" not in output
    assert output.count('"route": "/sample", "status": 200') == burst + len(SEEDS)
    print(f"{burst} requests, {pending} in flight at SIGTERM, exit after {exited_after:.2f} s")
