"""Request limits that sit in front of the routes: body size, and clients that went away."""

from __future__ import annotations

import asyncio
from typing import Awaitable, TypeVar

from fastapi import Request

from reward_service import errors
from reward_service.routes.errors import ClientGone, error_response

T = TypeVar("T")
DISCONNECT_POLL_S = 0.25


class BodySizeLimit:
    """Refuse bodies over the limit with 413 before they are read into memory."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._refuse(scope, receive, send)
        # No trustworthy length: read the body up to the limit, then replay it to the app.
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # client went away
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                return await self._refuse(scope, receive, send)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope, receive, send):
        response = error_response(
            413, errors.TooLarge.code, f"request body exceeds {self.max_bytes} bytes", {"limit": self.max_bytes}
        )
        await response(scope, receive, send)


async def until_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Run `work`; cancel it if the client goes away, so its items are dropped before inference."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=DISCONNECT_POLL_S)
            if done:
                return task.result()
            if await request.is_disconnected():
                task.cancel()  # its items are dropped before inference
                raise ClientGone()
    finally:
        if not task.done():
            task.cancel()
