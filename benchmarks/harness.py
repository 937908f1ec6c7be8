"""What the benchmarks share: the service as a subprocess, inputs and checkpoints, percentiles,
a description of the machine the figures came from, and docs/benchmarks.md's sections.

Used by `serve_load.py` (the concurrency sweep), `load_soak.py` (soak and overload),
`attacks.py` (issue 15's attacks), `onnx_vs_torch.py` (onnxruntime against PyTorch),
`run_all.py` and tests/service/test_load.py.
"""

from __future__ import annotations

import argparse
import datetime
import io
import math
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

# Lets the scripts run from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import torch

from model.checkpoint import AttributeVector, save_checkpoint
from model.codec import Preprocessing, load_image_tensor
from model.config import get_preset
from model.networks import build_vaegan
from training.synth import face_rng, render_face, sample_face

ROOT = Path(__file__).resolve().parents[1]
ATTRIBUTES = ("Smiling", "Eyeglasses", "Male")


# --------------------------------------------------------------------------------------------
# inputs


def make_checkpoint(directory: Path, preset: str = "small64") -> Path:
    """An untrained model with random attribute vectors: the timings do not depend on the
    weights' values. Its batch-norm statistics are the exact averages over a few batches of
    faces and prior samples, so that, unlike a fresh model's (whose eval-mode outputs saturate
    to one image), its answers differ from input to input and can be told apart."""
    config = get_preset(preset)
    model = build_vaegan(config, seed=0)
    model.train()
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.momentum = None  # a cumulative average, not an exponential one
    preprocessing = Preprocessing(config.image_size, config.channels)
    faces = torch.stack([load_image_tensor(face_jpeg(i), preprocessing) for i in range(16)])
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _ in range(4):
            z = torch.randn(len(faces), config.latent_dim, generator=generator)
            model.discriminator(torch.cat([model.decoder(model.encoder(faces).mu), faces]))
            model.discriminator(model.decoder(z))
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.momentum = 0.1
    generator = torch.Generator().manual_seed(1)
    attributes = {
        name: AttributeVector(torch.randn(config.latent_dim, generator=generator), 30, 70)
        for name in ATTRIBUTES
    }
    return save_checkpoint(
        directory / f"{preset}.safetensors",
        model.eval(),
        preprocessing=preprocessing,
        attributes=attributes,
    )


def face_jpeg(index: int = 0) -> bytes:
    """One 178x218 synthetic face, as a CelebA-like JPEG upload."""
    buffer = io.BytesIO()
    render_face(sample_face(face_rng(0, index))).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------
# statistics


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank `q`th percentile; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


# --------------------------------------------------------------------------------------------
# the server


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def proc_status_kib(pid: int, field: str) -> int | None:
    """A `kB` field of /proc/PID/status (VmRSS, VmHWM, ...); None off Linux or once it exited."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def add_server_setting_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--server-setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a service setting, e.g. torch_threads=1 (passed as VAEGAN_TORCH_THREADS)",
    )


def server_settings_env(parser: argparse.ArgumentParser, items: Sequence[str]) -> dict[str, str]:
    """`--server-setting NAME=VALUE` items as the service's environment variables."""
    env = {}
    for item in items:
        name, separator, value = item.partition("=")
        if not separator:
            parser.error(f"--server-setting wants NAME=VALUE, got {item!r}")
        env[f"VAEGAN_{name.upper()}"] = value
    return env


class Server:
    """`python -m service` in a subprocess, ready when `wait_ready` returns."""

    def __init__(
        self,
        checkpoint: Path,
        options: dict[str, str],
        log: Path,
        extra_env: dict[str, str],
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "service", "--checkpoint", str(checkpoint)]
        command += ["--port", str(self.port), "--device", "cpu", "--log-level", "warning"]
        for name, value in options.items():
            command += [name, value]
        # Only the options given here: a VAEGAN_* variable in the shell would skew a mode.
        env = {k: v for k, v in os.environ.items() if not k.startswith("VAEGAN_")}
        env |= extra_env
        self.log = log
        self._log_file = log.open("wb")
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=self._log_file, stderr=subprocess.STDOUT
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                if httpx.get(f"{self.url}/health/ready", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the server did not become ready; its log:\n{self.log.read_text()}")

    def cpu_seconds(self) -> float:
        """User + system CPU of the server process so far (Linux /proc; 0 elsewhere)."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_kib(self) -> int | None:
        """Resident memory now."""
        return proc_status_kib(self.pid, "VmRSS")

    def peak_rss_kib(self) -> int | None:
        """The most resident memory the process has had (the kernel's high-water mark)."""
        return proc_status_kib(self.pid, "VmHWM")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log_file.close()


# --------------------------------------------------------------------------------------------
# the machine


def machine() -> dict[str, str]:
    """What the figures were measured on, for the report."""
    info = {
        "cpu": _cpu_model(),
        "cores": str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else ""),
        "memory": _memory(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "torch": f"{torch.__version__} ({torch.get_num_threads()} intra-op threads)",
        "gpu": _gpu(),
    }
    if hasattr(os, "getloadavg"):
        info["load average"] = " ".join(f"{value:.2f}" for value in os.getloadavg())
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory() -> str:
    kib = _meminfo_kib("MemTotal")
    return f"{kib / 1024**2:.1f} GiB" if kib else "unknown"


def _meminfo_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def git_revision() -> str:
    """The commit the figures came from, and whether the tree had uncommitted changes."""
    try:
        commit = _git("rev-parse", "--short", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit} (with uncommitted changes)" if dirty else commit


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()


def announce(command: str) -> dict[str, str]:
    """Print the command and the machine, warn when the machine is busy; the machine's
    description, for the report."""
    info = machine()
    print(command)
    for name, value in info.items():
        print(f"  {name}: {value}")
    if hasattr(os, "getloadavg") and os.getloadavg()[0] > 0.5 * (os.cpu_count() or 1):
        print("warning: the machine is busy; every figure below will be pessimistic")
    return info


def _gpu() -> str:
    if not torch.cuda.is_available():
        return "none used (CPU only)"
    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return f"{', '.join(names)} (CUDA {torch.version.cuda}; the benchmarks here use the CPU)"


# --------------------------------------------------------------------------------------------
# docs/benchmarks.md

# benchmarks/attacks.py, onnx_vs_torch.py, peers_compare.py and noisy_neighbour.py write these
# sections; run_all.py, which writes the rest, keeps them.
ATTACKS_HEADING = "## Attacks (issue 15's hardening)"
ONNX_HEADING = "## onnxruntime against PyTorch (the ONNX export)"
PEERS_HEADING = "## Against LitServe and plain FastAPI (the same model)"
NEIGHBOUR_HEADING = "## Beside a noisy neighbour"
OWN_SECTIONS = (ATTACKS_HEADING, ONNX_HEADING, PEERS_HEADING, NEIGHBOUR_HEADING)


def markdown_section(text: str, heading: str) -> str | None:
    """The section of `text` under the line `heading`, up to the next `## ` heading, with its
    heading; None when there is none."""
    lines = text.splitlines()
    if heading not in lines:
        return None
    start = lines.index(heading)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return "\n".join(lines[start:end]).rstrip() + "\n"


def with_markdown_section(text: str, heading: str, section: str) -> str:
    """`text` with the section under `heading` replaced by `section` (which starts with that
    heading), or `section` added at the end when there is none."""
    old = markdown_section(text, heading)
    if old is None:
        return text.rstrip() + "\n\n" + section if text.strip() else section
    lines = text.splitlines()
    start = lines.index(heading)
    end = start + len(old.rstrip().splitlines())
    after = "\n".join(lines[end:]).strip()
    before = "\n".join(lines[:start])
    return before + "\n" + section + ("\n" + after + "\n" if after else "")


def write_docs_section(docs: Path, heading: str, section: str) -> None:
    """Replace (or add) the section under `heading` of the page `docs` with `section`."""
    old = docs.read_text() if docs.is_file() else ""
    docs.write_text(with_markdown_section(old, heading, section))
    print(f"wrote the section '{heading}' of {docs}")


def measured_by(
    command: str, started: datetime.datetime, minutes: float, machine_info: dict[str, str]
) -> str:
    """The line that opens a section: which command, when, which commit, on what machine."""
    described = ", ".join(f"{name} {value}" for name, value in machine_info.items())
    return (
        f"Measured by `{command}` on {started:%Y-%m-%d} in {minutes:.1f} minutes, commit "
        f"{git_revision()}, on: {described}."
    )
