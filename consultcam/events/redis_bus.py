"""The production event bus: one Redis Stream per capture session, so any web process can serve any page.

Events are appended with `XADD` (trimmed with `MAXLEN ~`, expiring with the session); the stream id is the
SSE event id, so `Last-Event-ID` replays exactly what a page missed (`XRANGE` from an exclusive start,
Redis ≥ 6.2). Readers do not each hold a blocked connection (a thousand open pages would need a thousand):
each process keeps one Pub/Sub subscription that wakes its local readers when their session's stream grows.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from consultcam import metrics
from consultcam.events.bus import EVENT_TYPES, Event

log = logging.getLogger(__name__)


class RedisEventBus:
    """`EventBus` on Redis Streams. Keys: `<prefix>events:<sessionId>` (the stream) and
    `<prefix>notify:<sessionId>` (the Pub/Sub channel that says "new events").

    `retain` bounds each stream (approximately); `ttl_seconds` is refreshed on every publish so a stream
    outlives its session's retention, then disappears by itself.
    """

    def __init__(
        self, redis: Redis, *, prefix: str = "consultcam:", retain: int = 1000, ttl_seconds: int = 26 * 3600
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self._retain = retain
        self._ttl = ttl_seconds
        self._waiters: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._listener: asyncio.Task[None] | None = None

    def _stream(self, session_id: str) -> str:
        return f"{self._prefix}events:{session_id}"

    def _channel(self, session_id: str) -> str:
        return f"{self._prefix}notify:{session_id}"

    async def publish(self, session_id: str, type: str, data: dict[str, Any]) -> Event:
        if type not in EVENT_TYPES:
            raise ValueError(f"unknown event type {type!r}")
        metrics.EVENTS_PUBLISHED.labels(type).inc()
        at = datetime.now(UTC)
        fields = {"type": type, "at": at.isoformat(), "data": json.dumps(data)}
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xadd(self._stream(session_id), fields, maxlen=self._retain, approximate=True)
            pipe.expire(self._stream(session_id), self._ttl)
            event_id, _ = await pipe.execute()
        await self._redis.publish(self._channel(session_id), event_id)
        return Event(_text(event_id), type, session_id, at, data)

    async def _range(self, session_id: str, after_id: str | None) -> list[Event]:
        start = f"({after_id}" if after_id else "-"
        try:
            rows = await self._redis.xrange(self._stream(session_id), min=start, max="+", count=self._retain)
        except ResponseError:  # not a stream id (e.g. from the embedded bus before a switch): replay all
            rows = await self._redis.xrange(self._stream(session_id), min="-", max="+", count=self._retain)
        return [self._event(session_id, event_id, fields) for event_id, fields in rows]

    @staticmethod
    def _event(session_id: str, event_id: Any, fields: dict[Any, Any]) -> Event:
        values = {_text(k): _text(v) for k, v in fields.items()}
        return Event(
            _text(event_id),
            values["type"],
            session_id,
            datetime.fromisoformat(values["at"]),
            json.loads(values["data"]),
        )

    async def read(self, session_id: str, after_id: str | None, timeout: float) -> list[Event]:
        self._ensure_listener()
        woken = asyncio.Event()
        self._waiters[session_id].add(woken)  # before reading: an event published in between still wakes us
        try:
            found = await self._range(session_id, after_id)
            if found:
                return found
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(woken.wait(), timeout)
            return await self._range(session_id, after_id)
        finally:
            self._waiters[session_id].discard(woken)
            if not self._waiters[session_id]:
                del self._waiters[session_id]

    def _ensure_listener(self) -> None:
        if self._listener is None or self._listener.done():
            self._listener = asyncio.create_task(self._listen(), name="consultcam-event-listener")

    async def _listen(self) -> None:
        """Wake local readers on `notify` messages; after a lost connection, wake everyone (they re-read from
        the stream, so nothing is missed) and reconnect with back-off."""
        delay = 0.5
        pattern = f"{self._prefix}notify:*"
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.psubscribe(pattern)
                delay = 0.5
                async for message in pubsub.listen():
                    session_id = _text(message["channel"]).rsplit(":", 1)[-1]
                    for waiter in list(self._waiters.get(session_id, ())):
                        waiter.set()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                log.warning("event bus: lost Redis (%s); reconnecting in %.1fs", type(exc).__name__, delay)
                for waiters in list(self._waiters.values()):
                    for waiter in list(waiters):
                        waiter.set()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    async def last_id(self, session_id: str) -> str | None:
        rows = await self._redis.xrevrange(self._stream(session_id), count=1)
        return _text(rows[0][0]) if rows else None

    async def drop(self, session_id: str) -> None:
        await self._redis.delete(self._stream(session_id))

    async def check(self) -> None:
        await self._redis.ping()

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
