"""The HTTP contract as pydantic models (they also make the OpenAPI schema)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictStr


def _encodable(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text is not valid Unicode (an unpaired surrogate escape such as \\ud800)") from None
    return text


Text = Annotated[StrictStr, AfterValidator(_encodable)]


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: Text = Field(description="the prompt the policy was given")
    response: Text = Field(description="the policy's generated continuation")


class ScoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[Item] = Field(min_length=1, description="one reward is returned per item, in order")
    backend: StrictStr | None = Field(None, description="backend name; default from config")
    request_id: StrictStr | None = Field(
        None, max_length=256, description="makes retries idempotent: a repeat returns the first answer"
    )
    timeout_s: float | None = Field(None, gt=0, description="deadline for the whole request, in seconds")
    return_members: bool | None = Field(
        None, description="ensembles: also return each member's scores (default from the backend's config)"
    )
    wait: bool = Field(
        True,
        description="human backend: false returns 202 with a job id at once, polled at GET /v1/jobs/{id} "
        "(other backends always answer at once)",
    )


class ScoreResponse(BaseModel):
    backend: str
    model: str = Field(description="exact model version, `name@hash`; changes when the reward changes")
    scores: list[float]
    request_id: str | None = None
    elapsed_ms: float
    members: dict[str, list[float]] | None = Field(None, description="ensembles only: each member's own scores")
    truncated: list[bool] | None = Field(
        None, description="with server.long_items: truncate, which items were cut to max_chars_per_item"
    )
    job_id: str | None = Field(None, description="human backend: the job these ratings belong to")
    sources: list[str] | None = Field(
        None, description="human backend: per item, `human` (rated) or `fallback` (scored by the fallback backend)"
    )
    ratings: list[int] | None = Field(None, description="human backend: number of ratings behind each score")
    fallback_model: str | None = Field(None, description="human backend: the fallback's version, if it scored any item")


class JobResponse(BaseModel):
    """A human-queue job: 202 from /score with `wait: false`, and GET /v1/jobs/{id}."""

    job_id: str
    backend: str
    model: str
    status: str = Field(description="`pending` until every item has a reward, then `done`")
    scores: list[float | None] = Field(description="per item; null while unrated")
    sources: list[str | None] = Field(description="per item: `human`, `fallback`, or null while unrated")
    ratings: list[int] = Field(description="ratings received per item")
    rated: int
    items: int
    fallback_model: str | None = None
    request_id: str | None = None
    created_at: float = Field(description="Unix time")
    deadline_at: float | None = Field(None, description="Unix time; past it, unrated items get the fallback's score")
    poll: str = Field(description="where to poll this job")
    truncated: list[bool] | None = Field(None, description="in the 202 only: items cut to max_chars_per_item")


class OpenRLHFRequest(BaseModel):
    """OpenRLHF's remote reward model format: prompt + response joined in each string."""

    model_config = ConfigDict(extra="allow")

    query: list[Text] = Field(min_length=1)
    prompts: list[Text] | None = Field(
        None, description="optional: the prompt of each query; when given (and a prefix of it), scored as a pair"
    )


class OpenRLHFResponse(BaseModel):
    rewards: list[float]
    backend: str
    model: str
    truncated: list[bool] | None = Field(None, description="with server.long_items: truncate, which queries were cut")


class BackendInfo(BaseModel):
    name: str
    type: str
    model: str | None = Field(None, description="model version, `name@hash`")
    ready: bool
    default: bool
    error: str | None = Field(None, description="why the backend is not ready, if it is not")
    details: dict = Field(default_factory=dict)


class BackendList(BaseModel):
    default_backend: str
    backends: list[BackendInfo]


class ReloadResponse(BaseModel):
    backend: str
    previous_model: str
    model: str
    elapsed_ms: float


class ErrorBody(BaseModel):
    type: str = Field(description="stable error code, e.g. invalid_input, unknown_backend, overloaded")
    message: str
    retryable: bool
    details: dict = Field(default_factory=dict)


class ErrorResponse(BaseModel):
    error: ErrorBody


ERROR_MODEL = {"model": ErrorResponse}


# -- the raters' task API (the labeling page speaks these) -------------------------------------------

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
