"""Take the README's picture of the web page: docs/images/web-page.png.

    python scripts/screenshot_web.py [--checkpoint PATH] [--out docs/images/web-page.png]

Starts `python -m service` on a free loopback port (the bundled demo model unless --checkpoint
names another), drives the page in headless Chromium as a visitor would (upload a synthetic face,
raise Smiling, generate samples, interpolate between two more faces) and saves a full-page
screenshot. Needs the dev extra (Playwright) and Debian's Chromium (`apt-get install chromium`).
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from model.demo import demo_checkpoint_path
from training.synth import face_rng, render_face, sample_face

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "docs" / "images" / "web-page.png"
TIMEOUT_MS = 60_000


def face_png(seed: int, index: int) -> bytes:
    buffer = io.BytesIO()
    render_face(sample_face(face_rng(seed, index))).save(buffer, format="PNG")
    return buffer.getvalue()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_service(checkpoint: Path, port: int, log: Any) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "service", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--checkpoint", str(checkpoint), "--log-level", "warning"]
    # One intra-op thread: the page sends one small request at a time, and the machine may be
    # busy training.
    env = {"VAEGAN_TORCH_THREADS": "1", **os.environ}
    return subprocess.Popen(command, env=env, stdout=log, stderr=log)


def wait_until_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the service stopped with exit status {process.returncode}")
        try:
            if httpx.get(f"{url}/health/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the service at {url} was not ready after {timeout:g} s")


def drive(page: Any, url: str, seed: int) -> None:
    """What a visitor does first; every step waits for the page to show its result."""
    from playwright.sync_api import expect

    def png(name: str, data: bytes) -> dict[str, Any]:
        return {"name": name, "mimeType": "image/png", "buffer": data}

    page.goto(url)
    expect(page.get_by_label("Smiling")).to_be_attached()
    page.locator("#face-file").set_input_files(png("face.png", face_png(seed, 1)))
    expect(page.locator("#face-message")).to_have_text("Reconstructed face.png.")
    page.get_by_label("Smiling").fill("2")
    expect(page.locator("#face-edited")).to_have_attribute("alt", "The face edited: Smiling +2.0")

    page.get_by_label("Faces").fill("16")
    page.get_by_label("Seed").fill(str(seed))
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#samples img")).to_have_count(16)

    page.locator("#end-a-file").set_input_files(png("a.png", face_png(seed, 2)))
    page.locator("#end-b-file").set_input_files(png("b.png", face_png(seed, 3)))
    expect(page.locator("#strip img")).to_have_count(8)
    page.mouse.move(0, 0)  # no hover highlight in the picture


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--checkpoint", type=Path, default=None, help="default: the bundled demo model"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"default: {DEFAULT_OUT}")
    parser.add_argument(
        "--chromium",
        type=Path,
        default=Path(shutil.which("chromium") or "/usr/bin/chromium"),
        help="the Chromium to drive (default: chromium on PATH)",
    )
    parser.add_argument("--width", type=int, default=1280, help="viewport width in CSS pixels")
    parser.add_argument("--seed", type=int, default=7, help="the faces' and the samples' seed")
    args = parser.parse_args()

    checkpoint = args.checkpoint or demo_checkpoint_path()
    if not checkpoint.is_file():
        print(f"error: no checkpoint at {checkpoint}; pass --checkpoint PATH", file=sys.stderr)
        return 2
    if not args.chromium.is_file():
        print(f"error: no Chromium at {args.chromium}: apt-get install chromium", file=sys.stderr)
        return 2
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print('error: Playwright is missing: pip install -e ".[dev]"', file=sys.stderr)
        return 2

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        service = start_service(checkpoint, port, log)
        try:
            wait_until_ready(url, service)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=str(args.chromium))
                page = browser.new_page(
                    viewport={"width": args.width, "height": 900}, color_scheme="light"
                )
                page.set_default_timeout(TIMEOUT_MS)
                drive(page, url, args.seed)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(args.out), full_page=True)
                browser.close()
        except Exception as exc:
            log.seek(0)
            print(f"error: {exc}\n{log.read().decode(errors='replace')}", file=sys.stderr)
            return 1
        finally:
            service.terminate()
            service.wait(timeout=30)
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes) from {checkpoint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
