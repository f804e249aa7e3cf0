"""The event bus port: per-session, ordered, replayable events for the desktop and the phone.

Readers poll with `read(session_id, after_id, timeout)`, a blocking read that maps onto Redis Streams
(`XREAD BLOCK`) in production; event ids are what SSE sends as `id:` so `Last-Event-ID` replays what a
reconnecting page missed.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from consultcam import metrics

if TYPE_CHECKING:
    from consultcam.db import UnitOfWork

#: Event types (DESIGN.md, "Event types"; `consent.recorded` from issue 5).
EVENT_TYPES = frozenset(
    {
        "phone.paired",
        "phone.revoked",
        "consent.recorded",
        "image.added",
        "image.updated",
        "image.analysed",
        "image.deleted",
        "commit.started",
        "commit.progress",
        "session.committed",
        "commit.failed",
        "session.expired",
    }
)


@dataclass(frozen=True)
class Event:
    """One event: `id` is opaque and ordered within its session."""

    id: str
    type: str
    session_id: str
    at: datetime
    data: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {"type": self.type, "sessionId": self.session_id, "at": self.at.isoformat(), "data": self.data}


class EventBus(Protocol):
    """Publish and read per-session events."""

    async def publish(self, session_id: str, type: str, data: dict[str, Any]) -> Event:
        """Append an event; raises ValueError for a type outside EVENT_TYPES."""
        ...

    async def read(self, session_id: str, after_id: str | None, timeout: float) -> list[Event]:
        """Events after `after_id` (all retained ones when None or unknown), waiting up to `timeout`
        seconds for the first; an empty list means nothing happened."""
        ...

    async def last_id(self, session_id: str) -> str | None:
        """The newest event id, so a fresh page can start from "now" after loading the current state."""
        ...

    async def drop(self, session_id: str) -> None:
        """Forget a session's events (it ended)."""
        ...

    async def check(self) -> None:
        """Readiness: raise when the bus is unreachable."""
        ...

    async def close(self) -> None: ...


@dataclass
class _Ring:
    events: deque[Event]
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    counter: int = 0
    touched: float = field(default_factory=time.monotonic)


class InProcessEventBus:
    """The embedded bus: a ring buffer of the last `retain` events per session, in this process only.

    Ids are decimal sequence numbers per session. Rings of sessions unseen for `idle_seconds` are dropped.
    """

    def __init__(self, retain: int = 500, idle_seconds: float = 48 * 3600) -> None:
        self._rings: dict[str, _Ring] = {}
        self._retain = retain
        self._idle = idle_seconds

    def _ring(self, session_id: str) -> _Ring:
        ring = self._rings.get(session_id)
        if ring is None:
            self._evict()
            ring = self._rings[session_id] = _Ring(deque(maxlen=self._retain))
        ring.touched = time.monotonic()
        return ring

    def _evict(self) -> None:
        cutoff = time.monotonic() - self._idle
        for key in [k for k, r in self._rings.items() if r.touched < cutoff]:
            del self._rings[key]

    async def publish(self, session_id: str, type: str, data: dict[str, Any]) -> Event:
        if type not in EVENT_TYPES:
            raise ValueError(f"unknown event type {type!r}")
        metrics.EVENTS_PUBLISHED.labels(type).inc()
        ring = self._ring(session_id)
        async with ring.changed:
            ring.counter += 1
            event = Event(str(ring.counter), type, session_id, datetime.now(UTC), data)
            ring.events.append(event)
            ring.changed.notify_all()
        return event

    def _after(self, ring: _Ring, after_id: str | None) -> list[Event]:
        after = int(after_id) if after_id and after_id.isdigit() else 0
        if after > ring.counter:  # an id from before a restart: replay what we have
            after = 0
        return [e for e in ring.events if int(e.id) > after]

    async def read(self, session_id: str, after_id: str | None, timeout: float) -> list[Event]:
        ring = self._ring(session_id)
        async with ring.changed:
            found = self._after(ring, after_id)
            if found:
                return found
            try:
                await asyncio.wait_for(
                    ring.changed.wait_for(lambda: bool(self._after(ring, after_id))), timeout
                )
            except TimeoutError:
                return []
            return self._after(ring, after_id)

    async def last_id(self, session_id: str) -> str | None:
        ring = self._rings.get(session_id)
        return str(ring.counter) if ring and ring.counter else None

    async def drop(self, session_id: str) -> None:
        self._rings.pop(session_id, None)

    async def check(self) -> None:
        return None

    async def close(self) -> None:
        self._rings.clear()


def publish_after_commit(
    uow: UnitOfWork, bus: EventBus, session_id: str, type: str, data: dict[str, Any]
) -> None:
    """Publish once the current transaction commits (never for work that rolled back)."""
    if type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type!r}")

    async def _publish() -> None:
        await bus.publish(session_id, type, data)

    uow.after_commit(_publish)
