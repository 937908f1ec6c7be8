"""Real processes: a run killed with SIGKILL resumes exactly; two gloo ranks stay in sync."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from model.checkpoint import load_checkpoint
from training.run_dir import load_training_state, read_metrics

FIT = [
    sys.executable,
    "-m",
    "training",
    "fit",
    "--preset",
    "small32",
    "--batch-size",
    "8",
    "--quiet",
]
# ALI's variants start the same processes as the VAE-GAN's: they run with CI's slow tests, so
# the default run stays under ten minutes.
OBJECTIVES = ["vaegan", pytest.param("ali", marks=pytest.mark.slow)]


def _env():
    # Same thread count in every run so the arithmetic is identical.
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}


def _run_group(command, timeout=300):
    """Run torchrun in its own process group, so a hang never leaves orphaned ranks behind."""
    process = subprocess.Popen(
        command,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def _state_step(path):
    try:
        return load_training_state(path)[1]["step"]
    except Exception:  # not written yet, or being replaced
        return -1


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_a_killed_run_resumes_exactly(synthetic_celeba, tmp_path, objective):
    common = [
        "--objective",
        objective,
        "--data",
        str(synthetic_celeba),
        "--steps",
        "14",
        "--checkpoint-every",
        "4",
        "--log-every",
        "1",
    ]
    straight = tmp_path / "straight"
    subprocess.run([*FIT, *common, "--out", str(straight)], check=True, env=_env(), timeout=300)

    killed = tmp_path / "killed"
    process = subprocess.Popen(
        [*FIT, *common, "--out", str(killed)], env=_env(), stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 240
    while _state_step(killed / "state.safetensors") < 4:
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not (killed / "model.safetensors").exists(), "the kill must land mid-run"

    resumed = subprocess.run(
        [*FIT, *common, "--out", str(killed), "--resume"],
        env=_env(),
        timeout=300,
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 0, resumed.stderr

    a = load_checkpoint(straight / "model.safetensors")
    b = load_checkpoint(killed / "model.safetensors")
    assert a.header.step == b.header.step == 14
    state_a, state_b = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a), "resume must be exact"
    for name in a.attributes:
        assert torch.equal(a.attributes[name].vector, b.attributes[name].vector)
    # The metrics log has each step once: lines the killed run wrote past its saved state are gone.
    steps = [r["step"] for r in read_metrics(killed / "metrics.jsonl")]
    assert steps == list(range(1, 15))
    # ALI's dropout masks come back too: its losses match step for step like the VAE-GAN's.
    loss = "L_llike" if objective == "vaegan" else "L_gen"
    losses_a = [r[loss] for r in read_metrics(straight / "metrics.jsonl")]
    losses_b = [r[loss] for r in read_metrics(killed / "metrics.jsonl")]
    assert losses_a == losses_b


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_two_gloo_ranks_stay_in_sync(synthetic_celeba, tmp_path, objective):
    out = tmp_path / "ddp"
    # For the VAE-GAN, an equilibrium that pauses D on some steps and not others (its first
    # update takes real_cost from 0.63 to 0.5, under 0.6 - 0.05): a paused D's backward pass is
    # skipped, and DDP must not mind a step whose D ran forward without one.
    pauses = ["--equilibrium", "0.6", "--margin", "0.05"] if objective == "vaegan" else []
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",  # a free port of its own: parallel test runs cannot collide
        "--nproc_per_node=2",
        "-m",
        "training",
        "fit",
        "--data",
        str(synthetic_celeba),
        "--out",
        str(out),
        "--preset",
        "small32",
        "--batch-size",
        "8",
        "--steps",
        "6",
        "--checkpoint-every",
        "3",
        "--objective",
        objective,
        *pauses,
        "--quiet",
        "--device",
        "cpu",
    ]
    result = _run_group(command)
    assert result.returncode == 0, result.stderr[-3000:]
    # Checked at every save by gathering each rank's weight checksum.
    assert result.stderr.count("all 2 ranks in sync") == 2, result.stderr[-3000:]
    checkpoint = load_checkpoint(out / "model.safetensors")
    assert checkpoint.header.step == 6
    assert checkpoint.header.recipe["world_size"] == 2
    assert checkpoint.header.objective == objective
    # Rank 0 alone writes: one set of files, one metrics line per log step.
    metrics = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in metrics] == [6]
    if objective == "vaegan":
        assert 0 < metrics[-1]["discriminator_skips"] < 6, metrics
    assert json.loads((out / "run.json").read_text())["recipe"]["batch_size"] == 8

    # The distributed run resumes too.
    resumed = _run_group([*command[:-3], "--steps", "8", "--resume", "--quiet", "--device", "cpu"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert load_checkpoint(out / "model.safetensors").header.step == 8
