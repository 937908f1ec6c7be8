"""Real uvicorn servers on free loopback ports, serving checkpoints made here."""

from __future__ import annotations

import io
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
import uvicorn
from PIL import Image

from model.checkpoint import AttributeVector, save_checkpoint
from model.codec import Preprocessing
from model.config import get_preset
from model.networks import build_vaegan
from service.app import create_app
from service.server import uvicorn_config
from service.settings import ServiceSettings

ATTRIBUTES = ("Smiling", "Eyeglasses", "Male")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class RunningServer:
    url: str
    settings: ServiceSettings
    server: uvicorn.Server
    thread: threading.Thread

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, **kwargs)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def start_server(checkpoint: Path, **overrides: Any) -> RunningServer:
    port = free_port()
    settings = ServiceSettings(
        checkpoint=checkpoint, device="cpu", host="127.0.0.1", port=port, **overrides
    )
    # The CLI's own uvicorn configuration (connection limits and timeouts included).
    config = uvicorn_config(
        create_app(settings), settings, log_level="warning", access_log=False, lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url)
    except AssertionError:
        server.should_exit = True
        raise
    return RunningServer(url, settings, server, thread)


def wait_until_ready(
    url: str, process: subprocess.Popen[str] | None = None, timeout: float = 60
) -> None:
    """Poll /health/ready until it answers 200; fail early if `process` dies first."""
    deadline = time.monotonic() + timeout
    while True:
        if process is not None:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
        try:
            if httpx.get(f"{url}/health/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"{url} did not become ready in {timeout:g} s"
        time.sleep(0.05)


@pytest.fixture(scope="session")
def checkpoint_path(tmp_path_factory) -> Path:
    """An untrained small64 model with three attribute vectors: enough to test the service."""
    config = get_preset("small64")
    model = build_vaegan(config, seed=0)
    model.train()
    with torch.no_grad():  # settle the BN statistics so eval-mode outputs vary with the input
        for _ in range(3):
            x = torch.rand(16, 3, 64, 64) * 2 - 1
            model.discriminator(model.decoder(model.encoder(x).mu))
    generator = torch.Generator().manual_seed(1)
    attributes = {
        name: AttributeVector(torch.randn(config.latent_dim, generator=generator), 30, 70)
        for name in ATTRIBUTES
    }
    path = tmp_path_factory.mktemp("model") / "small64.safetensors"
    return save_checkpoint(
        path, model.eval(), preprocessing=Preprocessing(64), step=7, attributes=attributes
    )


@pytest.fixture(scope="session")
def server(checkpoint_path) -> Iterator[RunningServer]:
    running = start_server(checkpoint_path, max_batch_delay_ms=10, max_upload_bytes=2_000_000)
    yield running
    running.stop()


@pytest.fixture
def http(server) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def image_bytes(colour=(200, 120, 40), size=(120, 150), fmt="PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format=fmt)
    return buffer.getvalue()


def png_size(data: bytes) -> tuple[int, int]:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    return image.size
