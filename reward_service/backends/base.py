"""The one protocol every backend speaks, and the one subtype the human queue adds.

A backend turns items into one float each. It loads whatever it needs in
`load()` (never on the request path), reports readiness, and describes itself
for `/v1/backends` and for the `model` field of responses.

Everything the scorer and the registry may ask of a backend is declared here,
with a default: nothing above probes a backend for what it happens to have.
A backend that holds jobs people work through (the human queue) is a
`QueuedBackend`; the scorer talks to it in jobs instead of single calls.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from reward_service.errors import InvalidInput
from reward_service.human.jobs import JobOutcome
from reward_service.human.queue import HumanQueue
from reward_service.human.store import Job
from reward_service.items import Item, ScoreOptions, Scored

DEFAULT_OPTIONS = ScoreOptions()


class Backend(ABC):
    type: ClassVar[str] = "backend"
    reloadable: ClassVar[bool] = False  # True: `reload()` swaps its model from fresh settings

    def __init__(self, name: str, settings=None):
        self.name = name
        self.settings = settings  # this backend's entry of the config
        self.ready = False
        self.error: str | None = None

    @property
    @abstractmethod
    def model_version(self) -> str:
        """Exact version of what produces the rewards, e.g. `sentiment-minilm-rt@3f2a9c1e`."""

    @property
    def default_timeout_s(self) -> float | None:
        """The deadline of a request that gives none; None: the server's default."""
        return None

    @property
    def returns_members(self) -> bool:
        """Whether replies carry each member's scores when the request does not say."""
        return False

    async def load(self) -> None:
        """Load models; called once at start-up, off the request path."""

    async def close(self) -> None:
        """Release workers and files."""

    @abstractmethod
    async def score(self, items: list[Item], deadline: float | None = None,
                    options: ScoreOptions = DEFAULT_OPTIONS) -> Scored:
        """One reward per item, same order, and the exact version that produced them.
        `deadline` is event-loop time; `options` are the request's (backends without a
        length limit or objectives ignore them)."""

    async def reload(self, settings) -> tuple[str, str]:
        """Swap the model for the one `settings` name; returns (old, new) versions."""
        raise InvalidInput(f"backend {self.name!r} ({self.type}) has no model to reload")

    def normalization(self) -> tuple[float, float] | None:
        """(mean, std) of its rewards stored at training time, for ensembles that standardise."""
        return None

    def batchers(self) -> list:
        """The engine batchers this backend feeds, for queue and batch metrics."""
        return []

    def queued_items(self) -> int:
        """Items waiting to be scored (the `reward_queue_depth` metric)."""
        return sum(batcher.queued_items for batcher in self.batchers())

    def queue_capacity(self) -> int | None:
        """Items that may wait before requests get 429 (None: no queue)."""
        batchers = self.batchers()
        return sum(batcher.settings.max_queue_items for batcher in batchers) if batchers else None

    def details(self) -> dict:
        """Backend-specific facts for /v1/backends (runtime, labels, ...)."""
        return {}


class QueuedBackend(Backend):
    """A backend whose rewards come from a job people work through (the human queue).

    `queue` is its `HumanQueue` (raters, tasks, export); a scoring request becomes a
    job: `submit`, then `wait` for it (blocking) or read its `outcome` (polling).
    """

    queue: HumanQueue

    @abstractmethod
    async def submit(self, items: list[Item], request_id: str | None, timeout_s: float) -> Job:
        """The job for these items: a new one, or the one this request_id made before."""

    @abstractmethod
    async def wait(self, job: Job, deadline: float) -> JobOutcome:
        """Until every item is rated, or the deadline (then the fallback, or DeadlineExceeded)."""

    @abstractmethod
    async def outcome(self, job_id: str) -> JobOutcome | None:
        """The job as it stands; None if this backend has no such job."""
