"""How `serve` runs the app under uvicorn: read deadlines, a connection cap, a redacted access log.

uvicorn alone holds a connection open as long as its client keeps trickling a
request in (slowloris): it has a keep-alive timeout for idle connections between
requests, but no deadline for reading a request, and httptools puts no bound on
the size of its head. `DeadlineProtocol` adds both deadlines and the bound;
`server.max_connections` caps open connections (the check of uvicorn's
`limit_concurrency`: a request beyond it gets 503, here with the service's typed
error body and `Retry-After`). The access log never shows query strings, which
may carry a key a client put in the URL.

Forwarded headers (`X-Forwarded-For`, `-Proto`) are believed only from the peers in
`server.trusted_proxies`, by default none: uvicorn's own default believes them from
127.0.0.1, so any local process could name a new address on every request and never
be throttled for failed authentication (or get another address blocked).
"""

from __future__ import annotations

import functools
import logging
import re

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from reward_service import schemas
from reward_service.config import ServerSettings

log = logging.getLogger(__name__)
CONNECTIONS_RETRY_AFTER_S = 1


def error_body(code: str, message: str, retryable: bool) -> bytes:
    """The typed error body of every other error (`reward_service.routes.errors`), for the
    answers given below the app: a refused head, a connection over the cap."""
    body = schemas.ErrorResponse(error=schemas.ErrorBody(type=code, message=message, retryable=retryable))
    return body.model_dump_json().encode()


async def too_many_connections(scope, receive, send) -> None:
    """What a request gets while `max_connections` connections are open (uvicorn's own answer
    is a plain-text 503 without Retry-After)."""
    body = error_body("too_many_connections", "the server has as many connections open as it accepts "
                      "(server.max_connections); retry shortly", retryable=True)
    await send({"type": "http.response.start", "status": 503, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"retry-after", str(CONNECTIONS_RETRY_AFTER_S).encode()), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class DeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with two deadlines and a size cap on the request head.

    - The head (request line and headers) must be complete `header_timeout_s` after the
      connection opened, or after the first byte of a later request on it: a connection
      that sends nothing, or trickles its headers, is closed.
    - The body must be complete `body_timeout_s` after the head: a request whose body
      trickles in is closed (the app sees the client go away).
    - A head over `max_header_bytes` gets 431 and the connection closes.
    - A request arriving while `max_connections` connections are open (or as many requests
      are being answered) gets 503 `too_many_connections` with Retry-After.

    While the app works on a complete request no deadline runs, so a long wait (a human
    rating, a big batch) is never cut.
    """

    def __init__(self, *args, header_timeout_s: float, body_timeout_s: float, max_header_bytes: int,
                 max_connections: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.limit_concurrency = None  # uvicorn's check answers in plain text: on_headers_complete checks instead
        self.max_connections = max_connections
        self.header_timeout_s = header_timeout_s
        self.body_timeout_s = body_timeout_s
        self.max_header_bytes = max_header_bytes
        self._deadline = None  # the running read deadline's timer, if any
        self._head_bytes = 0

    def _start_deadline(self, seconds: float, what: str) -> None:
        self._stop_deadline()
        self._deadline = self.loop.call_later(seconds, self._expired, seconds, what)

    def _stop_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self, seconds: float, what: str) -> None:
        self._deadline = None
        if self.flow.read_paused:  # the server stopped reading (a pipelined request waits its turn), not the client
            self._start_deadline(seconds, what)
        elif not self.transport.is_closing():
            log.warning("closed the connection of %s: its %s did not arrive within %gs", self._peer, what, seconds)
            self.transport.close()

    @property
    def _peer(self) -> str:
        return "%s:%d" % self.client if self.client else "a client"

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._start_deadline(self.header_timeout_s, "request head")

    def connection_lost(self, exc) -> None:
        self._stop_deadline()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        if self._deadline is None:  # a later request on a kept-alive connection
            self._start_deadline(self.header_timeout_s, "request head")
        self._head_bytes = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value) + 4)  # ": " and CRLF
        super().on_header(name, value)

    def _count_head(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self.max_header_bytes:
            self._refuse_head()
            raise ValueError("request head over the limit")  # stops the parser; the connection is closing

    def _refuse_head(self) -> None:
        log.warning("refused the request of %s: its head exceeds %d bytes", self._peer, self.max_header_bytes)
        body = error_body("request_head_too_large", f"request line and headers exceed {self.max_header_bytes} "
                          "bytes (server.max_header_bytes)", retryable=False)
        self.transport.write(b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
                             b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body))
        self.transport.close()

    def send_400_response(self, msg: str) -> None:
        if not self.transport.is_closing():  # a refused head was answered (431) already
            super().send_400_response(msg)

    def on_headers_complete(self) -> None:
        self._start_deadline(self.body_timeout_s, "request body")
        cap = self.max_connections
        if cap is not None and (len(self.connections) >= cap or len(self.tasks) >= cap):  # as uvicorn counts
            log.warning("refused a request of %s: %d connections open (server.max_connections=%d)",
                        self._peer, len(self.connections), cap)
            app, self.app = self.app, too_many_connections
            try:
                super().on_headers_complete()
            finally:
                self.app = app
        else:
            super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._stop_deadline()
        super().on_message_complete()


class RedactQueryStrings(logging.Filter):
    """Replaces the query string of any URL in a log record's arguments by `?<redacted>`.

    uvicorn logs `"POST /score?api_key=... HTTP/1.1" 401`; a client that puts a key in the
    URL must not put it in the log. Only the arguments change, so uvicorn's own access
    formatter (which unpacks them) still works.
    """

    QUERY = re.compile(r"\?\S*")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self.QUERY.sub("?<redacted>", arg) if isinstance(arg, str) and "?" in arg else arg
                                for arg in record.args)
        return True


def uvicorn_config(app, server: ServerSettings, log_level: str) -> uvicorn.Config:
    """uvicorn's settings for `server`: the protocol above, and forwarded headers believed only
    from `server.trusted_proxies` (none by default; uvicorn's own default trusts loopback)."""
    protocol = functools.partial(DeadlineProtocol, header_timeout_s=server.header_timeout_s,
                                 body_timeout_s=server.body_timeout_s, max_header_bytes=server.max_header_bytes,
                                 max_connections=server.max_connections)
    return uvicorn.Config(app, host=server.host, port=server.port, log_level=log_level, http=protocol, ws="none",
                          proxy_headers=bool(server.trusted_proxies),
                          forwarded_allow_ips=list(server.trusted_proxies) or [])


def serve(app, server: ServerSettings, log_level: str) -> None:
    """Run `app` on `server.host:server.port` until stopped."""
    config = uvicorn_config(app, server, log_level)
    logging.getLogger("uvicorn.access").addFilter(RedactQueryStrings())  # after Config set up uvicorn's logging
    if server.trusted_proxies:
        log.info("believing X-Forwarded-For and X-Forwarded-Proto from %s only", ", ".join(server.trusted_proxies))
    uvicorn.Server(config).run()
