"""Several server processes on one port, each with its own model and micro-batcher.

`vaegan-serve` with more than one worker binds one listening socket per worker on the same port
(SO_REUSEPORT) and starts each worker as `python -m service.workers FD ...`, which inherits its
socket, reads its settings from stdin (the API key never shows in a process listing) and serves
the app on it. The kernel spreads new connections over the sockets by their addresses. One shared
socket would not: an event loop woken for a burst of connections accepts all it finds, so eight
clients arriving together all landed on one worker in two runs of three, at 70% of the throughput
of an even split. A worker listens only once its model is ready; the supervisor keeps every
socket, so connections made while a worker restarts wait in its queue instead of being refused.
The supervisor

- restarts a worker that dies after it started serving (an out-of-memory kill, say); one that
  dies before (it reports over a pipe once uvicorn listens), or that keeps dying, would repeat
  for ever: then everything stops and `vaegan-serve` exits 3;
- on SIGTERM or SIGINT closes its copies of the sockets and sends each worker one SIGTERM, so each
  drains its in-flight requests like the single-process server, and waits for them;
- keeps one Prometheus multiprocess folder, so `/metrics` on any worker reports them all.

Workers live in their own process group (a terminal's Ctrl-C reaches the supervisor only, which
then stops them once, gracefully) and die with it (PR_SET_PDEATHSIG) if it is killed outright.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn

from service.server import DRAIN_S
from service.settings import ServiceSettings
from service.sizing import ServingPlan

log = logging.getLogger("vaegan.service")

METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
# More restarts than this within RESTART_WINDOW_S is a crash loop, not bad luck.
MAX_RESTARTS = 5
# How long past a worker's drain (DRAIN_S) the supervisor waits before it kills the worker.
STOP_MARGIN_S = 5.0
RESTART_WINDOW_S = 60.0
_POLL_S = 0.2
_PR_SET_PDEATHSIG = 1


@dataclass
class _Worker:
    index: int
    process: subprocess.Popen[bytes]
    ready_pipe: int  # read end: the worker writes one byte once it serves
    serving: bool = False

    def check_serving(self) -> bool:
        if not self.serving:
            with contextlib.suppress(BlockingIOError):
                self.serving = bool(os.read(self.ready_pipe, 1))
        return self.serving

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.ready_pipe)


def _python(args: list[str]) -> dict[str, Any]:
    """Popen arguments that run this same interpreter with `args`. Through /proc/self/exe where
    there is one: the file this process already runs, even where its path is one the service's
    user may not walk (an interpreter under /root, run with dropped privileges); argv[0] stays
    sys.executable, which is how Python finds its virtual environment."""
    executable = "/proc/self/exe" if Path("/proc/self/exe").exists() else sys.executable
    return {"args": [sys.executable, *args], "executable": executable}


def bind(settings: ServiceSettings, count: int) -> list[socket.socket]:
    """`count` sockets bound to the same address, one per worker, not yet listening (OSError
    when the address is taken); with port 0 the first one's port is the others'. Each worker
    listens on its own once its model is loaded and warm, so the kernel never hands a
    connection to a worker that would answer "still loading"."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sockets: list[socket.socket] = []
    port = settings.port
    try:
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((settings.host, port))
            sock.set_inheritable(True)
            port = sock.getsockname()[1]
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def settings_payload(settings: ServiceSettings) -> bytes:
    """`settings` as JSON a worker turns back into the same settings, the API key included."""
    values = settings.model_dump(mode="json")
    key = settings.api_key
    values["api_key"] = key.get_secret_value() if key is not None else None
    return json.dumps(values).encode()


class Supervisor:
    def __init__(
        self, settings: ServiceSettings, plan: ServingPlan, sockets: list[socket.socket]
    ) -> None:
        # Told how many they are, the workers' Runtimes size their threads by this same plan.
        self.settings = settings.model_copy(update={"workers": plan.workers})
        self.plan = plan
        self.sockets = sockets  # worker i serves sockets[i]
        self.workers: list[_Worker] = []
        self.stopping = threading.Event()
        self.restarts: list[float] = []  # when each restart happened
        self.metrics_dir, self._own_metrics_dir = _metrics_dir()

    def run(self) -> int:
        """Serve until a signal, then drain; 0 after a clean stop, 3 when a worker cannot start."""
        previous = {
            signum: signal.signal(signum, self._on_signal)
            for signum in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            self.workers = [self._start(index) for index in range(self.plan.workers)]
            status = self._watch()
        finally:
            self._stop_all()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            if self._own_metrics_dir:
                shutil.rmtree(self.metrics_dir, ignore_errors=True)
        return status

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if not self.stopping.is_set():
            log.info("%s: draining %d workers", signal.Signals(signum).name, len(self.workers))
        self.stopping.set()

    def _start(self, index: int) -> _Worker:
        env = {**os.environ, METRICS_DIR_ENV: str(self.metrics_dir)}
        ready_read, ready_write = os.pipe()
        os.set_blocking(ready_read, False)
        fds = (self.sockets[index].fileno(), ready_write)
        try:
            process = subprocess.Popen(
                **_python(["-m", "service.workers", *map(str, fds), str(index)]),
                stdin=subprocess.PIPE,
                env=env,
                pass_fds=fds,
                process_group=0,
            )
        finally:
            os.close(ready_write)
        assert process.stdin is not None
        with process.stdin:
            process.stdin.write(settings_payload(self.settings))
        return _Worker(index, process, ready_read)

    def _watch(self) -> int:
        while not self.stopping.wait(_POLL_S):
            for position, worker in enumerate(self.workers):
                code = worker.process.poll()
                if code is None:
                    worker.check_serving()
                    continue
                _mark_dead(self.metrics_dir, worker.process.pid)
                worker.close()
                if not worker.check_serving():
                    log.error(
                        "worker %d exited (status %d) before it could serve; stopping",
                        worker.index,
                        code,
                    )
                    return 3
                now = time.monotonic()
                self.restarts = [t for t in self.restarts if now - t < RESTART_WINDOW_S] + [now]
                if len(self.restarts) > MAX_RESTARTS:
                    log.error(
                        "workers exited %d times within %g s; stopping",
                        len(self.restarts),
                        RESTART_WINDOW_S,
                    )
                    return 3
                log.warning("worker %d exited (status %d); starting another", worker.index, code)
                self.workers[position] = self._start(worker.index)
        return 0

    def _stop_all(self) -> None:
        # New connections are refused once no process holds a socket open.
        for sock in self.sockets:
            sock.close()
        for worker in self.workers:
            if worker.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    worker.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + DRAIN_S + STOP_MARGIN_S
        for worker in self.workers:
            try:
                worker.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker %d did not stop in time; killing it", worker.index)
                worker.process.kill()
                worker.process.wait()
            worker.close()
            _mark_dead(self.metrics_dir, worker.process.pid)


def preflight(settings: ServiceSettings) -> tuple[str, str | None]:
    """The device type the settings resolve to ("cpu" or "cuda") and, when the device is not
    there or the checkpoint does not load, why: checked in a separate process (`--preflight`),
    so that the caller does not load torch."""
    result = subprocess.run(
        **_python(["-m", "service.workers", "--preflight"]),
        input=settings_payload(settings),
        capture_output=True,
        check=False,
    )
    if result.returncode == 0:
        return result.stdout.decode().strip(), None
    lines = result.stderr.decode(errors="replace").strip().splitlines()
    return "", lines[-1] if lines else f"the preflight check failed (status {result.returncode})"


def _preflight_main() -> int:
    from model.checkpoint import CheckpointError, load_checkpoint
    from model.device import DeviceError, select_device

    settings = ServiceSettings(**json.loads(sys.stdin.buffer.read()))
    try:
        device = select_device(settings.device)
        load_checkpoint(settings.checkpoint)
    except (CheckpointError, DeviceError) as exc:
        print(exc, file=sys.stderr)
        return 2
    print(device.type)
    return 0


def _metrics_dir() -> tuple[Path, bool]:
    """The Prometheus multiprocess folder, emptied: the user's ($PROMETHEUS_MULTIPROC_DIR), or a
    temporary one this supervisor owns (and removes)."""
    given = os.environ.get(METRICS_DIR_ENV)
    if given:
        folder = Path(given)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.db"):  # a previous run's counts would add to ours
            stale.unlink(missing_ok=True)
        return folder, False
    return Path(tempfile.mkdtemp(prefix="vaegan-metrics-")), True


def _mark_dead(folder: Path, pid: int) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, str(folder))  # type: ignore[no-untyped-call]


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM this process when the supervisor dies (a no-op elsewhere)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class _ReportingServer(uvicorn.Server):
    """uvicorn's server, telling the supervisor once it listens (its model may still load)."""

    def __init__(self, config: uvicorn.Config, ready_fd: int) -> None:
        super().__init__(config)
        self.ready_fd = ready_fd

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            os.write(self.ready_fd, b"1")
            os.close(self.ready_fd)


def worker_main(argv: list[str]) -> int:
    """One worker: the inherited socket (fd argv[0]), settings on stdin, the app served on it,
    and "serving" reported on the pipe argv[1]."""
    _die_with_parent()
    fd, ready_fd, index = (int(arg) for arg in argv)
    settings = ServiceSettings(**json.loads(sys.stdin.buffer.read()))

    from service.app import create_app
    from service.cli import configure_logging
    from service.server import uvicorn_config

    configure_logging(settings.log_level)
    sock = socket.socket(fileno=fd)
    options: dict[str, Any] = {
        "log_level": settings.log_level,
        "access_log": False,
        "timeout_graceful_shutdown": DRAIN_S,
    }
    app = create_app(settings, wait_for_model=True)
    server = _ReportingServer(uvicorn_config(app, settings, **options), ready_fd)
    log.info("worker %d (pid %d) serving", index, os.getpid())
    server.run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(_preflight_main() if sys.argv[1:] == ["--preflight"] else worker_main(sys.argv[1:]))
