"""`vaegan-serve` refuses a checkpoint it cannot serve at start, with one line and exit 2.

Each of these used to end differently: a 17-line PermissionError, or a service that reported
ready and then answered 500 (or NaN) to every request that touched the model.
"""

import os
import shutil
import sys

import pytest

from tests.checkpoint_variants import (
    negative_variance,
    preprocessing_change,
    rewrite_checkpoint,
)
from tests.processes import as_unprivileged_user, folder_anyone_can_enter, run_measured
from tests.service.conftest import free_port

SERVE = [sys.executable, "-m", "service"]


def _serve(checkpoint, **popen):
    environment = {k: v for k, v in os.environ.items() if not k.startswith("VAEGAN_")}
    command = [*SERVE, "--checkpoint", str(checkpoint), "--device", "cpu"]
    # A checkpoint that is wrongly accepted starts a server, which the timeout ends: the test
    # then fails on the exit code instead of hanging.
    command += ["--port", str(free_port())]
    return run_measured(
        as_unprivileged_user(command) if popen.pop("unprivileged", False) else command,
        timeout=60,
        env=environment,
        **popen,
    )


def _one_line(result, message):
    assert result.returncode == 2, result.stderr
    assert result.error_lines == [f"vaegan-serve: error: {message}"]
    assert result.seconds < 30  # interpreter start-up and imports


def test_a_checkpoint_the_service_user_cannot_read(checkpoint_path):
    with folder_anyone_can_enter() as folder:
        locked = folder / "model.safetensors"
        shutil.copyfile(checkpoint_path, locked)
        locked.chmod(0)
        result = _serve(locked, unprivileged=True, cwd=folder)
    _one_line(result, f"checkpoint {locked}: cannot be read (permission denied)")


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            {"tensors": negative_variance},
            "negative batch-norm variances in encoder.features.0.bn.running_var",
        ),
        (
            {"header": preprocessing_change("image_size", 32)},
            "preprocessing produces 3x32px images but the model takes 3x64px",
        ),
    ],
    ids=["negative-variance", "preprocessing-size"],
)
def test_a_checkpoint_that_would_fail_every_request_stops_the_start(
    checkpoint_path, tmp_path, change, problem
):
    broken = rewrite_checkpoint(checkpoint_path, tmp_path / "broken.safetensors", **change)
    _one_line(_serve(broken), f"checkpoint {broken}: {problem}")
