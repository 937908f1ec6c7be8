"""Service settings: every knob from the environment (`VAEGAN_*`) or the command line, validated."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from model.demo import demo_checkpoint_path
from model.device import DEVICE_NAMES, is_device_name


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(
        # An empty variable (compose's `${VAEGAN_X:-}`) means "use the default", not "".
        env_prefix="VAEGAN_",
        extra="forbid",
        env_ignore_empty=True,
    )

    checkpoint: Path = Field(
        default_factory=demo_checkpoint_path,
        description="the .safetensors checkpoint to serve (default: the bundled demo model)",
    )
    device: str = Field("auto", description="auto (CUDA when present), cpu, cuda or cuda:N")
    half_precision: bool = Field(False, description="fp16 weights on CUDA")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    api_key: SecretStr | None = Field(None, description="require 'Authorization: Bearer <key>'")

    max_batch_size: int = Field(32, ge=1, le=1024, description="images per forward pass")
    max_batch_delay_ms: float = Field(
        5.0, ge=0.0, le=1000.0, description="how long a forward waits for company"
    )
    max_queue: int = Field(512, ge=1, description="queued images before 503")
    request_timeout_s: float = Field(30.0, gt=0.0, le=3600.0)
    max_upload_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    max_json_bytes: int = Field(
        512 * 1024,
        ge=1024,
        description="largest application/json body; parsing holds the event loop, about 10 ms "
        "per MB, so keep it near what max_samples latents need",
    )
    max_image_pixels: int = Field(40_000_000, ge=64)
    max_request_pixels: int = Field(
        80_000_000,
        ge=64,
        description="pixels of all the images in one request together (from their headers; "
        "two images at max_image_pixels by default)",
    )
    max_samples: int = Field(64, ge=1, le=1024)
    max_strengths: int = Field(16, ge=1, le=256)
    max_strength: float = Field(10.0, gt=0.0, description="largest |strength| of an edit")
    max_interpolation_steps: int = Field(32, ge=2, le=256)
    max_images_per_request: int = Field(16, ge=1, le=1024)
    # How the process uses the machine (service/sizing.py turns these into a plan).
    workers: int | None = Field(
        None,
        ge=1,
        le=64,
        description="server processes, each with its own model and micro-batcher (default: one "
        "per usable core on the CPU, one on a GPU); each costs about 200 MB",
    )
    cpus: float | None = Field(
        None,
        gt=0,
        description="cores this service may use (default: the cgroup quota and affinity mask)",
    )
    decode_threads: int | None = Field(
        None, ge=1, le=64, description="threads per worker decoding/encoding images"
    )
    torch_threads: int | None = Field(
        None, ge=1, le=256, description="intra-op threads per worker for the model"
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    protect_docs: bool = Field(
        True, description="with an API key set, /docs, /redoc and /openapi.json require it too"
    )

    # The connection: what one client can hold open, and for how long.
    max_header_bytes: int = Field(
        32 * 1024, ge=1024, le=1024 * 1024, description="request line and headers, in bytes"
    )
    keep_alive_timeout_s: int = Field(
        75,
        ge=1,
        le=3600,
        description="close a connection idle this long (a load balancer's idle timeout in front "
        "must be shorter)",
    )
    header_timeout_s: float = Field(
        10.0, gt=0.0, le=3600.0, description="a request's line and headers must arrive in this time"
    )
    body_timeout_s: float = Field(
        60.0, gt=0.0, le=3600.0, description="a request's body must arrive in this time"
    )

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if not is_device_name(value):
            raise ValueError(f"must be {DEVICE_NAMES}")
        return value

    @field_validator("api_key")
    @classmethod
    def _non_empty_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            return None  # an empty VAEGAN_API_KEY means "no key", not "the empty key"
        return value
