"""The raters' side of the human queue: the labeling page and its task API.

Raters send `Authorization: Bearer <token>` with a token from the human backend's
`raters` config; `?backend=` picks the queue when several are configured.
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from reward_service import schemas
from reward_service.human.store import Task
from reward_service.routes.dependencies import RaterDep

router = APIRouter(tags=["labeling"])
TOKEN_ERRORS = {401: {"model": schemas.ErrorResponse, "description": "missing or unknown rater token"}}
STATIC = resources.files("reward_service.human").joinpath("static")
PAGE, SCRIPT, STYLE = (STATIC.joinpath(name).read_text() for name in ("label.html", "label.js", "label.css"))


def _view(task: Task) -> schemas.TaskView:
    return schemas.TaskView(id=task.id, kind=task.kind, prompt=task.prompt, responses=task.responses,
                            overlap=task.overlap, ratings_so_far=len(task.ratings))


@router.get("/label", response_class=HTMLResponse)
async def label_page() -> HTMLResponse:
    """The labeling page: sign in with a rater token, then rate or rank. Several human
    backends: `/label?backend=NAME` (`serve` prints each backend's address)."""
    return HTMLResponse(PAGE, headers={"Cache-Control": "no-store"})


@router.get("/label.js", include_in_schema=False)
async def label_script() -> Response:
    """The page's script, a file of its own: the Content-Security-Policy forbids inline script."""
    return Response(SCRIPT, media_type="text/javascript", headers={"Cache-Control": "no-cache"})


@router.get("/label.css", include_in_schema=False)
async def label_style() -> Response:
    return Response(STYLE, media_type="text/css", headers={"Cache-Control": "no-cache"})


@router.get("/v1/rater", response_model=schemas.RaterSession, responses=TOKEN_ERRORS)
async def rater_session(rater: RaterDep) -> schemas.RaterSession:
    """Who the token belongs to, and what the page shows: guidelines, scale, queue length."""
    s = rater.queue.settings
    return schemas.RaterSession(
        rater=rater.name, backend=rater.queue.name, guidelines=s.guidelines, overlap=s.overlap,
        scale=schemas.ScaleView(min=s.scale.min, max=s.scale.max, step=s.scale.step, values=s.scale.values(),
                                labels=s.scale.value_labels()),
        pending=await rater.queue.waiting_for(rater.name),
    )


@router.get("/v1/tasks/next", response_model=schemas.NextTask, responses=TOKEN_ERRORS)
async def next_task(rater: RaterDep) -> schemas.NextTask:
    """The rater's next task (the same one until they rate or skip it, or its lease ends)."""
    task = await rater.queue.next_task(rater.name)
    return schemas.NextTask(task=_view(task) if task else None, pending=await rater.queue.waiting_for(rater.name))


@router.post("/v1/tasks/{task_id}/rating", response_model=schemas.RatingSaved, responses={
    **TOKEN_ERRORS, **{c: schemas.ERROR_MODEL for c in (404, 409, 422)}})
async def rate(task_id: str, body: schemas.RatingIn, rater: RaterDep) -> schemas.RatingSaved:
    """Store a score (rate task) or a ranking (rank task). `saved: true` means committed;
    sending the identical rating again is harmless."""
    task, counted = await rater.queue.rate(task_id, rater.name, body.score, body.ranking)
    return schemas.RatingSaved(saved=True, task_id=task_id, task_status=task.status, late=not counted,
                               pending=await rater.queue.waiting_for(rater.name))


@router.post("/v1/tasks/{task_id}/skip", response_model=schemas.SkipResult, responses={
    **TOKEN_ERRORS, **{c: schemas.ERROR_MODEL for c in (404, 409)}})
async def skip(task_id: str, rater: RaterDep) -> schemas.SkipResult:
    """Pass on a task; it goes to other raters (or to the fallback at the deadline)."""
    await rater.queue.skip(task_id, rater.name)
    return schemas.SkipResult(skipped=True, task_id=task_id, pending=await rater.queue.waiting_for(rater.name))
