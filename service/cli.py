"""`vaegan-serve` (also `python -m service`): start the inference service."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

if TYPE_CHECKING:
    from service.settings import ServiceSettings
    from service.sizing import ServingPlan


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vaegan-serve",
        description=(
            "Serve a VAE-GAN checkpoint over HTTP. Every option can also be set in the "
            "environment as VAEGAN_<NAME> (e.g. VAEGAN_CHECKPOINT, VAEGAN_API_KEY, "
            "VAEGAN_MAX_BATCH_SIZE); options given here win."
        ),
    )
    parser.add_argument(
        "--checkpoint",
        type=Path,
        help="the .safetensors checkpoint to serve (default: the bundled demo model)",
    )
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default 8000)")
    parser.add_argument("--device", help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument(
        "--workers",
        type=int,
        help="server processes, each with its own model (default: one per usable core on the "
        "CPU, one on a GPU)",
    )
    parser.add_argument(
        "--cpus",
        type=float,
        help="cores to size workers and threads by (default: the cgroup quota and affinity)",
    )
    parser.add_argument("--max-batch-size", type=int, help="images per forward pass (default 32)")
    parser.add_argument("--max-batch-delay-ms", type=float, help="batching wait (default 5)")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    parser.add_argument(
        "--keep-alive-timeout-s",
        type=int,
        help="close idle connections after this long (default 75; keep a load balancer's idle "
        "timeout shorter)",
    )
    parser.add_argument(
        "--header-timeout-s", type=float, help="time for a request's headers (default 10)"
    )
    parser.add_argument(
        "--body-timeout-s", type=float, help="time for a request's body (default 60)"
    )
    return parser


def _settings(args: argparse.Namespace) -> Any:
    from service.settings import ServiceSettings

    overrides = {
        key: value
        for key, value in vars(args).items()
        if value is not None and key in ServiceSettings.model_fields
    }
    return ServiceSettings(**overrides)


def _explain(error: ValidationError) -> str:
    lines = []
    for problem in error.errors():
        name = ".".join(str(part) for part in problem["loc"])
        lines.append(f"{name} (VAEGAN_{name.upper()}): {problem['msg']}")
    return "; ".join(lines)


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    # Access lines are JSON objects already: print them bare, one per line.
    access = logging.getLogger("vaegan.access")
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    access.handlers = [handler]
    access.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = _settings(args)
    except ValidationError as exc:
        print(f"vaegan-serve: error: {_explain(exc)}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)

    from model.cpu_budget import cpu_budget
    from service.sizing import serving_plan

    if settings.workers != 1 and (settings.workers or cpu_budget(settings.cpus).cores) > 1:
        # Several workers are possible: check the device and the checkpoint in a short-lived
        # process, so that this supervisor never loads torch (2.5 s, ~250 MB) itself.
        from service.workers import preflight

        device_type, problem = preflight(settings)
        if problem is not None:
            print(f"vaegan-serve: error: {problem}", file=sys.stderr)
            return 2
        plan = serving_plan(settings, device_type)
        if plan.workers > 1:
            logging.getLogger("vaegan.service").info("%s", plan.describe())
            return _serve_workers(settings, plan)

    import uvicorn

    from model.checkpoint import CheckpointError, load_checkpoint
    from model.device import DeviceError, select_device
    from service.app import create_app
    from service.server import DRAIN_S, uvicorn_config

    try:
        device = select_device(settings.device)
        # Load here, before listening, so a bad file stops the start with one readable line.
        checkpoint = load_checkpoint(settings.checkpoint)
    except (CheckpointError, DeviceError) as exc:
        # A DeviceError names the device, not a flag: it may come from VAEGAN_DEVICE.
        print(f"vaegan-serve: error: {exc}", file=sys.stderr)
        return 2
    # One process: the app's Runtime sizes its threads by this same plan.
    plan = serving_plan(settings, device.type, default_workers=1)
    logging.getLogger("vaegan.service").info("%s", plan.describe())
    config = uvicorn_config(
        create_app(settings, checkpoint),
        settings,
        log_level=settings.log_level,
        access_log=False,  # our middleware writes structured access lines
        timeout_graceful_shutdown=DRAIN_S,
    )
    server = uvicorn.Server(config)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: uvicorn has shut down already
        server.run()
    # uvicorn has logged why it did not start (the port in use, say); 3 as `uvicorn.run` exits.
    return 0 if server.started else 3


def _serve_workers(settings: ServiceSettings, plan: ServingPlan) -> int:
    from service.workers import Supervisor, bind

    try:
        sockets = bind(settings, plan.workers)
    except OSError as exc:
        print(
            f"vaegan-serve: error: cannot listen on {settings.host}:{settings.port}: {exc}",
            file=sys.stderr,
        )
        return 3
    host, port = sockets[0].getsockname()[:2]
    logging.getLogger("vaegan.service").info("listening on http://%s:%d", host, port)
    return Supervisor(settings, plan, sockets).run()


if __name__ == "__main__":
    sys.exit(main())
