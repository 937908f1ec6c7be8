"""What the attack benchmark (benchmarks/attacks.py) and the attack tests
(tests/service/test_attacks.py, test_decoding_cost.py) share: the hostile request bodies, raw
socket clients that misbehave at the connection level, and `watched`, which times an attack
while measuring the server's peak memory growth and probing /health/live.

Kept free of pytest and assertions: the tests assert on what these return, the benchmark
reports it.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

# --- bodies ------------------------------------------------------------------------------------


def nulls(count: int) -> str:
    """A JSON list of `count` nulls: 5 bytes each, each one a validation error."""
    return "[" + ",".join(["null"] * count) + "]"


# The JSON routes, each with a body that puts a list of values where numbers belong.
JSON_FLOODS: dict[str, Callable[[str], str]] = {
    "/decode": lambda values: '{"latents": [' + values + "]}",
    "/attribute-edit": lambda values: '{"latent": ' + values + ', "attribute": "Smiling"}',
    "/interpolate": lambda values: '{"latent_a": ' + values + ', "latent_b": [0]}',
}


def json_flood(path: str, count: int) -> bytes:
    """The body for `path` holding `count` nulls (the issue's attack is 2,000,000: 10 MB)."""
    return JSON_FLOODS[path](nulls(count)).encode()


# A head that a byte every 0.2 s would take over four minutes to finish.
SLOW_HEAD = b"GET /health/live HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: yes\r\n" * 100


# --- raw connections ---------------------------------------------------------------------------


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def read_until_closed(sock: socket.socket, limit_s: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and when it did (or
    `limit_s`, when it did not)."""
    started = time.perf_counter()
    sock.settimeout(limit_s)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return received, time.perf_counter() - started


def send_huge_header(sock: socket.socket, total_bytes: int) -> int:
    """Start a request whose one header line is `total_bytes` long, sent as fast as the server
    takes it; the bytes sent before the server hung up."""
    sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Big: ")
    sent, chunk = 0, b"a" * 65536
    try:
        while sent < total_bytes:
            sock.sendall(chunk)
            sent += len(chunk)
    except OSError:
        pass  # the server hung up: expected, sooner or later
    return sent


def trickle(sock: socket.socket, data: bytes, every_s: float, stop_after_s: float) -> float:
    """Send `data` a byte every `every_s` until the server answers or hangs up; how long that
    took (or `stop_after_s`)."""
    started = time.perf_counter()
    for byte in data:
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            break
        # Waiting for the server rather than sleeping: its answer or hang-up ends the attack
        # at once, so the time says when the server acted.
        readable, _, _ = select.select([sock], [], [], every_s)
        if readable or time.perf_counter() - started > stop_after_s:
            break
    return time.perf_counter() - started


@dataclass
class Slowloris:
    answers: list[tuple[bytes, float]]  # each attacker's answer, and when the server gave it
    served: list[float] = field(default_factory=list)  # the seconds of each request meanwhile


def slowloris(
    url: str,
    attackers: int,
    request: Callable[[httpx.Client], object],
    *,
    every_s: float = 0.2,
    stop_after_s: float = 10.0,
) -> Slowloris:
    """`attackers` clients trickle SLOW_HEAD a byte every `every_s` (no read ever waits long,
    so only a deadline on the whole head stops them) while `request` is sent again and again;
    returns when every attacker was cut off or gave up after `stop_after_s`."""
    result = Slowloris([])

    def attack() -> None:
        with connect(url) as sock:
            took = trickle(sock, SLOW_HEAD, every_s, stop_after_s)
            result.answers.append((read_until_closed(sock, 10)[0], took))

    threads = [threading.Thread(target=attack) for _ in range(attackers)]
    for thread in threads:
        thread.start()
    with httpx.Client(base_url=url, timeout=30) as client:
        while any(thread.is_alive() for thread in threads):
            started = time.perf_counter()
            request(client)
            result.served.append(time.perf_counter() - started)
    for thread in threads:
        thread.join()
    return result


# --- watching the server during an attack ------------------------------------------------------


def vm_kib(pid: int | str, field: str) -> int:
    """A kB field of /proc/PID/status (VmRSS, VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(f"no {field} in /proc/{pid}/status")


def reset_peak(pid: int | str) -> bool:
    """Reset the process's VmHWM to its current RSS; False where the kernel does not let us."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


@dataclass
class Watch:
    seconds: float = 0.0
    peak_growth_mb: float = 0.0  # VmHWM after the attack over VmRSS before it
    worst_live_s: float = 0.0
    probes: int = 0
    live_failures: int = 0  # probes answered with anything but 200, or not at all


@contextmanager
def watched(url: str, pid: int | str = "self") -> Iterator[Watch]:
    """Time the block, probe /health/live every 20 ms meanwhile, and measure the peak memory
    growth of process `pid` (the server; "self" for one running in this process). Call
    `reset_peak` first where it may fail: the growth is only meaningful when it succeeds."""
    reset_peak(pid)
    before = vm_kib(pid, "VmRSS")
    watch = Watch()
    done = threading.Event()

    def probe() -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            while not done.is_set():
                started = time.perf_counter()
                try:
                    alive = client.get("/health/live").status_code == 200
                except httpx.HTTPError:
                    alive = False
                watch.worst_live_s = max(watch.worst_live_s, time.perf_counter() - started)
                watch.live_failures += not alive
                watch.probes += 1
                done.wait(0.02)

    def probed_after(count: int) -> None:
        deadline = time.monotonic() + 30
        while watch.probes <= count and prober.is_alive() and time.monotonic() < deadline:
            time.sleep(0.005)

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    probed_after(0)  # connected and answered once: later probes time the server alone
    started = time.perf_counter()
    probes = watch.probes
    try:
        yield watch
    finally:
        watch.seconds = time.perf_counter() - started
        probed_after(probes)  # at least one probe overlapping or following the attack
        done.set()
        prober.join(timeout=30)
        watch.peak_growth_mb = (vm_kib(pid, "VmHWM") - before) / 1024
