"""`vaegan-serve` / `python -m service`: a real start, a graceful stop, readable start failures."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.service.conftest import free_port, wait_until_ready
from tests.service.test_attacks import assert_connection_limits

SERVE = [sys.executable, "-m", "service"]


def _run(args, env=None, timeout=60):
    environment = {k: v for k, v in os.environ.items() if not k.startswith("VAEGAN_")}
    environment.update(env or {})
    return subprocess.run(
        [*SERVE, *args], capture_output=True, text=True, timeout=timeout, env=environment
    )


def test_starts_serves_and_stops_gracefully(checkpoint_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAEGAN_")}
    env |= {"VAEGAN_CHECKPOINT": str(checkpoint_path), "VAEGAN_MAX_BATCH_SIZE": "8"}
    connection = ["--keep-alive-timeout-s", "1", "--header-timeout-s", "0.5"]
    process = subprocess.Popen(
        [*SERVE, "--port", str(port), "--device", "cpu", *connection],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until_ready(f"http://127.0.0.1:{port}", process)
        info = httpx.get(f"http://127.0.0.1:{port}/model").json()
        assert info["batching"]["max_batch_size"] == 8  # from the environment
        assert httpx.post(f"http://127.0.0.1:{port}/sample", params={"n": 2}).status_code == 200
        assert_connection_limits(f"http://127.0.0.1:{port}", keep_alive_s=1, header_s=0.5)
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    # uvicorn drains and runs the lifespan shutdown, then re-raises SIGTERM so a supervisor sees
    # why the process ended.
    assert process.returncode in (0, -signal.SIGTERM), stderr
    assert "Application shutdown complete" in stderr
    assert '"route": "/sample", "status": 200' in stderr  # the structured access line


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (
            ["--checkpoint", "/nowhere/model.safetensors"],
            {},
            "checkpoint /nowhere/model.safetensors: no such file",
        ),
        (
            ["--checkpoint", "x"],
            {"VAEGAN_MAX_BATCH_SIZE": "0"},
            "max_batch_size (VAEGAN_MAX_BATCH_SIZE): Input should be greater than or equal to 1",
        ),
        (
            ["--checkpoint", "x", "--device", "tpu"],
            {},
            "device (VAEGAN_DEVICE): Value error, must be auto, cpu, cuda or cuda:N",
        ),
        (["--checkpoint", "x"], {"VAEGAN_MAX_SAMPLES": "many"}, "max_samples (VAEGAN_MAX_SAMPLES)"),
    ],
)
def test_bad_configuration_stops_the_start_with_one_line(args, env, message):
    result = _run(args, env)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_damaged_checkpoint_stops_the_start(tmp_path, checkpoint_path):
    damaged = tmp_path / "cut.safetensors"
    damaged.write_bytes(Path(checkpoint_path).read_bytes()[:-1000])
    result = _run(["--checkpoint", str(damaged), "--device", "cpu"])
    assert result.returncode == 2
    assert "truncated" in result.stderr and "Traceback" not in result.stderr


def test_cuda_without_a_gpu_stops_the_start(checkpoint_path):
    if __import__("torch").cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = _run(["--checkpoint", str(checkpoint_path), "--device", "cuda"])
    assert result.returncode == 2
    assert "no CUDA" in result.stderr
