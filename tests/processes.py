"""Running the real console scripts and measuring what one run cost."""

from __future__ import annotations

import functools
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

NOBODY = 65534


@dataclass
class Finished:
    returncode: int | None  # None: killed at the timeout
    stdout: str
    stderr: str
    seconds: float
    peak_mib: float  # the command's own peak resident memory (inf when it was killed)

    @property
    def error_lines(self) -> list[str]:
        return self.stderr.strip().splitlines()


# Runs the command as its own forked child and reports that child's exit status and peak
# memory. Measured directly, a child of the test process would report the test process's peak
# instead: Linux carries the parent's high-water mark into a child's ru_maxrss across the
# vfork and exec that start it, and a test session that loaded a few models is larger than
# the figure being checked.
_LAUNCHER = """
import os, sys
report = int(sys.argv[1])
pid = os.fork()
if pid == 0:
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
os.write(report, f"{os.waitstatus_to_exitcode(status)} {usage.ru_maxrss}".encode())
"""


def run_measured(args: Sequence[str], *, timeout: float, **popen: Any) -> Finished:
    """Run `args` to the end (or kill it at `timeout`), with its time and peak memory."""
    read_end, write_end = os.pipe()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.monotonic()
        try:
            launcher = subprocess.Popen(
                [sys.executable, "-c", _LAUNCHER, str(write_end), *args],
                stdout=out,
                stderr=err,
                pass_fds=(write_end,),
                start_new_session=True,  # one process group: a timeout kills both
                **popen,
            )
        finally:
            os.close(write_end)
        try:
            launcher.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.wait()
        seconds = time.monotonic() - started
        with os.fdopen(read_end, "rb") as report:
            fields = report.read().split()
        out.seek(0)
        err.seek(0)
        return Finished(
            int(fields[0]) if fields else None,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
            seconds,
            int(fields[1]) / 1024 if fields else math.inf,
        )


def as_unprivileged_user(args: Sequence[str]) -> list[str]:
    """`args` run as a user for whom file permissions apply.

    The suite often runs as root, which reads any file whatever its mode; the service's
    Docker image runs as a plain user, for whom a mounted mode-000 checkpoint is unreadable.
    Skips the test where privileges cannot be dropped.
    """
    if os.geteuid() != 0:
        return list(args)
    prefix = _drop_privileges()
    if prefix is None:
        pytest.skip("running as root, and no way to run this interpreter as another user")
    return [*prefix, *args]


@functools.cache
def _drop_privileges() -> list[str] | None:
    # setpriv rather than Popen(user=...): the same drop, and it also works where this
    # interpreter lives under a folder only root may enter.
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    prefix = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    probe = subprocess.run(
        [*prefix, sys.executable, "-c", "import os; print(os.geteuid())"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return prefix if probe.stdout.strip() == str(NOBODY) else None


@contextmanager
def folder_anyone_can_enter() -> Iterator[Path]:
    """A temporary folder an unprivileged user can reach (pytest's are the owner's only)."""
    path = Path(tempfile.mkdtemp(prefix="vaegan-shared-"))
    try:
        path.chmod(0o755)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
