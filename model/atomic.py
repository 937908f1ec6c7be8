"""Atomic file writes: a reader sees the old file or the complete new one, never half of one.

A write goes to a temporary next to the target that is fsynced and renamed over it; a writer
killed between the two leaves the temporary behind, and `remove_stale_temporaries` finds it by
its name.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

# atomic_write_bytes writes `.<target name>.<random>.tmp` next to the target (mkstemp's random
# part has no dot), so a temporary names the file it was going to become.
_TEMPORARY_SUFFIX = ".tmp"
_TEMPORARY_NAME = re.compile(r"^\.(?P<target>.+)\.[^.]+\.tmp$")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see either the old file or the complete new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=_TEMPORARY_SUFFIX
    )
    try:
        # mkstemp creates owner-only files; give the file the mode a plain open() would, so a
        # service running as another user can read a mounted checkpoint.
        os.fchmod(fd, 0o666 & ~_current_umask())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        Path(temp_name).replace(path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


def temporary_target(name: str) -> str | None:
    """The file name an `atomic_write_bytes` temporary called `name` was to become, else None."""
    match = _TEMPORARY_NAME.match(name)
    return match["target"] if match else None


def remove_stale_temporaries(directory: Path, owned: Callable[[str], bool]) -> list[Path]:
    """Delete the temporaries in `directory` of the files for which `owned(target name)` holds.

    A writer killed with SIGKILL (or by a power cut) between creating its temporary and renaming
    it leaves the temporary behind; nothing else ever removes it. Call this only for files that
    no other process may be writing right now, such as a run folder's own files at start-up.
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return removed
    for entry in entries:
        target = temporary_target(entry.name)
        if target is not None and owned(target) and entry.is_file(follow_symlinks=False):
            Path(entry.path).unlink(missing_ok=True)
            removed.append(Path(entry.path))
    return removed


def _current_umask() -> int:
    # Linux reports it without changing it; os.umask() can only be read by setting it, which
    # briefly affects every thread of the process.
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def fsync_directory(directory: Path) -> None:
    """Make the names in `directory` (a rename into it) durable; a no-op where a directory
    cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
