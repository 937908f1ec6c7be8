"""What the service serves: the model's attributes, the checkpoint, and the metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from service.deps import API_DEPENDENCIES, RuntimeDep
from service.errors import error_responses
from service.metrics import ServiceMetrics
from service.schemas import ModelInfo

router = APIRouter(tags=["info"], dependencies=API_DEPENDENCIES, responses=error_responses(401))


@router.get(
    "/attributes", summary="Attribute vectors this model knows", responses=error_responses(503)
)
async def attributes(runtime: RuntimeDep) -> dict[str, Any]:
    header = runtime.predictor.checkpoint.header
    return {
        "attributes": [
            {"name": name, **info, "default_strength": runtime.default_strength(name)}
            for name, info in header.attributes.items()
        ]
    }


@router.get(
    "/model",
    summary="The served checkpoint",
    response_model=ModelInfo,
    responses=error_responses(503),
)
async def model_info(runtime: RuntimeDep) -> dict[str, Any]:
    predictor = runtime.predictor
    checkpoint = predictor.checkpoint
    return {
        **checkpoint.header.to_json(),
        "recipe_name": checkpoint.header.recipe_name,
        "path": str(checkpoint.path),
        "sha256": checkpoint.sha256,
        "device": str(predictor.device),
        "dtype": str(predictor.dtype).removeprefix("torch."),
        "batching": {
            "max_batch_size": runtime.settings.max_batch_size,
            "max_batch_delay_ms": runtime.settings.max_batch_delay_ms,
        },
    }


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def metrics(request: Request) -> Response:
    service_metrics: ServiceMetrics = request.app.state.metrics
    return Response(service_metrics.render(), media_type=service_metrics.content_type)
