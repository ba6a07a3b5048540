"""HTTP for the human queue: the raters' task API, the labeling page, jobs and export.

Thin: each route finds the queue, checks the rater's token, calls the store
through the backend, and shapes the reply. Raters send `Authorization: Bearer <token>`
with a token from the backend's `raters` config.
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter, Depends, Query
from fastapi.responses import HTMLResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from reward_service import errors, schemas
from reward_service.human import export
from reward_service.human.scores import validate_rating
from reward_service.human.store import AlreadyRated, NotAssigned, Skipped, Task, TaskNotFound

bearer = HTTPBearer(auto_error=False, scheme_name="raterToken",
                    description="a rater token from the human backend's `raters` config")


class ScaleView(BaseModel):
    min: float
    max: float
    step: float
    values: list[float]
    labels: dict[str, str]


class RaterSession(BaseModel):
    rater: str
    backend: str
    guidelines: str
    scale: ScaleView
    overlap: int
    pending: int = Field(description="tasks waiting that this rater can still rate")


class TaskView(BaseModel):
    id: str
    kind: str = Field(description="`rate`: give one response a score; `rank`: order the responses, best first")
    prompt: str
    responses: list[str]
    overlap: int
    ratings_so_far: int


class NextTask(BaseModel):
    task: TaskView | None = Field(description="null when nothing is waiting for this rater")
    pending: int


class RatingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    score: float | None = Field(None, description="for `rate` tasks: a value on the configured scale")
    ranking: list[int] | None = Field(
        None, max_length=20, description="for `rank` tasks: response indices, best first"
    )


class RatingSaved(BaseModel):
    saved: bool = Field(description="true once the rating is committed to the store")
    task_id: str
    task_status: str
    late: bool = Field(description="the task no longer needed it (its job's deadline passed, or other raters "
                                   "completed it after this rater's lease ran out); kept for export, not in the reward")
    pending: int


class SkipResult(BaseModel):
    skipped: bool
    task_id: str
    pending: int


def _view(task: Task) -> TaskView:
    return TaskView(id=task.id, kind=task.kind, prompt=task.prompt, responses=task.responses, overlap=task.overlap,
                    ratings_so_far=len(task.ratings))


def job_response(backend, outcome) -> schemas.JobResponse:
    return schemas.JobResponse(
        job_id=outcome.job_id, backend=backend.name, model=backend.model_version, status=outcome.status,
        scores=outcome.scores, sources=outcome.sources, ratings=outcome.ratings, rated=outcome.rated,
        items=len(outcome.scores), fallback_model=outcome.fallback_model, request_id=outcome.request_id,
        created_at=outcome.created_at, deadline_at=outcome.deadline_at, poll=f"/v1/jobs/{outcome.job_id}",
    )


def router(registry, require_api_key, require_admin_key) -> APIRouter:
    """Rater routes check rater tokens; jobs need an API key; export and summary an admin key."""
    api = APIRouter()
    errors_401 = {401: {"model": schemas.ErrorResponse, "description": "missing or unknown rater token"}}

    def rater_and_queue(
        backend: str | None = Query(None, description="human backend name; default: the first one configured"),
        credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
    ):
        queue = registry.queue(backend)
        rater = queue.rater_for(credentials.credentials if credentials else None)
        if rater is None:
            hint = "" if queue.settings.raters else " (no raters are configured: add `raters:` to the human backend)"
            raise errors.Unauthorized(f"a valid rater token is required as `Authorization: Bearer <token>`{hint}")
        return rater, queue

    page = resources.files("reward_service.human").joinpath("static/label.html").read_text()

    @api.get("/label", response_class=HTMLResponse, tags=["labeling"])
    async def label_page() -> HTMLResponse:
        """The labeling page: sign in with a rater token, then rate or rank."""
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    @api.get("/v1/rater", response_model=RaterSession, responses=errors_401, tags=["labeling"])
    async def rater_session(auth=Depends(rater_and_queue)) -> RaterSession:
        """Who the token belongs to, and what the page shows: guidelines, scale, queue length."""
        rater, queue = auth
        s = queue.settings
        return RaterSession(
            rater=rater, backend=queue.name, guidelines=s.guidelines, overlap=s.overlap,
            scale=ScaleView(min=s.scale.min, max=s.scale.max, step=s.scale.step, values=s.scale.values(),
                            labels=s.scale.value_labels()),
            pending=await queue.run(queue.store.waiting_for, queue.name, rater),
        )

    @api.get("/v1/tasks/next", response_model=NextTask, responses=errors_401, tags=["labeling"])
    async def next_task(auth=Depends(rater_and_queue)) -> NextTask:
        """The rater's next task (the same one until they rate or skip it, or its lease ends)."""
        rater, queue = auth
        task = await queue.run(queue.store.claim_next, queue.name, rater, queue.settings.lease_s)
        pending = await queue.run(queue.store.waiting_for, queue.name, rater)
        return NextTask(task=_view(task) if task else None, pending=pending)

    @api.post("/v1/tasks/{task_id}/rating", response_model=RatingSaved, tags=["labeling"], responses={
        **errors_401, **{c: schemas.ERROR_MODEL for c in (404, 409, 422)}})
    async def rate(task_id: str, body: RatingIn, auth=Depends(rater_and_queue)) -> RatingSaved:
        """Store a score (rate task) or a ranking (rank task). `saved: true` means committed;
        sending the identical rating again is harmless."""
        rater, queue = auth
        task = await _task_of(queue, task_id)
        problem = validate_rating(task, queue.settings.scale, body.score, body.ranking)
        if problem:
            raise errors.InvalidInput(problem)
        try:
            task, stored = await queue.run(queue.store.rate, task_id, rater, body.score, body.ranking)
        except NotAssigned:
            raise errors.TaskConflict(
                f"task {task_id} was not handed to rater {rater!r}; get one from /v1/tasks/next") from None
        except AlreadyRated:
            raise errors.TaskConflict(f"rater {rater!r} already rated task {task_id} differently") from None
        except Skipped:
            raise errors.TaskConflict(f"rater {rater!r} skipped task {task_id}; it went to others") from None
        mine = next(r for r in task.ratings if r.rater == rater)
        if stored:
            queue.rating_stored(rater, mine.seconds)
        return RatingSaved(saved=True, task_id=task_id, task_status=task.status, late=not mine.counted,
                           pending=await queue.run(queue.store.waiting_for, queue.name, rater))

    @api.post("/v1/tasks/{task_id}/skip", response_model=SkipResult, tags=["labeling"], responses={
        **errors_401, **{c: schemas.ERROR_MODEL for c in (404, 409)}})
    async def skip(task_id: str, auth=Depends(rater_and_queue)) -> SkipResult:
        """Pass on a task; it goes to other raters (or to the fallback at the deadline)."""
        rater, queue = auth
        await _task_of(queue, task_id)
        try:
            await queue.run(queue.store.skip, task_id, rater)
        except TaskNotFound:
            raise errors.NotFound(f"no task {task_id}") from None
        except NotAssigned:
            raise errors.TaskConflict(f"task {task_id} was not handed to rater {rater!r}") from None
        except AlreadyRated:
            raise errors.TaskConflict(f"rater {rater!r} already rated task {task_id}") from None
        return SkipResult(skipped=True, task_id=task_id, pending=await queue.run(queue.store.waiting_for, queue.name, rater))

    @api.get("/v1/jobs/{job_id}", response_model=schemas.JobResponse, tags=["scoring"],
             responses={404: schemas.ERROR_MODEL}, dependencies=[Depends(require_api_key)])
    async def job(job_id: str) -> schemas.JobResponse:
        """A human-queue job: pending (with the rewards so far) or done. Past an async job's
        deadline, unrated items get the fallback's score when this is read."""
        for queue in registry.queues():
            if queue.ready:
                outcome = await queue.outcome(job_id)
                if outcome is not None:
                    return job_response(queue, outcome)
        raise errors.NotFound(f"no job {job_id}")

    @api.get("/v1/human/export", tags=["labeling"], response_class=StreamingResponse,
             dependencies=[Depends(require_admin_key)],
             responses={200: {"content": {"application/x-ndjson": {}}, "description": "JSON lines"}})
    async def export_ratings(
        format: str = Query("pairs", pattern=f"^({'|'.join(export.FORMATS)})$",
                            description="pairs and ranklist are read by `train-rm`; ratings is the raw record"),
        backend: str | None = Query(None, description="human backend name; default: the first one"),
    ) -> StreamingResponse:
        """Everything rated so far, as JSON lines (same as `reward-service human export`)."""
        queue = registry.queue(backend)
        tasks = await queue.run(queue.store.rated_tasks, queue.name)
        return StreamingResponse(export.lines(tasks, queue.settings.scale, format), media_type="application/x-ndjson",
                                 headers={"Content-Disposition": f'attachment; filename="{queue.name}-{format}.jsonl"'})

    @api.get("/v1/human/summary", tags=["labeling"], dependencies=[Depends(require_admin_key)])
    async def summary(backend: str | None = Query(None)) -> dict:
        """Queue length, ratings per rater, time to rate and inter-rater agreement."""
        queue = registry.queue(backend)
        tasks = await queue.run(queue.store.rated_tasks, queue.name)
        stats = await queue.run(queue.store.queue_stats, queue.name)
        return {"backend": queue.name, **stats, **export.summary(tasks, queue.settings.scale)}

    return api


async def _task_of(queue, task_id: str) -> Task:
    task = await queue.run(queue.store.task, task_id)
    if task is None or task.backend != queue.name:
        raise errors.NotFound(f"no task {task_id} in human backend {queue.name!r}")
    return task
