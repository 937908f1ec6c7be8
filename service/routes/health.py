"""Probes for the orchestrator: open without the API key."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from service.runtime import Runtime
from service.schemas import Readiness

router = APIRouter(tags=["health"])


@router.get("/health/live", summary="The process is up")
async def live() -> dict[str, str]:
    return {"status": "alive"}


@router.get(
    "/health/ready",
    summary="The model is loaded and warmed up",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "loading, or failed to load"}},
)
async def ready(request: Request) -> JSONResponse:
    runtime: Runtime | None = request.app.state.runtime
    if runtime is not None and runtime.ready:
        return JSONResponse({"status": "ready"})
    error = request.app.state.load_error
    return JSONResponse(
        {"status": "failed" if error else "loading", "detail": error},
        status_code=503,
        headers={"Retry-After": "5"},
    )
