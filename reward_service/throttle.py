"""Failed authentication, counted per client address, so keys and rater tokens cannot be guessed fast.

An address that fails `limit` times within `window_s` (a missing or wrong API key,
admin key or rater token) is refused with 429 and `Retry-After` on every route that
takes a key or token until `window_s` after its last counted failure, right keys
included: if a right guess still answered 200 during the block, throttling would only
slow the guessing, not hide its success. The price: a client that shares an address
with a guesser (behind one NAT, or a proxy not listed in `server.trusted_proxies`, whose
`X-Forwarded-For` is then not believed) is refused too, for at most one window.

The table of addresses is bounded (MAX_CLIENTS, least recently failed dropped first),
so a flood of addresses costs memory only up to that bound.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from reward_service.errors import TooManyFailedAuth

log = logging.getLogger(__name__)

MAX_CLIENTS = 100_000


@dataclass
class _Client:
    failures: deque = field(default_factory=deque)  # monotonic times within the window
    blocked_until: float = 0.0


class FailedAuthThrottle:
    def __init__(self, limit: int, window_s: float, clock=time.monotonic):
        self.limit = limit
        self.window_s = window_s
        self.clock = clock
        self._clients: OrderedDict[str, _Client] = OrderedDict()

    def check(self, address: str) -> None:
        """Raise TooManyFailedAuth while `address` is blocked."""
        client = self._clients.get(address)
        if client is None:
            return
        wait = client.blocked_until - self.clock()
        if wait > 0:
            raise TooManyFailedAuth(
                f"too many failed authentications from this address; try again in {wait:.0f} s",
                retry_after_s=wait)

    def failed(self, address: str) -> None:
        """Count one failed authentication of `address`; block it at the limit."""
        now = self.clock()
        client = self._clients.pop(address, None) or _Client()
        self._clients[address] = client  # most recently failed last
        while client.failures and client.failures[0] <= now - self.window_s:
            client.failures.popleft()
        client.failures.append(now)
        if len(client.failures) >= self.limit:
            client.failures.clear()
            client.blocked_until = now + self.window_s
            log.warning("%s failed authentication %d times within %gs: refusing its keys and tokens for %gs",
                        address, self.limit, self.window_s, self.window_s)
        while len(self._clients) > MAX_CLIENTS:
            self._clients.popitem(last=False)
