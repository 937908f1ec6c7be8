"""Running the real console scripts and measuring what one run cost."""

from __future__ import annotations

import functools
import os
import shutil
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
    peak_mib: float  # the process's own peak resident memory

    @property
    def error_lines(self) -> list[str]:
        return self.stderr.strip().splitlines()


def run_measured(args: Sequence[str], *, timeout: float, **popen: Any) -> Finished:
    """Run `args` to the end (or kill it at `timeout`), with its time and peak memory.

    The child is reaped with wait4, whose resource usage is that child's alone, unlike
    RUSAGE_CHILDREN, which keeps the largest of every child this test process ever had.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.monotonic()
        process = subprocess.Popen(args, stdout=out, stderr=err, **popen)
        returncode: int | None = None
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                returncode = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() - started > timeout:
                process.kill()
                _, _, usage = os.wait4(process.pid, 0)
                break
            time.sleep(0.02)
        seconds = time.monotonic() - started
        process.returncode = -9 if returncode is None else returncode  # reaped above
        out.seek(0)
        err.seek(0)
        return Finished(
            returncode,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
            seconds,
            usage.ru_maxrss / 1024,
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
