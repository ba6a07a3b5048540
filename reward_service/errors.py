"""Domain errors. Each says what went wrong and whether retrying can help.

Nothing here knows about HTTP; `app` maps each class to a status code.
"""

from __future__ import annotations

ECHO_LIMIT = 100  # characters of a caller's input an error message quotes back


def shown(text: str) -> str:
    """A caller's input as an error message quotes it: cut to ECHO_LIMIT characters, so a
    100,000-character backend name is not sent back whole."""
    if len(text) <= ECHO_LIMIT:
        return repr(text)
    return f"{text[:ECHO_LIMIT]!r}... ({len(text)} characters)"


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

    @classmethod
    def of_request_id(cls, request_id: str) -> "Conflict":
        return cls(f"request_id {request_id!r} was already used with different items; use a new request_id")


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


class TooManyFailedAuth(RewardServiceError):
    """This client address failed authentication too often; it may try again after the wait."""

    code = "too_many_failed_auth"


class InvalidConfig(RewardServiceError):
    """A reload found the config file invalid; nothing changed. Retrying cannot help: fix the file."""

    code = "invalid_config"


class RestartNeeded(RewardServiceError):
    """A reload cannot apply this config change (a backend added, removed, or of another type)."""

    code = "restart_needed"


class TaskConflict(RewardServiceError):
    """A rating that contradicts the task's state: not handed to this rater, or already rated."""

    code = "task_conflict"


class Forbidden(RewardServiceError):
    """A valid key without the right to this route."""

    code = "forbidden"
