"""The HTTP contract as pydantic models (they also make the OpenAPI schema)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, StrictStr, model_validator

from reward_service import items


def _encodable(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text is not valid Unicode (an unpaired surrogate escape such as \\ud800)") from None
    return text


Text = Annotated[StrictStr, AfterValidator(_encodable)]


class Message(BaseModel):
    """One chat turn, OpenAI format."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant", "tool"]
    content: Text


class Item(BaseModel):
    """Either `{prompt, response}` (prompt: a string, or the conversation so far as messages)
    or `{messages}` (a whole conversation whose last message is the assistant turn scored)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"oneOf": [
        {"required": ["prompt", "response"], "not": {"required": ["messages"]}},
        {"required": ["messages"], "not": {"anyOf": [{"required": ["prompt"]}, {"required": ["response"]}]}},
    ]})

    prompt: Text | list[Message] | None = Field(
        None, description="the prompt the policy was given, or the conversation before the response")
    response: Text | None = Field(None, description="the policy's generated response")
    messages: list[Message] | None = Field(
        None, min_length=1, description="OpenAI chat messages; the last is the assistant turn being scored")
    reference: Text | None = Field(
        None, description="the known answer or the tests, for verifiable-reward backends (math, code, format)")

    @model_validator(mode="after")
    def _one_form(self) -> "Item":
        if self.messages is not None:
            if self.prompt is not None or self.response is not None:
                raise ValueError("give either `messages` or `prompt` and `response`, not both")
            if self.messages[-1].role != "assistant":
                raise ValueError("the last message must be the assistant turn being scored")
        elif self.prompt is None or self.response is None:
            missing = "response" if self.response is None else "prompt"
            raise ValueError(f"`{missing}` is missing: give `prompt` and `response`, or `messages`")
        return self

    def to_item(self) -> items.Item:
        if self.messages is not None:
            return items.Item.from_messages([items.Message(m.role, m.content) for m in self.messages], self.reference)
        if isinstance(self.prompt, list):
            context = [items.Message(m.role, m.content) for m in self.prompt]
            return items.Item.from_messages([*context, items.Message("assistant", self.response)], self.reference)
        return items.Item(self.prompt, self.response, reference=self.reference)


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
    return_objectives: bool = Field(
        False, description="multi-objective reward models: also return every named objective's scores"
    )
    truncation: Literal["reject", "left"] | None = Field(
        None, description="items over the model's length: `reject` (422) or `left` (cut the earliest turns "
        "and the start of the prompt, keep the response's end, flag `truncated`); default from the backend"
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
    objectives: dict[str, list[float]] | None = Field(
        None, description="with return_objectives: each objective's scores (multi-objective reward models)")
    truncated: list[bool] | None = Field(
        None, description="which items were cut (to the model's length with truncation: left, or to "
        "server.max_chars_per_item with long_items: truncate); absent when nothing was cut"
    )
    notes: list[str] | None = Field(None, description="anything done to the input a caller should know")
    verdicts: dict[str, list[str]] | None = Field(
        None, description="verifiable rewards (math, code, format, also inside an ensemble): backend -> each "
        "item's outcome, e.g. correct / wrong / no_answer / timeout")
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
    """OpenRLHF's remote reward model format: each query is the policy's rendered prompt +
    response (chat markup and special tokens kept); recent versions send one sample per request."""

    model_config = ConfigDict(extra="allow")

    query: list[Text] = Field(min_length=1)
    prompts: list[Text] | None = Field(
        None, description="the prompt part of each query (a prefix of it); splits it into (prompt, response)")
    labels: list[Text | None] | None = Field(
        None, description="the dataset's label of each query: the reference for verifiable-reward backends")

    @model_validator(mode="after")
    def _aligned(self) -> "OpenRLHFRequest":
        for field in ("prompts", "labels"):
            given = getattr(self, field)
            if given is not None and len(given) != len(self.query):
                raise ValueError(f"`{field}` has {len(given)} entries for {len(self.query)} queries")
        for index, (prompt, query) in enumerate(zip(self.prompts or [], self.query)):
            if not items.without_leading_padding(query).startswith(prompt):
                raise ValueError(f"prompts[{index}] is not the start of query[{index}] (after its left padding)")
        return self


class OpenRLHFResponse(BaseModel):
    rewards: list[float] = Field(description="what OpenRLHF trains on")
    scores: list[float] = Field(description="the same rewards (OpenRLHF logs `scores` when present)")
    extra_logs: dict[str, list[float]] = Field(
        default_factory=dict, description="per-sample values OpenRLHF logs: each ensemble member, each objective")
    backend: str
    model: str
    truncated: list[bool] | None = Field(None, description="which queries were cut; absent when nothing was")
    notes: list[str] | None = Field(None, description="how the queries were read (e.g. chat markup recovered)")


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
    runtime: str | None = Field(None, description="what serves the new model: onnx or torch")
    precision: str | None = Field(None, description="what the new model is served in: fp32, int8, bf16 or fp16")
    notes: list[str] = Field(
        default_factory=list, description="why the runtime or precision differs from the config, e.g. int8 refused "
        "because its scores correlate with fp32 below int8_min_pearson")
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
    """Strict types: `true` is not a score of 1, nor `false` the response index 0."""

    model_config = ConfigDict(extra="forbid")

    score: Annotated[float, Field(strict=True, allow_inf_nan=False)] | None = Field(
        None, description="for `rate` tasks: a value on the configured scale")
    ranking: list[StrictInt] | None = Field(
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
