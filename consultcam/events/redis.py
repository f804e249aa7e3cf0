"""The production event bus: one Redis Stream per capture session, so any web process can serve any page.

Events are appended with `XADD` (trimmed with `MAXLEN ~`, expiring with the session); the stream id is the
SSE event id, so `Last-Event-ID` replays exactly what a page missed (`XRANGE` from an exclusive start,
Redis ≥ 6.2). Readers do not each hold a blocked connection (a thousand open pages would need a thousand):
each process keeps one Pub/Sub subscription that wakes its local readers when their session's stream grows.

Open streams (`consultcam.events.streams`) are counted in Redis so the caps hold across processes: one sorted
set per session and per credential, `<prefix>streams:session:<id>` and `<prefix>streams:credential:<id>`,
whose members are lease ids scored by when they lapse (Redis's own clock). A process refreshes its leases
every third of `LEASE_TTL_SECONDS`; a crashed process's leases lapse after it. `end_streams`
ends the local streams and publishes `<prefix>streams:end`, which every process's subscription hears; a
process whose subscription was down meanwhile makes all its streams re-check their authorisation. (The
admission script touches two keys: a single Redis or a primary with replicas, not Redis Cluster.)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError
from redis.typing import EncodableT, FieldT

from consultcam import metrics
from consultcam.events.bus import EVENT_TYPES, Event
from consultcam.events.streams import (
    LocalStreams,
    StreamLease,
    StreamLimits,
    TooManyStreams,
    ends_streams,
    wait_for_wake,
)

log = logging.getLogger(__name__)

#: How long a stream's place under the caps outlives its process (a crash); refreshed every third of it.
LEASE_TTL_SECONDS = 60.0

#: Admit a stream when neither its session's nor its credential's set is full. KEYS: the session's set,
#: then the credential's (optional). ARGV: lease id, TTL (ms), per-session cap, per-credential cap.
#: Returns 0 (admitted), or the position of the full set (1: session, 2: credential).
_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
local caps = {tonumber(ARGV[3]), tonumber(ARGV[4])}
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  if redis.call('ZCARD', key) >= caps[i] then return i end
end
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, now + ttl, ARGV[1])
  redis.call('PEXPIRE', key, ttl)
end
return 0
"""

#: Extend leases still registered (XX: a released one is not brought back). KEYS: sets; ARGV[1]: TTL (ms),
#: ARGV[i + 1]: the lease id in KEYS[i].
_REFRESH = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, 'XX', now + ttl, ARGV[i + 1])
  redis.call('PEXPIRE', key, ttl)
end
return #KEYS
"""


class RedisEventBus:
    """`EventBus` on Redis Streams. Keys: `<prefix>events:<sessionId>` (the stream) and
    `<prefix>notify:<sessionId>` (the Pub/Sub channel that says "new events").

    `retain` bounds each stream (approximately); `ttl_seconds` is refreshed on every publish so a stream
    outlives its session's retention, then disappears by itself. `lease_ttl_seconds`: see the module.
    """

    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str = "consultcam:",
        retain: int = 1000,
        ttl_seconds: int = 26 * 3600,
        lease_ttl_seconds: float = LEASE_TTL_SECONDS,
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self._retain = retain
        self._ttl = ttl_seconds
        self._lease_ttl_ms = int(lease_ttl_seconds * 1000)
        self._waiters: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._listener: asyncio.Task[None] | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._streams = LocalStreams()
        self._admit = redis.register_script(_ADMIT)
        self._refresh = redis.register_script(_REFRESH)

    def _stream(self, session_id: str) -> str:
        return f"{self._prefix}events:{session_id}"

    def _channel(self, session_id: str) -> str:
        return f"{self._prefix}notify:{session_id}"

    @property
    def _control(self) -> str:
        return f"{self._prefix}streams:end"

    def _lease_keys(self, lease: StreamLease) -> list[str]:
        keys = [f"{self._prefix}streams:session:{lease.session_id}"]
        if lease.credential_id:
            keys.append(f"{self._prefix}streams:credential:{lease.credential_id}")
        return keys

    async def publish(self, session_id: str, type: str, data: dict[str, Any]) -> Event:
        if type not in EVENT_TYPES:
            raise ValueError(f"unknown event type {type!r}")
        metrics.EVENTS_PUBLISHED.labels(type).inc()
        at = datetime.now(UTC)
        fields: dict[FieldT, EncodableT] = {
            "type": type,
            "at": at.isoformat(),
            "data": json.dumps(data),
        }
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xadd(self._stream(session_id), fields, maxlen=self._retain, approximate=True)
            pipe.expire(self._stream(session_id), self._ttl)
            event_id, _ = await pipe.execute()
        await self._redis.publish(self._channel(session_id), event_id)
        if (ends := ends_streams(type, session_id, data)) is not None:
            await self.end_streams(**ends)
        return Event(_text(event_id), type, session_id, at, data)

    async def _range(self, session_id: str, after_id: str | None) -> list[Event]:
        start = f"({after_id}" if after_id else "-"
        try:
            rows = await self._redis.xrange(self._stream(session_id), min=start, max="+", count=self._retain)
        except ResponseError:  # not a stream id (e.g. from the embedded bus before a switch): replay all
            rows = await self._redis.xrange(self._stream(session_id), min="-", max="+", count=self._retain)
        return [self._event(session_id, event_id, fields or {}) for event_id, fields in rows or []]

    @staticmethod
    def _event(session_id: str, event_id: Any, fields: Mapping[Any, Any]) -> Event:
        values = {_text(k): _text(v) for k, v in fields.items()}
        return Event(
            _text(event_id),
            values["type"],
            session_id,
            datetime.fromisoformat(values["at"]),
            json.loads(values["data"]),
        )

    async def read(
        self, session_id: str, after_id: str | None, timeout: float, lease: StreamLease | None = None
    ) -> list[Event]:
        self._ensure_listener()
        if lease is not None and (lease.ending or lease.recheck):
            return await self._range(session_id, after_id)
        woken = asyncio.Event() if lease is None else lease.wake
        woken.clear()
        self._waiters[session_id].add(woken)  # before reading: an event published in between still wakes us
        try:
            found = await self._range(session_id, after_id)
            if found or timeout <= 0:
                return found
            await wait_for_wake(woken, timeout)
            return await self._range(session_id, after_id)
        finally:
            self._waiters[session_id].discard(woken)
            if not self._waiters[session_id]:
                del self._waiters[session_id]

    def _ensure_listener(self) -> None:
        if self._listener is None or self._listener.done():
            self._listener = asyncio.create_task(self._listen(), name="consultcam-event-listener")
        if self._keeper is None or self._keeper.done():
            self._keeper = asyncio.create_task(self._keep(), name="consultcam-stream-leases")

    async def _listen(self) -> None:
        """Wake local readers on `notify` messages and end local streams on `streams:end` ones. After a lost
        connection, wake every reader (they re-read from the stream, so nothing is missed) and, once
        subscribed again, make every stream re-check its authorisation (an end signal may have been missed);
        reconnect with back-off."""
        delay = 0.5
        pattern, control = f"{self._prefix}notify:*", self._control
        while True:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.psubscribe(pattern)
                await pubsub.subscribe(control)
                async for message in pubsub.listen():
                    channel = _text(message["channel"])
                    if message["type"] == "pmessage":
                        for waiter in list(self._waiters.get(channel.rsplit(":", 1)[-1], ())):
                            waiter.set()
                    elif message["type"] == "message" and channel == control:
                        self._end_locally(message["data"])
                    elif message["type"] == "subscribe" and channel == control:
                        delay = 0.5  # subscribed: signals from now on are heard
                        for lease in self._streams.all():
                            lease.nudge()
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
                    await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py leaves PubSub.aclose untyped

    def _end_locally(self, payload: Any) -> None:
        try:
            signal = json.loads(_text(payload))
            credential_id, session_id = signal.get("credentialId"), signal.get("sessionId")
            self._streams.end(credential_id=credential_id, session_id=session_id)
        except (ValueError, AttributeError):
            log.warning("event bus: ignored a malformed streams:end message")

    async def _keep(self) -> None:
        """Refresh this process's leases so they do not lapse while their streams are open."""
        while True:
            await asyncio.sleep(self._lease_ttl_ms / 3000)
            keys: list[str] = []
            ids: list[str] = []
            for lease in self._streams.all():
                for key in self._lease_keys(lease):
                    keys.append(key)
                    ids.append(lease.id)
            if not keys:
                continue
            try:
                await self._refresh(keys=keys, args=[self._lease_ttl_ms, *ids])
            except (RedisError, OSError) as exc:
                log.warning("event bus: could not refresh stream leases (%s)", type(exc).__name__)

    async def open_stream(
        self, session_id: str, credential_id: str | None, limits: StreamLimits
    ) -> StreamLease:
        self._ensure_listener()
        lease = StreamLease(session_id, credential_id, _on_release=self._release)
        full = await self._admit(
            keys=self._lease_keys(lease),
            args=[lease.id, self._lease_ttl_ms, limits.per_session, limits.per_credential],
        )
        if int(full) == 1:
            raise TooManyStreams.for_session(limits.per_session)
        if int(full) == 2:
            raise TooManyStreams.for_credential(limits.per_credential)
        self._streams.add(lease)
        return lease

    async def _release(self, lease: StreamLease) -> None:
        self._streams.discard(lease)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in self._lease_keys(lease):
                    pipe.zrem(key, lease.id)
                await pipe.execute()
        except (RedisError, OSError) as exc:  # the lease lapses by itself within LEASE_TTL_SECONDS
            log.warning("event bus: could not release a stream lease (%s)", type(exc).__name__)

    async def end_streams(self, *, credential_id: str | None = None, session_id: str | None = None) -> None:
        self._streams.end(credential_id=credential_id, session_id=session_id)
        signal = {"credentialId": credential_id} if credential_id is not None else {"sessionId": session_id}
        await self._redis.publish(self._control, json.dumps(signal))

    async def last_id(self, session_id: str) -> str | None:
        rows = await self._redis.xrevrange(self._stream(session_id), count=1)
        return _text(rows[0][0]) if rows else None

    async def drop(self, session_id: str) -> None:
        await self._redis.delete(self._stream(session_id))
        await self.end_streams(session_id=session_id)

    async def check(self) -> None:
        await self._redis.ping()

    async def close(self) -> None:
        """Stop listening and refreshing leases. Waits at most 2 s: a pub/sub connection cancelled while it
        (re)subscribes can take far longer to close in redis-py, and shutting down must not hang on it."""
        tasks = [task for task in (self._listener, self._keeper) if task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=2)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
