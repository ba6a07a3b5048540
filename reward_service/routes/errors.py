"""The one conversion from domain errors to HTTP statuses, and the typed error body.

Every error a route can meet answers `{"error": {"type", "message", "retryable",
"details"}}`; `retryable` and `Retry-After` are what the client's retries follow.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from reward_service import errors, schemas

STATUS = {  # looked up along the class hierarchy: a subclass answers as its nearest listed base
    errors.InvalidInput: 422,
    errors.UnknownBackend: 404,
    errors.TooLarge: 413,
    errors.Conflict: 409,
    errors.Overloaded: 429,
    errors.NotReady: 503,
    errors.BackendFailed: 503,
    errors.DeadlineExceeded: 504,
    errors.ReloadFailed: 503,
    errors.NotFound: 404,
    errors.Unauthorized: 401,
    errors.TooManyFailedAuth: 429,
    errors.InvalidConfig: 422,
    errors.RestartNeeded: 409,
    errors.TaskConflict: 409,
    errors.Forbidden: 403,
}
RETRYABLE = {429, 502, 503, 504}


def status_of(exc: errors.RewardServiceError) -> int:
    return next((STATUS[cls] for cls in type(exc).__mro__ if cls in STATUS), 503)


def error_response(status: int, code: str, message: str, details: dict | None = None,
                   retry_after: float | None = None) -> JSONResponse:
    body = schemas.ErrorResponse(
        error=schemas.ErrorBody(type=code, message=message, retryable=status in RETRYABLE, details=details or {})
    )
    headers = {"Retry-After": str(max(1, round(retry_after)))} if retry_after is not None else None
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


class ClientGone(Exception):
    """The client disconnected; there is nobody to answer."""


def documented(descriptions: dict[int, str]) -> dict:
    """OpenAPI `responses` entries: these statuses answer with the typed error body."""
    return {code: {"model": schemas.ErrorResponse, "description": text} for code, text in descriptions.items()}


COMMON_ERRORS = documented({  # on every route: what any request can meet
    401: "missing or unknown key or rater token",
    403: "an API key where an admin key is needed",
    404: "unknown backend, job or task",
    413: "request body over the configured limit",
    422: "invalid input; do not retry unchanged",
    429: "too many failed authentications from this address; retry after Retry-After",
    503: "backend or store not ready or failing; retry after Retry-After",
})
SCORING_ERRORS = documented({
    404: "unknown backend (the body lists the known ones)",
    409: "request_id reused with different items",
    413: "body or item count over the configured limit",
    422: "invalid input; do not retry unchanged",
    429: "overloaded, or too many failed authentications; retry after Retry-After seconds",
    503: "backend not ready or failing; retry",
    504: "deadline passed; retry with a longer timeout_s",
})


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(errors.RewardServiceError)
    async def _service_error(request: Request, exc: errors.RewardServiceError):
        response = error_response(status_of(exc), exc.code, exc.message, exc.details, exc.retry_after_s)
        if isinstance(exc, errors.Unauthorized):
            response.headers["WWW-Authenticate"] = "Bearer"
        return response

    @app.exception_handler(ClientGone)
    async def _gone(request: Request, exc: ClientGone):
        return Response(status_code=499)  # nginx's "client closed request"; never sent to anyone

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        problems = [
            {"where": ".".join(str(p) for p in e["loc"]), "problem": e["msg"], "type": e["type"]} for e in exc.errors()
        ]
        summary = "; ".join(f"{p['where']}: {p['problem']}" for p in problems[:5])
        return error_response(422, errors.InvalidInput.code, f"invalid request: {summary}", {"errors": problems[:50]})

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 400:  # e.g. a body that is not UTF-8 or JSON nested too deep
            return error_response(422, errors.InvalidInput.code, f"invalid request body: {exc.detail}")
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail))
