"""The Dockerfile and compose files, checked with real tools and against the code they run.

There is no Docker engine here, so nothing is built; what can be checked without one is.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import httpx
import pytest

from model.demo import DEMO_CHECKPOINT_NAME
from service.app import create_app
from service.settings import ServiceSettings

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
COMPOSE_VARIANTS = {
    "gpu": ["-f", "docker-compose.yml"],
    "cpu": ["-f", "docker-compose.yml", "-f", "docker-compose.cpu.yml"],
}


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = (ROOT / "Dockerfile").read_text()
    joined = re.sub(r"\\\n\s*", " ", text)
    instructions = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def _compose_config(*extra: str) -> dict:
    result = subprocess.run(
        [str(BIN / "docker-compose"), *extra, "config", "--format", "json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("VAEGAN_")},
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_hadolint_passes():
    result = subprocess.run(
        [str(BIN / "hadolint"), "Dockerfile"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_hadolint_ignore_is_justified_in_a_comment():
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    for number, line in enumerate(lines):
        if "hadolint ignore" in line:
            previous = lines[number - 1].strip()
            assert previous.startswith("#") and "hadolint" not in previous, f"line {number + 1}"


@pytest.mark.parametrize("variant", sorted(COMPOSE_VARIANTS))
@pytest.mark.parametrize("profile", [[], ["--profile", "train"]])
def test_compose_files_are_valid(variant, profile):
    config = _compose_config(*COMPOSE_VARIANTS[variant], *profile)
    assert "api" in config["services"]
    if profile:
        assert "train" in config["services"]


def test_gpu_compose_reserves_a_gpu_and_cpu_override_does_not():
    gpu = _compose_config(*COMPOSE_VARIANTS["gpu"])["services"]["api"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    cpu = _compose_config(*COMPOSE_VARIANTS["cpu"])["services"]["api"]
    assert "deploy" not in cpu or not cpu["deploy"].get("resources")
    assert cpu["build"]["args"]["VARIANT"] == "cpu"
    assert cpu["environment"]["VAEGAN_DEVICE"] == "cpu"


def test_compose_operational_settings():
    api = _compose_config(*COMPOSE_VARIANTS["gpu"])["services"]["api"]
    mount = next(v for v in api["volumes"] if v["target"] == "/checkpoints")
    assert mount["read_only"] is True and Path(mount["source"]) == ROOT / "checkpoints"
    assert api["restart"] == "unless-stopped"
    # Unset, compose passes an empty value, which the service reads as "the bundled demo model".
    assert api["environment"]["VAEGAN_CHECKPOINT"] == ""
    assert "/health/ready" in " ".join(api["healthcheck"]["test"])
    grace = api["stop_grace_period"]
    assert grace.endswith("s") and int(grace[:-1]) > 10, "longer than uvicorn's 10 s drain"


def test_the_files_agree_with_each_other_and_the_code():
    instructions = _dockerfile_instructions()
    # Every path the Dockerfile copies from the build context exists.
    for keyword, arguments in instructions:
        if keyword == "COPY" and "--from=" not in arguments:
            sources = [a for a in shlex.split(arguments) if not a.startswith("--")][:-1]
            for source in sources:
                assert (ROOT / source).exists(), source
    # The CMD runs a console script of this package, on the port the image exposes.
    (cmd,) = [json.loads(a) for k, a in instructions if k == "CMD"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert cmd[0] in scripts and scripts[cmd[0]] == "service.cli:main"
    (exposed,) = [a for k, a in instructions if k == "EXPOSE"]
    assert cmd[cmd.index("--port") + 1] == exposed
    api = _compose_config(*COMPOSE_VARIANTS["gpu"])["services"]["api"]
    assert [p["target"] for p in api["ports"]] == [int(exposed)]
    # The health checks probe a route the app has.
    (healthcheck,) = [a for k, a in instructions if k == "HEALTHCHECK"]
    path = re.search(r"127\.0\.0\.1:\d+(/[\w/]+)", healthcheck).group(1)
    routes = set(create_app(ServiceSettings(checkpoint="unused")).openapi()["paths"])
    assert path in routes and path == "/health/ready"
    # Every VAEGAN_* variable handed to the containers is a real setting.
    settings = {f"VAEGAN_{name.upper()}" for name in ServiceSettings.model_fields}
    environment = {
        name for k, a in instructions if k == "ENV" for name in re.findall(r"(VAEGAN_\w+)=", a)
    }
    environment |= set(api["environment"])
    assert environment and environment <= settings, environment - settings


def _image_environment() -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, arguments in _dockerfile_instructions():
        if keyword == "ENV":
            for name, value in re.findall(r"(\w+)=(\S+)", arguments):
                env[name] = value
    return env


@pytest.mark.slow
def test_the_images_cmd_runs_as_written(tmp_path):
    """Install the way the Dockerfile does, in a fresh venv, then run its CMD line as written."""
    from tests.service.conftest import free_port, wait_until_ready

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "torch==2.13.0"], check=True, timeout=600)
    requirements = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    subprocess.run([*pip, *requirements], check=True, timeout=600)
    subprocess.run([*pip, "--no-deps", str(ROOT)], check=True, timeout=600)

    (cmd,) = [json.loads(a) for k, a in _dockerfile_instructions() if k == "CMD"]
    port = free_port()
    cmd = [str(venv / "bin" / cmd[0]), *cmd[1:]]
    cmd[cmd.index("--port") + 1] = str(port)  # a free port here; 8000 inside the container
    # The image's PATH starts with its venv; here the fresh venv takes that place.
    env = {**_image_environment(), "PATH": f"{venv / 'bin'}:/usr/bin:/bin"}
    env["VAEGAN_DEVICE"] = "cpu"
    process = subprocess.Popen(
        cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_until_ready(f"http://127.0.0.1:{port}", process, timeout=120)
        info = httpx.get(f"http://127.0.0.1:{port}/model").json()
        assert info["device"] == "cpu"
        # The demo model came with the non-editable install, as package data.
        assert info["path"].startswith(str(venv)) and info["path"].endswith(DEMO_CHECKPOINT_NAME)
        # So did the API docs' scripts (a dependency's files, served by the service).
        docs = httpx.get(f"http://127.0.0.1:{port}/docs/swagger-ui-bundle.js")
        assert docs.status_code == 200
        assert docs.headers["content-type"].startswith("text/javascript")
    finally:
        process.terminate()
        process.communicate(timeout=30)
