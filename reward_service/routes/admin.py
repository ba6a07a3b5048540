"""Administration (admin key): hot reload, and the human queue's export and summary."""

from __future__ import annotations

import time

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from reward_service import config as config_module
from reward_service import errors, schemas
from reward_service.human import export
from reward_service.routes.dependencies import AdminKey, RegistryDep
from reward_service.routes.errors import SCORING_ERRORS

router = APIRouter(dependencies=[AdminKey])


@router.post("/admin/backends/{name}/reload", response_model=schemas.ReloadResponse, responses=SCORING_ERRORS,
             tags=["admin"])
async def reload_backend(name: str, request: Request, registry: RegistryDep) -> schemas.ReloadResponse:
    """Re-read this backend's model location from the config file and hot-swap the model.
    Requests in flight finish on the old model; a failed load leaves the old one serving."""
    started = time.perf_counter()
    registry.find(name)
    try:
        fresh = config_module.load(request.app.state.config_path)
    except config_module.ConfigError as exc:
        raise errors.ReloadFailed(f"config could not be re-read, nothing changed: {exc}") from None
    previous, current = await registry.reload(name, fresh)
    return schemas.ReloadResponse(
        backend=name, previous_model=previous, model=current,
        elapsed_ms=round((time.perf_counter() - started) * 1000, 1),
    )


@router.get("/v1/human/export", tags=["labeling"], response_class=StreamingResponse,
            responses={200: {"content": {"application/x-ndjson": {}}, "description": "JSON lines"}})
async def export_ratings(
    registry: RegistryDep,
    format: str = Query("pairs", pattern=f"^({'|'.join(export.FORMATS)})$",
                        description="pairs and ranklist are read by `train-rm`; ratings is the raw record"),
    backend: str | None = Query(None, description="human backend name; default: the first one"),
) -> StreamingResponse:
    """Everything rated so far, as JSON lines (same as `reward-service human export`)."""
    queue = registry.queue(backend).queue
    return StreamingResponse(await queue.export_lines(format), media_type="application/x-ndjson",
                             headers={"Content-Disposition": f'attachment; filename="{queue.name}-{format}.jsonl"'})


@router.get("/v1/human/summary", tags=["labeling"])
async def summary(registry: RegistryDep, backend: str | None = Query(None)) -> dict:
    """Queue length, ratings per rater, time to rate and inter-rater agreement."""
    return await registry.queue(backend).queue.summary()
