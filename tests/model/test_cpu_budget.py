"""The CPU budget comes from the quota the process really has: fake cgroup v1/v2 trees (the same
files the kernel shows under /sys/fs/cgroup) are read as the kernel means them."""

from __future__ import annotations

from pathlib import Path

import pytest

from model.cpu_budget import affinity_cores, cgroup_quota, cpu_budget, split_threads


def _tree(tmp_path: Path, proc_line: str, files: dict[str, str]) -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    root.mkdir(exist_ok=True)
    proc = tmp_path / "proc-self-cgroup"
    proc.write_text(proc_line)
    return root, proc


def test_a_cgroup_v2_quota_caps_the_budget(tmp_path: Path) -> None:
    # A container's view: its own cgroup is the root; 1.5 cores are allowed.
    root, proc = _tree(tmp_path, "0::/\n", {"cpu.max": "150000 100000\n"})
    assert cgroup_quota(root, proc) == (1.5, "cgroup v2 quota")
    budget = cpu_budget(root=root, proc_self_cgroup=proc)
    assert (budget.cores, budget.source) == (1, "cgroup v2 quota")  # rounded down, never 0


def test_a_quota_on_a_parent_cgroup_counts_too(tmp_path: Path) -> None:
    # Kubernetes sets the pod's limit on the pod's cgroup; the container's own says "max".
    root, proc = _tree(
        tmp_path,
        "0::/kubepods/pod1/container\n",
        {
            "kubepods/cpu.max": "max 100000",
            "kubepods/pod1/cpu.max": "100000 100000",
            "kubepods/pod1/container/cpu.max": "max 100000",
        },
    )
    assert cgroup_quota(root, proc) == (1.0, "cgroup v2 quota")


def test_no_quota_leaves_the_affinity_mask(tmp_path: Path) -> None:
    root, proc = _tree(tmp_path, "0::/\n", {"cpu.max": "max 100000"})
    assert cgroup_quota(root, proc) is None
    assert cpu_budget(root=root, proc_self_cgroup=proc).cores == affinity_cores()
    # A quota above the machine's cores does not add cores.
    root, proc = _tree(tmp_path / "big", "0::/\n", {"cpu.max": "6400000 100000"})
    budget = cpu_budget(root=root, proc_self_cgroup=proc)
    assert (budget.cores, budget.source) == (affinity_cores(), "affinity")


def test_a_cgroup_v1_cfs_quota_caps_the_budget(tmp_path: Path) -> None:
    root, proc = _tree(
        tmp_path,
        "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/\n",
        {
            "cpu,cpuacct/cpu.cfs_quota_us": "100000\n",
            "cpu,cpuacct/cpu.cfs_period_us": "100000\n",
        },
    )
    assert cgroup_quota(root, proc) == (1.0, "cgroup v1 quota")
    assert cpu_budget(root=root, proc_self_cgroup=proc).cores == 1


def test_an_unlimited_v1_quota_is_no_quota(tmp_path: Path) -> None:
    root, proc = _tree(
        tmp_path,
        "4:cpu,cpuacct:/\n",
        {"cpu,cpuacct/cpu.cfs_quota_us": "-1", "cpu,cpuacct/cpu.cfs_period_us": "100000"},
    )
    assert cgroup_quota(root, proc) is None


@pytest.mark.parametrize("text", ["", "garbage", "100000", "abc 100000", "100000 0"])
def test_damaged_quota_files_are_ignored(tmp_path: Path, text: str) -> None:
    root, proc = _tree(tmp_path, "0::/\n", {"cpu.max": text})
    assert cgroup_quota(root, proc) is None


def test_without_cgroups_the_affinity_mask_counts(tmp_path: Path) -> None:
    missing = tmp_path / "nothing"
    assert cgroup_quota(missing, missing) is None
    assert cpu_budget(root=missing, proc_self_cgroup=missing).source == "affinity"


def test_a_setting_wins_over_what_the_system_says(tmp_path: Path) -> None:
    root, proc = _tree(tmp_path, "0::/\n", {"cpu.max": "100000 100000"})
    budget = cpu_budget(3.7, root=root, proc_self_cgroup=proc)
    assert (budget.cores, budget.source) == (3, "setting")
    assert cpu_budget(0.5).cores == 1
    assert str(budget) == "3 cores (setting)"


@pytest.mark.parametrize(
    ("cores", "device", "torch_threads", "codec_threads"),
    [(1, "cpu", 1, 1), (2, "cpu", 1, 1), (4, "cpu", 3, 1), (8, "cpu", 6, 2), (8, "cuda", 1, 7)],
)
def test_threads_never_outnumber_the_cores(
    cores: int, device: str, torch_threads: int, codec_threads: int
) -> None:
    split = split_threads(cores, device_type=device)
    assert (split.torch_threads, split.codec_threads) == (torch_threads, codec_threads)
    assert cores == 1 or split.torch_threads + split.codec_threads <= cores
