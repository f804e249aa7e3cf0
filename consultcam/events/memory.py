"""The embedded event bus: per-session ring buffers in this process (one web process, no Redis)."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

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


@dataclass
class _Ring:
    events: deque[Event]
    counter: int = 0
    touched: float = field(default_factory=time.monotonic)
    waiters: set[asyncio.Event] = field(default_factory=set)


class InProcessEventBus:
    """The embedded bus: a ring buffer of the last `retain` events per session, in this process only.

    Ids are decimal sequence numbers per session. Rings of sessions unseen for `idle_seconds` are dropped.

    Readers wait on an `asyncio.Event` each, registered with the ring; `publish` appends and sets them. No
    lock is needed, because nothing awaits between a check and the registration (one event loop). An
    `asyncio.Condition` held across the wait, as before, broke under mass disconnects: a reader cancelled
    twice (anyio re-delivers cancellation) left `wait_for` while its helper task was still re-acquiring
    the lock, then released a lock it did not hold (`RuntimeError: Lock is not acquired`), leaving the
    ring's lock corrupted so later publishes hung.
    """

    def __init__(self, retain: int = 500, idle_seconds: float = 48 * 3600) -> None:
        self._rings: dict[str, _Ring] = {}
        self._retain = retain
        self._idle = idle_seconds
        self._streams = LocalStreams()

    def _ring(self, session_id: str) -> _Ring:
        ring = self._rings.get(session_id)
        if ring is None:
            self._evict()
            ring = self._rings[session_id] = _Ring(deque(maxlen=self._retain))
        ring.touched = time.monotonic()
        return ring

    def _evict(self) -> None:
        cutoff = time.monotonic() - self._idle
        for key in [k for k, r in self._rings.items() if r.touched < cutoff and not r.waiters]:
            del self._rings[key]

    async def publish(self, session_id: str, type: str, data: dict[str, Any]) -> Event:
        if type not in EVENT_TYPES:
            raise ValueError(f"unknown event type {type!r}")
        metrics.EVENTS_PUBLISHED.labels(type).inc()
        ring = self._ring(session_id)
        ring.counter += 1
        event = Event(str(ring.counter), type, session_id, datetime.now(UTC), data)
        ring.events.append(event)
        for waiter in ring.waiters:
            waiter.set()
        if (ends := ends_streams(type, session_id, data)) is not None:
            await self.end_streams(**ends)
        return event

    def _after(self, ring: _Ring, after_id: str | None) -> list[Event]:
        after = int(after_id) if after_id and after_id.isdigit() else 0
        if after > ring.counter:  # an id from before a restart: replay what we have
            after = 0
        return [e for e in ring.events if int(e.id) > after]

    async def read(
        self, session_id: str, after_id: str | None, timeout: float, lease: StreamLease | None = None
    ) -> list[Event]:
        ring = self._ring(session_id)
        found = self._after(ring, after_id)
        if found or timeout <= 0 or (lease is not None and (lease.ending or lease.recheck)):
            return found
        waiter = asyncio.Event() if lease is None else lease.wake
        waiter.clear()
        ring.waiters.add(waiter)
        try:
            await wait_for_wake(waiter, timeout)
        finally:
            ring.waiters.discard(waiter)
        return self._after(ring, after_id)

    async def last_id(self, session_id: str) -> str | None:
        ring = self._rings.get(session_id)
        return str(ring.counter) if ring and ring.counter else None

    async def open_stream(
        self, session_id: str, credential_id: str | None, limits: StreamLimits
    ) -> StreamLease:
        """Counted in this process only: embedded mode has one web process."""
        in_session, of_credential = self._streams.count(session_id, credential_id)
        if in_session >= limits.per_session:
            raise TooManyStreams.for_session(limits.per_session)
        if credential_id and of_credential >= limits.per_credential:
            raise TooManyStreams.for_credential(limits.per_credential)
        lease = StreamLease(session_id, credential_id, _on_release=self._release)
        self._streams.add(lease)
        return lease

    async def _release(self, lease: StreamLease) -> None:
        self._streams.discard(lease)

    async def end_streams(self, *, credential_id: str | None = None, session_id: str | None = None) -> None:
        self._streams.end(credential_id=credential_id, session_id=session_id)

    async def drop(self, session_id: str) -> None:
        self._rings.pop(session_id, None)
        await self.end_streams(session_id=session_id)

    async def check(self) -> None:
        return None

    async def close(self) -> None:
        self._rings.clear()
