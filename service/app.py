"""The FastAPI application: the routers in service/routes over one `Runtime`, with the
middleware and error handlers around them, and the model loaded in the background."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from model.checkpoint import Checkpoint, load_checkpoint, software_versions
from model.device import select_device
from service.errors import install_error_handlers
from service.metrics import ServiceMetrics
from service.middleware import BodyLimitMiddleware, RequestMiddleware
from service.predictor import Predictor
from service.routes import docs, health, images, info, web
from service.runtime import Runtime
from service.settings import ServiceSettings
from service.uploads import DisconnectMiddleware

log = logging.getLogger("vaegan.service")

_TAGS = [
    {"name": "images", "description": "The model's operations: faces and latents in and out."},
    {"name": "info", "description": "The served model, its attributes, and the metrics."},
    {"name": "health", "description": "Probes, open without the API key."},
]


def create_app(
    settings: ServiceSettings, checkpoint: Checkpoint | None = None, *, wait_for_model: bool = False
) -> FastAPI:
    """The service for `settings`; a checkpoint already loaded (by the CLI) is used as is.

    The model loads in the background while /health/live answers, unless `wait_for_model`: then
    startup ends (and uvicorn starts listening) only once it is ready, which a worker among
    several wants (service/workers.py)."""
    metrics = ServiceMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loader = asyncio.create_task(_load(app, settings, checkpoint, metrics))
        if wait_for_model:
            await asyncio.shield(loader)
        try:
            yield
        finally:
            loader.cancel()
            runtime: Runtime | None = app.state.runtime
            if runtime is not None:
                await runtime.close()

    app = FastAPI(
        title="vaegan",
        summary="A VAE-GAN (Larsen et al. 2016): encode, decode, sample and edit faces.",
        # The installed package's, as checkpoints record it.
        version=software_versions()["vaegan"],
        openapi_tags=_TAGS,
        lifespan=lifespan,
        # Served by routes/docs.py instead, so that they can require the API key.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        # Starlette builds the redirect's Location from the Host header, which anyone can set.
        redirect_slashes=False,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.runtime = None
    app.state.load_error = None
    for router in (
        health.router,
        web.router,
        docs.router,
        docs.assets_router,
        images.router,
        info.router,
    ):
        app.include_router(router)
    install_error_handlers(app)
    # The last added runs first: RequestMiddleware wraps the others, so it logs the body limit's
    # 413s and the 499s of clients that left as well.
    app.add_middleware(DisconnectMiddleware)
    app.add_middleware(
        BodyLimitMiddleware,
        max_body_bytes=settings.max_upload_bytes,
        max_json_bytes=settings.max_json_bytes,
    )
    app.add_middleware(RequestMiddleware, metrics=metrics)
    return app


async def _load(
    app: FastAPI, settings: ServiceSettings, checkpoint: Checkpoint | None, metrics: ServiceMetrics
) -> None:
    """Load, place and warm up the model in the background: /health/live answers meanwhile."""
    try:
        if checkpoint is None:
            checkpoint = await asyncio.to_thread(load_checkpoint, settings.checkpoint)
        predictor = Predictor(
            checkpoint, select_device(settings.device), half=settings.half_precision
        )
        runtime = Runtime(settings, predictor, metrics)
        await runtime.start()
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        app.state.load_error = str(exc)
        log.error("the model could not be loaded: %s", exc)
        return
    metrics.set_model_info(
        sha256=checkpoint.sha256,
        device=str(predictor.device),
        image_size=str(checkpoint.config.image_size),
        latent_dim=str(checkpoint.config.latent_dim),
        step=str(checkpoint.header.step),
    )
    app.state.runtime = runtime
    log.info("model %s ready on %s", checkpoint.path, predictor.device)
