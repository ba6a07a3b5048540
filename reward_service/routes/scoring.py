"""Scoring: /score, OpenRLHF's /get_reward, and polling a human-queue job."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from reward_service import errors, schemas
from reward_service.items import Item, ScoreOptions, without_leading_padding
from reward_service.routes.dependencies import APIKey, RegistryDep, ScorerDep
from reward_service.routes.errors import SCORING_ERRORS
from reward_service.routes.limits import until_disconnect

router = APIRouter(tags=["scoring"], dependencies=[APIKey])


def json_reply(reply: BaseModel) -> Response:
    """The reply serialised by pydantic directly. Returning the model instead would have FastAPI
    validate it again against `response_model` and encode it field by field: measured, a tenth of
    the event loop's work per single-item request. The schema in /docs is the same."""
    return Response(reply.model_dump_json(), media_type="application/json")


def job_response(backend_name: str, model: str, outcome) -> schemas.JobResponse:
    return schemas.JobResponse(
        job_id=outcome.job_id, backend=backend_name, model=model, status=outcome.status,
        scores=outcome.scores, sources=outcome.sources, ratings=outcome.ratings, rated=outcome.rated,
        items=len(outcome.scores), fallback_model=outcome.fallback_model, request_id=outcome.request_id,
        created_at=outcome.created_at, deadline_at=outcome.deadline_at, poll=f"/v1/jobs/{outcome.job_id}",
    )


@router.post("/score", response_model=schemas.ScoreResponse, responses={
    **SCORING_ERRORS, 202: {"model": schemas.JobResponse, "description": "human backend with `wait: false`"}})
async def score(body: schemas.ScoreRequest, request: Request, scorer: ScorerDep):
    """One reward per item, in order. The response names the exact model version."""
    items = [item.to_item() for item in body.items]
    options = ScoreOptions(truncation=body.truncation, objectives=body.return_objectives)
    result = await until_disconnect(request, scorer.score(
        items, body.backend, body.request_id, body.timeout_s, body.return_members, body.wait, options))
    job = result.job
    if job is not None and job.pending:
        pending = job_response(result.backend, result.model, job)
        pending.truncated = result.truncated
        return JSONResponse(pending.model_dump(), status_code=202, headers={"Location": pending.poll})
    return json_reply(schemas.ScoreResponse(
        backend=result.backend, model=result.model, scores=result.scores, request_id=result.request_id,
        elapsed_ms=result.elapsed_ms, members=result.members, objectives=result.objectives,
        truncated=result.truncated, notes=result.notes, verdicts=result.verdicts,
        job_id=job.job_id if job else None, sources=job.sources if job else None,
        ratings=job.ratings if job else None, fallback_model=job.fallback_model if job else None,
    ))


@router.post("/get_reward", response_model=schemas.OpenRLHFResponse, responses=SCORING_ERRORS)
async def get_reward(body: schemas.OpenRLHFRequest, request: Request, scorer: ScorerDep, backend: str | None = None):
    """OpenRLHF's remote reward model format (`--remote_rm_url http://host:port/get_reward`).
    Each query is the policy's rendered prompt + response; with `prompts` it is split into
    (prompt, response), otherwise scored as the response. A reward model with its own chat
    template gets the conversation recovered from the policy's chat markup (the reply's `notes`
    say so). `labels` are the references of verifiable-reward backends."""
    prompts = body.prompts or [""] * len(body.query)
    labels = body.labels or [None] * len(body.query)
    queries = [without_leading_padding(q) for q in body.query]  # generation left-pads the policy's text
    items = [Item(p, q[len(p):], reference=label, rendered=True) for p, q, label in zip(prompts, queries, labels)]
    result = await until_disconnect(
        request, scorer.score(items, backend, return_members=True, options=ScoreOptions(objectives=True)))
    return json_reply(schemas.OpenRLHFResponse(
        rewards=result.scores, scores=result.scores, extra_logs={**(result.members or {}), **(result.objectives or {})},
        backend=result.backend, model=result.model, truncated=result.truncated, notes=result.notes))


@router.get("/v1/jobs/{job_id}", response_model=schemas.JobResponse, responses={404: schemas.ERROR_MODEL})
async def job(job_id: str, registry: RegistryDep) -> schemas.JobResponse:
    """A human-queue job: pending (with the rewards so far) or done. Past an async job's
    deadline, unrated items get the fallback's score when this is read."""
    for queue in registry.queues():
        if queue.ready:
            outcome = await queue.outcome(job_id)
            if outcome is not None:
                return job_response(queue.name, queue.model_version, outcome)
    raise errors.NotFound(f"no job {errors.shown(job_id)}")
