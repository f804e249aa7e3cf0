"""The event bus port: per-session, ordered, replayable events for the desktop and the phone.

Readers poll with `read(session_id, after_id, timeout)`, a blocking read that maps onto Redis Streams
(`XREAD BLOCK`) in production; event ids are what SSE sends as `id:` so `Last-Event-ID` replays what a
reconnecting page missed. Each open stream holds a lease (`open_stream`) that counts it against the caps
and lets `end_streams` end it at once when its credential is revoked or its session ends
(`consultcam.events.streams`).

Two adapters: `memory.InProcessEventBus` (embedded: one process) and `redis.RedisEventBus` (production);
`registry.create_bus` picks one for the settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from consultcam.events.streams import StreamLease, StreamLimits

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
    """Publish and read per-session events; register, count and end the open streams that read them."""

    async def publish(self, session_id: str, type: str, data: dict[str, Any]) -> Event:
        """Append an event; raises ValueError for a type outside EVENT_TYPES. An event that withdraws access
        (`streams.ends_streams`: `phone.revoked`, `session.committed`, `session.expired`) then ends the
        matching open streams, as `end_streams` does."""
        ...

    async def read(
        self, session_id: str, after_id: str | None, timeout: float, lease: StreamLease | None = None
    ) -> list[Event]:
        """Events after `after_id` (all retained ones when None or unknown), waiting up to `timeout`
        seconds for the first; an empty list means nothing happened. With `lease`, the wait also ends
        (possibly empty) as soon as the lease is ended or nudged."""
        ...

    async def last_id(self, session_id: str) -> str | None:
        """The newest event id, so a fresh page can start from "now" after loading the current state."""
        ...

    async def open_stream(
        self, session_id: str, credential_id: str | None, limits: StreamLimits
    ) -> StreamLease:
        """Register an open stream of `session_id` for the caller's `credential_id` (None: a caller with
        no revocable credential, e.g. the embedded clinician token). Raises `TooManyStreams` (429) when
        the session already has `limits.per_session` open streams or the credential
        `limits.per_credential`, counted on every process sharing the bus. The caller must
        `await lease.release()` when the stream closes."""
        ...

    async def end_streams(self, *, credential_id: str | None = None, session_id: str | None = None) -> None:
        """End at once every open stream of `credential_id` (signed out: a phone credential id, a
        clinician's sign-in session id) or of `session_id` (the session ended), on every process sharing
        the bus. Give exactly one (ValueError otherwise). Each stream sends nothing more from the bus
        except the event that explains its end, then a `stream.end` frame, and closes. Call it after the
        revocation is committed: a stream re-checks its authorisation before every event, so one opened
        in between is refused by the database."""
        ...

    async def drop(self, session_id: str) -> None:
        """Forget a session's events (it ended) and end its streams."""
        ...

    async def check(self) -> None:
        """Readiness: raise when the bus is unreachable."""
        ...

    async def close(self) -> None: ...


def publish_after_commit(
    uow: UnitOfWork, bus: EventBus, session_id: str, type: str, data: dict[str, Any]
) -> None:
    """Publish once the current transaction commits (never for work that rolled back)."""
    if type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type!r}")

    async def _publish() -> None:
        await bus.publish(session_id, type, data)

    uow.after_commit(_publish)
