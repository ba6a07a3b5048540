"""Domain errors. Each says what went wrong and whether retrying can help.

Nothing here knows about HTTP; `app` maps each class to a status code.
"""

from __future__ import annotations


class RewardServiceError(Exception):
    """Base class. `code` is a stable machine-readable name for clients."""

    code = "error"

    def __init__(self, message: str, *, retry_after_s: float | None = None, details: dict | None = None):
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s
        self.details = details or {}


class InvalidInput(RewardServiceError):
    """The request itself is wrong; retrying it unchanged will fail again."""

    code = "invalid_input"


class UnknownBackend(RewardServiceError):
    code = "unknown_backend"


class TooLarge(RewardServiceError):
    code = "too_large"


class Conflict(RewardServiceError):
    """The same request_id was reused for different items."""

    code = "request_id_conflict"


class Overloaded(RewardServiceError):
    """The backend's queue is full; retry after a short wait."""

    code = "overloaded"


class NotReady(RewardServiceError):
    """The backend is still loading, or failed to load."""

    code = "backend_not_ready"


class BackendFailed(RewardServiceError):
    """The backend raised while scoring; retrying may help."""

    code = "backend_failed"


class DeadlineExceeded(RewardServiceError):
    code = "deadline_exceeded"


class ReloadFailed(RewardServiceError):
    """A hot reload could not load the new model; the old one keeps serving."""

    code = "reload_failed"


class NotFound(RewardServiceError):
    """No such job or task."""

    code = "not_found"


class Unauthorized(RewardServiceError):
    """A missing or unknown token."""

    code = "unauthorized"


class TaskConflict(RewardServiceError):
    """A rating that contradicts the task's state: not handed to this rater, or already rated."""

    code = "task_conflict"


class Forbidden(RewardServiceError):
    """A valid key without the right to this route."""

    code = "forbidden"
