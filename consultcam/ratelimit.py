"""Per-client rate limits on the doors anyone can knock at: `/login`, `POST /api/pair` and the Medtech
launch (`/launch/medtech`, counted apart from `/login` at the same rate).

Each named limit (`LIMITS`: its setting) counts a client's requests in a sliding window (the `limits`
library's moving window: every request of the last window counts, so there is no burst at a window's
edge). The client is the address the app sees (`request.client.host`: the peer, or the address a trusted
proxy reports once the proxy settings allow it). The counts live in Redis when CONSULTCAM_REDIS_URL is set,
so every web process shares them, else in this process's memory.

Over the limit: 429 `TooManyRequests` with `Retry-After` (RFC 9110 §10.2.3; RFC 6585 §4) in seconds until
the oldest counted request leaves the window. If Redis cannot be reached the request goes through (logged):
the limits slow guessing and floods down; they are not what keeps a secret.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Literal

from fastapi import Request
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from consultcam.errors import ConsultcamError
from consultcam.runtime import Runtime

log = logging.getLogger(__name__)

LimitName = Literal["login", "pair", "launch"]
#: Each limit, the setting holding its rate, and what the client is told when it is over.
LIMITS: dict[LimitName, tuple[str, str]] = {
    "login": ("rate_limit_login", "Too many sign-in attempts from this computer."),
    "pair": ("rate_limit_pair", "Too many QR codes tried from this device."),
    # A launch is a sign-in: CONSULTCAM_RATE_LIMIT_LOGIN's rate, its own count (a practice's computers
    # may share one address; their launches should not use up the sign-in page's allowance).
    "launch": ("rate_limit_login", "Too many consultcam launches from this computer."),
}


class TooManyRequests(ConsultcamError):
    """429: the client went over a rate limit; `Retry-After` says in how many seconds to try again."""

    status, error = 429, "TooManyRequests"

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after
        self.headers = {"Retry-After": str(retry_after)}


class RateLimiter:
    """The limits of one web process, counting in `storage` (shared Redis, or memory)."""

    def __init__(self, rt: Runtime) -> None:
        storage: Storage
        if rt.redis is not None:
            # The runtime's own connection pool: no second set of connections to Redis.
            storage = RedisStorage(
                "async+redis://",
                implementation="redispy",
                # limits types its options as scalars; redis-py takes the pool as one.
                connection_pool=rt.redis.connection_pool,  # type: ignore[arg-type]
                key_prefix=f"{rt.settings.redis_prefix}ratelimit",
            )
        else:
            storage = MemoryStorage()
        self.strategy = MovingWindowRateLimiter(storage)
        self.items: dict[LimitName, RateLimitItem] = {
            name: parse(getattr(rt.settings, setting)) for name, (setting, _) in LIMITS.items()
        }

    async def hit(self, name: LimitName, client: str) -> None:
        """Count one request of `client` against limit `name`. Raises TooManyRequests (429) when it is over;
        the refused request is not counted, so a client that waits `Retry-After` gets through."""
        item = self.items[name]
        try:
            if await self.strategy.hit(item, name, client):
                return
            reset, _ = await self.strategy.get_window_stats(item, name, client)
        except Exception as exc:  # Redis unreachable: let the request through (see the module docstring)
            log.warning("rate limit %s not checked: %s", name, type(exc).__name__)
            return
        retry_after = max(1, math.ceil(reset - time.time()))
        raise TooManyRequests(
            f"{LIMITS[name][1]} Wait {retry_after} second{'s' if retry_after != 1 else ''}, then try again.",
            retry_after,
        )


def client_address(request: Request) -> str:
    """The client as the app sees it: the peer's address (rewritten from a trusted proxy's forwarding
    headers by the proxy settings), "unknown" when the server gives none."""
    return request.client.host if request.client else "unknown"


def limiter(request: Request) -> RateLimiter:
    """The app's rate limiter, made at first use and kept on `app.state` (its memory storage belongs to
    this process's event loop)."""
    found: RateLimiter | None = getattr(request.app.state, "rate_limiter", None)
    if found is None:
        found = request.app.state.rate_limiter = RateLimiter(request.app.state.runtime)
    return found


def rate_limit(name: LimitName) -> Callable[[Request], Awaitable[None]]:
    """A route dependency counting the request against limit `name` before anything else runs (no
    transaction is opened for a refused request): `dependencies=[Depends(rate_limit("pair"))]`."""

    async def dependency(request: Request) -> None:
        await limiter(request).hit(name, client_address(request))

    return dependency
