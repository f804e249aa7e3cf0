"""Open event streams as the bus sees them: one lease per stream, the caps, and how streams are ended.

Every `GET /api/sessions/{id}/events` holds a `StreamLease` from the bus for as long as it is open. The lease
is registered under its capture session and, when the caller has one, its credential id: a phone's
credential id today; a clinician's server-side sign-in session id once clinicians sign in that way (the
sign-out calls `EventBus.end_streams(credential_id=…)`). Two things follow from the registration:

- Caps: a session may have at most `CONSULTCAM_STREAMS_PER_SESSION` open streams and a credential
  `CONSULTCAM_STREAMS_PER_CREDENTIAL`, counted on every web process (Redis) or in the one process
  (embedded); one more is refused with 429 `TooManyStreams`.
- Ending: `end_streams` ends every open stream of a credential or a session at once, on every web process.
  Publishing an event that withdraws access does it by itself (`ends_streams`): `phone.revoked` ends that
  phone credential's streams; `session.committed` and `session.expired` (cancelled or expired) end every
  stream of the session. The stream then sends the events up to and including the one that explains the
  end, a final `stream.end` frame, and closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from consultcam.errors import ConsultcamError

#: Reasons a stream is ended, as sent in the final `stream.end` frame.
CREDENTIAL_REVOKED = "credential-revoked"
SESSION_ENDED = "session-ended"


@dataclass(frozen=True)
class StreamEnding:
    """Why a stream was ended: `reason` (CREDENTIAL_REVOKED or SESSION_ENDED) and a sentence for people."""

    reason: str
    detail: str

    def as_json(self) -> dict[str, str]:
        return {"reason": self.reason, "detail": self.detail}


REVOKED = StreamEnding(
    CREDENTIAL_REVOKED,
    "This device was signed out of the session (or its sign-in was replaced), so live updates stopped. "
    "Scan a new QR code from the desktop, or sign in again.",
)
ENDED = StreamEnding(
    SESSION_ENDED,
    "This capture session has ended (committed, cancelled or expired), so live updates stopped. Reload "
    "the page to see how it ended.",
)


@dataclass(frozen=True)
class StreamLimits:
    """The caps on open streams: per capture session and per credential (`CONSULTCAM_STREAMS_PER_SESSION`,
    `CONSULTCAM_STREAMS_PER_CREDENTIAL`)."""

    per_session: int
    per_credential: int


class TooManyStreams(ConsultcamError):
    """429: a cap on open streams is reached (RFC 6585 §4); the client may try again after a while."""

    status, error = 429, "TooManyStreams"
    headers = {"Retry-After": "15"}  # noqa: RUF012 (read-only, as in the base class)

    @classmethod
    def for_session(cls, limit: int) -> TooManyStreams:
        return cls(
            f"This capture session already has {limit} live-update connections open, the most allowed. "
            "Close other tabs or windows showing it, then reload (a closed one frees its place at once)."
        )

    @classmethod
    def for_credential(cls, limit: int) -> TooManyStreams:
        return cls(
            f"This device already has {limit} live-update connections open, the most allowed. Close "
            "other tabs or windows showing consultcam, then reload (a closed one frees its place at once)."
        )


@dataclass(eq=False)
class StreamLease:
    """One open stream's registration with the bus. `ending` is set (once) when the stream must end;
    `wake` is the reader's wake-up (new events, or the end); `recheck` asks the stream to re-check its
    authorisation (the bus may have missed an end signal while its connection to Redis was down).

    `release()` frees the stream's place under the caps; it is idempotent and never raises.
    """

    session_id: str
    credential_id: str | None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    ending: StreamEnding | None = None
    recheck: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    _on_release: Callable[[StreamLease], Awaitable[None]] | None = None

    def end(self, ending: StreamEnding) -> None:
        """End the stream: the first reason given wins."""
        if self.ending is None:
            self.ending = ending
        self.wake.set()

    def nudge(self) -> None:
        """Make the stream re-check its authorisation before it sends anything more."""
        self.recheck = True
        self.wake.set()

    async def release(self) -> None:
        on_release, self._on_release = self._on_release, None
        if on_release is not None:
            await on_release(self)


def ends_streams(type: str, session_id: str, data: dict[str, Any]) -> dict[str, str] | None:
    """The `end_streams` arguments an event implies, or None: `phone.revoked` `{phoneId}` ends that
    credential's streams; `session.committed` and `session.expired` end the session's."""
    if type == "phone.revoked" and isinstance(data.get("phoneId"), str):
        return {"credential_id": data["phoneId"]}
    if type in ("session.committed", "session.expired"):
        return {"session_id": session_id}
    return None


def ends_stream(type: str, session_id: str, data: dict[str, Any], lease: StreamLease) -> bool:
    """True when this event ends `lease`'s stream (the event that explains why it ended)."""
    ends = ends_streams(type, session_id, data)
    if ends is None:
        return False
    if "session_id" in ends:
        return ends["session_id"] == lease.session_id
    return ends["credential_id"] == lease.credential_id


def ending_for(*, credential_id: str | None, session_id: str | None) -> StreamEnding:
    """The ending `end_streams` gives: exactly one of the two ids must be given (ValueError)."""
    if (credential_id is None) == (session_id is None):
        raise ValueError("end_streams needs exactly one of credential_id or session_id")
    return REVOKED if credential_id is not None else ENDED


class LocalStreams:
    """The leases of the streams open in this process, by session and by credential."""

    def __init__(self) -> None:
        self._by_session: dict[str, set[StreamLease]] = defaultdict(set)
        self._by_credential: dict[str, set[StreamLease]] = defaultdict(set)

    def all(self) -> list[StreamLease]:
        return [lease for leases in self._by_session.values() for lease in leases]

    def count(self, session_id: str, credential_id: str | None) -> tuple[int, int]:
        """(open streams of the session, open streams of the credential; 0 without one)."""
        by_credential = len(self._by_credential.get(credential_id, ())) if credential_id else 0
        return len(self._by_session.get(session_id, ())), by_credential

    def add(self, lease: StreamLease) -> None:
        self._by_session[lease.session_id].add(lease)
        if lease.credential_id:
            self._by_credential[lease.credential_id].add(lease)

    def discard(self, lease: StreamLease) -> None:
        for index, key in ((self._by_session, lease.session_id), (self._by_credential, lease.credential_id)):
            if key and key in index:
                index[key].discard(lease)
                if not index[key]:
                    del index[key]

    def end(self, *, credential_id: str | None = None, session_id: str | None = None) -> int:
        """End the local streams of `credential_id` or `session_id`; returns how many."""
        ending = ending_for(credential_id=credential_id, session_id=session_id)
        if credential_id is not None:
            leases = list(self._by_credential.get(credential_id, ()))
        else:
            leases = list(self._by_session.get(session_id or "", ()))
        for lease in leases:
            lease.end(ending)
        return len(leases)


async def wait_for_wake(waiter: asyncio.Event, timeout: float) -> None:
    """Wait until `waiter` is set or `timeout` seconds pass. A plain timeout scope, no helper task and no
    lock: cancelling it at any moment (a client gone) leaves nothing behind."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await waiter.wait()
