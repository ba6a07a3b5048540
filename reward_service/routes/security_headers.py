"""Security headers on every response the app sends: the labeling page cannot be framed
(clickjacking a rater), and no page runs script or style that the service does not serve
as a file of its own.

The labeling page and the API docs load their scripts and styles from the service
(`/label.js`, `/docs/start.js`, `/docs/assets/...`), so one strict policy fits every
route, the docs included (Swagger UI styles its elements through the DOM, which the
policy allows, not through inline style).
"""

from __future__ import annotations

HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


# As ASGI raw headers, built once: this runs on every response, scoring ones included.
_RAW = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in HEADERS.items()]
_NAMES = {name for name, _ in _RAW}


class SecurityHeaders:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":  # ours replace any the route set
                kept = [header for header in message.get("headers", ()) if header[0].lower() not in _NAMES]
                message["headers"] = kept + _RAW
            await send(message)

        await self.app(scope, receive, send_with_headers)
