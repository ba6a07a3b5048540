"""How `serve` runs the app under uvicorn: read deadlines, a connection cap, a redacted access log.

uvicorn alone holds a connection open as long as its client keeps trickling a
request in (slowloris): it has a keep-alive timeout for idle connections between
requests, but no deadline for reading a request, and httptools puts no bound on
the size of its head. `DeadlineProtocol` adds both deadlines and the bound;
`server.max_connections` caps open connections (uvicorn's `limit_concurrency`:
a request beyond it gets 503). The access log never shows query strings, which
may carry a key a client put in the URL.
"""

from __future__ import annotations

import functools
import logging
import re

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from reward_service.config import ServerSettings

log = logging.getLogger(__name__)


class DeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with two deadlines and a size cap on the request head.

    - The head (request line and headers) must be complete `header_timeout_s` after the
      connection opened, or after the first byte of a later request on it: a connection
      that sends nothing, or trickles its headers, is closed.
    - The body must be complete `body_timeout_s` after the head: a request whose body
      trickles in is closed (the app sees the client go away).
    - A head over `max_header_bytes` gets 431 and the connection closes.

    While the app works on a complete request no deadline runs, so a long wait (a human
    rating, a big batch) is never cut.
    """

    def __init__(self, *args, header_timeout_s: float, body_timeout_s: float, max_header_bytes: int, **kwargs):
        super().__init__(*args, **kwargs)
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
        message = f"request line and headers exceed {self.max_header_bytes} bytes".encode()
        self.transport.write(b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain\r\n"
                             b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(message), message))
        self.transport.close()

    def send_400_response(self, msg: str) -> None:
        if not self.transport.is_closing():  # a refused head was answered (431) already
            super().send_400_response(msg)

    def on_headers_complete(self) -> None:
        self._start_deadline(self.body_timeout_s, "request body")
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


def serve(app, server: ServerSettings, log_level: str) -> None:
    """Run `app` on `server.host:server.port` until stopped."""
    protocol = functools.partial(DeadlineProtocol, header_timeout_s=server.header_timeout_s,
                                 body_timeout_s=server.body_timeout_s, max_header_bytes=server.max_header_bytes)
    config = uvicorn.Config(app, host=server.host, port=server.port, log_level=log_level, http=protocol,
                            ws="none", limit_concurrency=server.max_connections)
    logging.getLogger("uvicorn.access").addFilter(RedactQueryStrings())  # after Config set up uvicorn's logging
    uvicorn.Server(config).run()
