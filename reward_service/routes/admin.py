"""Administration (admin key): hot reload, and the human queue's export and summary."""

from __future__ import annotations

import time

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from reward_service import config as config_module
from reward_service import errors, schemas
from reward_service.human import export
from reward_service.routes.dependencies import AdminKey, RegistryDep
from reward_service.routes.errors import documented

router = APIRouter(dependencies=[AdminKey])


RELOAD_ERRORS = documented({
    404: "no such backend",
    409: "`restart_needed`: the config file adds, removes or retypes a backend, which a reload cannot apply",
    422: "the backend has no model to reload, or `invalid_config`: the config file is invalid (nothing changed; "
         "fix the file, retrying cannot help)",
    503: "the new model failed to load; the old one keeps serving",
})


@router.post("/admin/backends/{name}/reload", response_model=schemas.ReloadResponse, responses=RELOAD_ERRORS,
             tags=["admin"])
async def reload_backend(name: str, request: Request, registry: RegistryDep) -> schemas.ReloadResponse:
    """Re-read this backend's entry of the config file and hot-swap its model. Requests in
    flight finish on the old model; a failed load leaves the old one serving. Only that
    entry is applied: adding or removing a backend, or changing any other section, needs a
    restart. The reply says how the new model is served (`precision`, and `notes` on why
    that differs from the config, e.g. int8 refused for fidelity)."""
    started = time.perf_counter()
    try:
        fresh = config_module.load(request.app.state.config_path)
    except config_module.ConfigError as exc:
        raise errors.InvalidConfig(f"the config file is invalid, nothing changed: {exc}") from None
    reloaded = await registry.reload(name, fresh)
    return schemas.ReloadResponse(
        backend=name, previous_model=reloaded.previous, model=reloaded.model, runtime=reloaded.runtime,
        precision=reloaded.precision, notes=reloaded.notes,
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
