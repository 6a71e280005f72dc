"""Failed authentications counted per client address, in memory, with bounded size.

Rule: a client that causes more than `limit` failed authentications within `window`
seconds of its first one gets 429 for requests that carry no valid token, until that
window has passed; then counting starts afresh. Requests with a valid token are never
limited, so an admin panel behind the same NAT (or behind Docker's userland proxy,
where every client looks like the network's gateway) keeps working while a neighbour
hammers the API.

Why so simple: tokens carry 256-bit secrets, so guessing is hopeless anyway; the limit
is about noise in the logs and load (each token presented costs a database lookup). A
fixed window per client needs two numbers, so memory is bounded by `max_clients`
whatever `limit` is. When more clients fail than that, the one that failed least
recently is forgotten first: an attacker with many addresses can only make the
controller forget its own addresses sooner, never grow this table.

IPv6 clients are counted per /64, the usual size of one site's network: otherwise one
host could use a fresh address for every attempt.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable

DEFAULT_MAX_CLIENTS = 10_000


def client_key(host: str | None) -> str:
    """What failures are counted under: the IPv4 address, the IPv6 /64, or the host
    text as given when it is no IP address (a Unix socket, a test client)."""
    if not host:
        return "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host[:64]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class _Window:
    __slots__ = ("count", "started")

    def __init__(self, started: float) -> None:
        self.started = started
        self.count = 0


class AuthFailureLimiter:
    """Per-client failure counter. Used from the event loop only (no locking)."""

    def __init__(
        self,
        limit: int,
        window: float,
        *,
        max_clients: int = DEFAULT_MAX_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window
        self.max_clients = max_clients
        self.clock = clock
        self._clients: OrderedDict[str, _Window] = OrderedDict()

    def __len__(self) -> int:
        return len(self._clients)

    def retry_after(self, key: str) -> int | None:
        """Whole seconds until `key` may fail again, or None while it is not blocked."""
        window = self._clients.get(key)
        if window is None:
            return None
        remaining = window.started + self.window - self.clock()
        if remaining <= 0:
            del self._clients[key]
            return None
        if window.count < self.limit:
            return None
        return max(1, math.ceil(remaining))

    def record_failure(self, key: str) -> None:
        now = self.clock()
        window = self._clients.pop(key, None)
        if window is None or now - window.started >= self.window:
            window = _Window(now)
        window.count += 1
        self._clients[key] = window  # (re)inserted last: the most recent failure
        while len(self._clients) > self.max_clients:
            self._clients.popitem(last=False)
