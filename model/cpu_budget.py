"""How many cores this process may really use, and how to split them between thread pools.

`os.cpu_count()` counts the machine's cores. A container with a CPU quota (Kubernetes
`limits.cpu: 2` on a 64-core node, `docker run --cpus 2`) or a process pinned with `taskset`
gets far fewer; torch sizes its OpenMP pool from the machine and its threads then spin against
the quota (throttling: the whole process stalls for the rest of each period). The budget here is
the smallest of the affinity mask and every CPU quota on the process's cgroup path (v2
`cpu.max`, v1 `cpu.cfs_quota_us`/`cpu.cfs_period_us`), rounded down, at least 1.

Reading the system's description of the CPU is the one file access here besides checkpoints:
training and the service both size their threads by it, so it lives beside `device.py`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")
# cgroup v1 mounts the cpu controller under one of these names (distributions differ).
_V1_CPU_MOUNTS = ("cpu,cpuacct", "cpuacct,cpu", "cpu")


@dataclass(frozen=True)
class CpuBudget:
    """The cores this process may use and where that number came from (for logs and /model)."""

    cores: int
    source: str  # "affinity", "cgroup v2 quota", "cgroup v1 quota" or "setting"

    def __str__(self) -> str:
        return f"{self.cores} core{'s' if self.cores != 1 else ''} ({self.source})"


@dataclass(frozen=True)
class ThreadSplit:
    """Intra-op threads for the model and threads for image decoding/PNG encoding."""

    torch_threads: int
    codec_threads: int


def affinity_cores() -> int:
    """Cores in the affinity mask (taskset, cpusets), else the machine's."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _cgroup_paths(proc_self_cgroup: Path) -> tuple[str | None, str | None]:
    """This process's cgroup v2 path and its v1 cpu-controller path, from /proc/self/cgroup."""
    v2 = v1 = None
    try:
        lines = proc_self_cgroup.read_text().splitlines()
    except OSError:
        return None, None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        if hierarchy == "0" and controllers == "":
            v2 = path
        elif "cpu" in controllers.split(","):
            v1 = path
    return v2, v1


def _ancestors(base: Path, cgroup_path: str) -> list[Path]:
    """`base`/path and every parent folder up to `base`: a quota anywhere above applies too."""
    relative = Path(cgroup_path.lstrip("/"))
    folders = [base / relative, *(base / parent for parent in relative.parents)]
    return list(dict.fromkeys(folders))  # the root once


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _v2_quota(root: Path, cgroup_path: str) -> float | None:
    """The tightest `cpu.max` on the path, in cores; None when every level says "max"."""
    tightest: float | None = None
    for folder in _ancestors(root, cgroup_path):
        text = _read(folder / "cpu.max")
        if text is None:
            continue
        fields = text.split()
        if len(fields) != 2 or fields[0] == "max":
            continue
        try:
            cores = int(fields[0]) / int(fields[1])
        except (ValueError, ZeroDivisionError):
            continue
        tightest = cores if tightest is None else min(tightest, cores)
    return tightest


def _v1_quota(root: Path, cgroup_path: str) -> float | None:
    """The tightest CFS quota on the path, in cores; None when unlimited (-1) everywhere."""
    tightest: float | None = None
    for mount in _V1_CPU_MOUNTS:
        base = root / mount
        if not base.is_dir():
            continue
        # Inside a container the controller is mounted at the container's own cgroup, so its
        # files sit at the mount's root whatever /proc/self/cgroup says; outside, at the path.
        for folder in _ancestors(base, cgroup_path):
            quota, period = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
            try:
                quota_us, period_us = int(quota or ""), int(period or "")
            except ValueError:
                continue
            if quota_us <= 0 or period_us <= 0:
                continue
            cores = quota_us / period_us
            tightest = cores if tightest is None else min(tightest, cores)
        break
    return tightest


def cgroup_quota(
    root: Path = CGROUP_ROOT, proc_self_cgroup: Path = PROC_SELF_CGROUP
) -> tuple[float, str] | None:
    """The CPU quota of this process's cgroup in cores (may be fractional) and which cgroup
    version set it, or None without one."""
    v2_path, v1_path = _cgroup_paths(proc_self_cgroup)
    if v2_path is not None and (quota := _v2_quota(root, v2_path)) is not None:
        return quota, "cgroup v2 quota"
    if v1_path is not None and (quota := _v1_quota(root, v1_path)) is not None:
        return quota, "cgroup v1 quota"
    return None


def cpu_budget(
    setting: float | None = None,
    *,
    root: Path = CGROUP_ROOT,
    proc_self_cgroup: Path = PROC_SELF_CGROUP,
) -> CpuBudget:
    """The cores to size thread pools by: `setting` when given (VAEGAN_CPUS, `fit --threads`),
    else min(affinity, cgroup quota), rounded down (1.5 cores -> 1: a second busy thread would
    be throttled half of every period), at least 1."""
    if setting is not None:
        return CpuBudget(max(1, math.floor(setting)), "setting")
    budget = CpuBudget(affinity_cores(), "affinity")
    quota = cgroup_quota(root, proc_self_cgroup)
    if quota is not None and math.floor(quota[0]) < budget.cores:
        budget = CpuBudget(max(1, math.floor(quota[0])), quota[1])
    return budget


def split_threads(cores: int, *, device_type: str = "cpu") -> ThreadSplit:
    """Threads for one process with `cores` cores, never more busy threads than cores.

    On the CPU the model's forwards are most of the work: a quarter of the cores (at least one)
    decode and encode images, the rest run torch. With one core both pools get one thread and
    take turns (one torch thread does not spin). On a GPU the model thread only launches kernels,
    so it keeps one thread and the codec gets the other cores.
    """
    cores = max(1, cores)
    if device_type == "cuda":
        return ThreadSplit(torch_threads=1, codec_threads=max(1, cores - 1))
    codec = max(1, cores // 4)
    return ThreadSplit(torch_threads=max(1, cores - codec), codec_threads=codec)
