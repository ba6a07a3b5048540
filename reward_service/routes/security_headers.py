"""Security headers on every response the app sends: the labeling page cannot be framed
(clickjacking a rater), and no page runs script or style that the service does not serve
as a file of its own.

The labeling page and the API docs load their scripts and styles from the service
(`/label.js`, `/docs/start.js`, `/docs/assets/...`), so one strict policy fits every
route, the docs included (Swagger UI styles its elements through the DOM, which the
policy allows, not through inline style).
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders

HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class SecurityHeaders:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)
