"""Server-Sent Events for one capture session (DESIGN.md, "Event types").

The stream replays what a reconnecting page missed (`Last-Event-ID`), sends a `ping` event as a heartbeat
so proxies keep it open and pages notice a dead connection, and ends after `MAX_STREAM_SECONDS` with a
`retry` hint so the browser reconnects (and re-authenticates) by itself.

Nobody keeps a stream they may no longer read (issue 10):

- Opening: the caller must be the clinician or the session's phone, the session must not have ended
  (410 `SessionEnded`), and the caps must allow one more stream (429 `TooManyStreams`,
  `consultcam.events.streams`).
- Before every batch of events is sent, the caller's authorisation is checked again against the database
  (the same authentication as at opening, with the request's own credential) and the session must still be
  running. A credential revoked or a session ended by any route stops the stream before it sends anything
  written afterwards. The streams of one credential on one session in this process (a desktop open twice,
  several desktops signed in with the embedded token) share that check (`SharedChecks`): one that started
  after the batch's events were published answers for all of them.
- The stream holds a lease from the bus, so `EventBus.end_streams` (and the events that imply it:
  `phone.revoked`, `session.committed`, `session.expired`) ends it at once on whichever process it is open.

An ended stream sends the event that explains its end when it has it (e.g. `phone.revoked`), then a final
`stream.end` frame `{"reason": "credential-revoked" | "session-ended", "detail": …}` with no id, and closes;
a page that reconnects anyway is refused (401, 404 or 410), which `web/static/js/events.js` treats as final.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import anyio
from fastapi import APIRouter, BackgroundTasks, Request
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.types import Receive, Scope, Send

from consultcam import metrics
from consultcam.auth.principals import Phone, Principal
from consultcam.deps import (
    ReadSessionPrincipalDep,
    ReadUoWDep,
    RuntimeDep,
    authorise_session,
    get_read_principal,
)
from consultcam.errors import ConsultcamError, Gone, ResourceNotFound
from consultcam.events.bus import Event
from consultcam.events.streams import ENDED, REVOKED, StreamEnding, StreamLease, StreamLimits, ends_stream
from consultcam.runtime import Runtime
from consultcam.sessions.service import get_session

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/sessions/{session_id}", tags=["events"])

MAX_STREAM_SECONDS = 15 * 60
READ_TIMEOUT_SECONDS = 10.0
RETRY_MS = 1500
PING_SECONDS = 15
#: Session states after which nothing more happens, so no stream stays open.
ENDED_STATUSES = frozenset({"committed", "cancelled", "expired"})


class SharedChecks:
    """The re-checks in flight in this process, one per (session, credential): a stream whose batch's
    newest event was published before a running check started waits for that check instead of starting
    its own, since the check reads the credential and the session after the events were written, as its
    own would. Each check runs as a task of its own, so a client that leaves does not cancel a database
    call half-way. Publication times come from the publishing process's clock: processes on several hosts
    need their clocks synchronised (NTP) to within the time a check takes."""

    def __init__(self) -> None:
        self._running: dict[tuple[str, str], tuple[float, asyncio.Task[StreamEnding | None]]] = {}

    async def ending(
        self, key: tuple[str, str], since: float, check: Callable[[], Awaitable[StreamEnding | None]]
    ) -> StreamEnding | None:
        """The result of a check for `key` (session id, credential fingerprint) that started at or after
        `since` (a POSIX time): the one running, else a new one from `check()`. Raises what `check` raises."""
        running = self._running.get(key)
        if running is None or running[0] < since:
            started = time.time()  # before the task starts: the check begins no earlier than this
            task = asyncio.ensure_future(check())
            running = (started, task)
            self._running[key] = running
            task.add_done_callback(lambda _: self._forget(key, running))
        return await asyncio.shield(running[1])

    def _forget(self, key: tuple[str, str], done: tuple[float, asyncio.Task[StreamEnding | None]]) -> None:
        if self._running.get(key) is done:
            del self._running[key]
        if not done[1].cancelled():
            done[1].exception()  # retrieved: each waiter has it raised; none left is no error to log


#: This process's shared re-checks (`SharedChecks`).
CHECKS = SharedChecks()


def credential_fingerprint(request: Request) -> str:
    """SHA-256 of the credential a request carries (its Authorization and Cookie headers): streams share a
    re-check only when they present the very same credential."""
    presented = f"{request.headers.get('authorization', '')}\0{request.headers.get('cookie', '')}"
    return hashlib.sha256(presented.encode()).hexdigest()


def stream_credential_id(principal: Principal) -> str | None:
    """The credential id a stream is registered under, for the caps and `EventBus.end_streams`: a phone's
    credential id, or a clinician's server-side sign-in id (`Clinician.credential_id`; None for the
    embedded token and bearer JWTs, which sign-out cannot revoke: their streams end with their session)."""
    return principal.id if isinstance(principal, Phone) else principal.credential_id


@router.get("/events", response_class=EventSourceResponse)
async def events(
    session_id: str, request: Request, rt: RuntimeDep, uow: ReadUoWDep, principal: ReadSessionPrincipalDep
) -> EventSourceResponse:
    """The session's events as `text/event-stream`; `Last-Event-ID` (header or query) replays missed ones.
    410 once the session has ended; 429 when too many streams are open for the session or the caller."""
    session = await get_session(uow, session_id)
    if session.status in ENDED_STATUSES:
        raise Gone(
            f"This capture session has ended ({session.status}); it sends no more updates. Reload the "
            "page to see how it ended.",
            error="SessionEnded",
        )
    last_id = request.headers.get("last-event-id") or request.query_params.get("lastEventId")
    limits = StreamLimits(rt.settings.streams_per_session, rt.settings.streams_per_credential)
    lease = await rt.bus.open_stream(session_id, stream_credential_id(principal), limits)
    # The heartbeat is a real `ping` event, not a comment: a page's EventSource cannot see comments, and
    # the page uses the heartbeat to notice a connection that died silently (Wi-Fi lost) and reconnect.
    return _LeasedEventSourceResponse(
        lease,
        _stream(request, rt, lease, last_id),
        ping=PING_SECONDS,
        ping_message_factory=lambda: ServerSentEvent(event="ping", data="{}"),
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _stream(
    request: Request, rt: Runtime, lease: StreamLease, last_id: str | None
) -> AsyncIterator[ServerSentEvent]:
    """The frames of one stream: what was missed, then each batch as it comes, every batch authorised."""
    session_id, bus = lease.session_id, rt.bus
    metrics.STREAMS_OPEN.inc()
    try:
        yield ServerSentEvent(comment="connected", retry=RETRY_MS)
        deadline = time.monotonic() + MAX_STREAM_SECONDS
        timeout = 0.0  # first what was missed, at once
        check = True  # and check once even when nothing was missed: a revocation may have raced the opening
        key = (session_id, credential_fingerprint(request))
        while time.monotonic() < deadline:
            batch = await bus.read(session_id, last_id, timeout=timeout, lease=lease)
            timeout = READ_TIMEOUT_SECONDS
            if batch or check or lease.ending or lease.recheck:
                # A check must have started after the newest event of the batch was published; after now
                # for the first check and after a nudge from the bus (something changed: a check already
                # running may have read the credential before it did).
                fresh = check or lease.recheck or not batch
                since = time.time() if fresh else max(event.at.timestamp() for event in batch)
                check, lease.recheck = False, False
                try:
                    ending = lease.ending or await CHECKS.ending(
                        key, since, lambda: _ending(request, rt, session_id)
                    )
                except Exception as exc:
                    # Undecidable now (database or identity provider down): send nothing and close; the
                    # browser reconnects with back-off and is authorised afresh.
                    log.warning("event stream: re-check failed (%s); closing it", type(exc).__name__)
                    return
                if ending is not None:
                    for event in _until_end(batch, lease):
                        yield _frame(event)
                    yield ServerSentEvent(event="stream.end", data=json.dumps(ending.as_json()))
                    return
            for event in batch:
                last_id = event.id
                delay = (datetime.now(UTC) - event.at).total_seconds()
                metrics.EVENT_DELIVERY_SECONDS.labels(event.type).observe(delay)
                yield _frame(event)
                if ends_stream(event.type, event.session_id, event.data, lease):
                    yield ServerSentEvent(event="stream.end", data=json.dumps(_ending_of(event).as_json()))
                    return
    finally:
        metrics.STREAMS_OPEN.dec()


async def _ending(request: Request, rt: Runtime, session_id: str) -> StreamEnding | None:
    """None while the request's credential still opens this session's stream, else why not. Re-reads the
    session (an ended or deleted one says so first, even though its phones were signed out with it), then
    authenticates and authorises the request again as `deps` does (a revoked phone credential or a
    signed-out clinician fails; so does a bound sign-in outside the session's provider and facility, by
    the same `deps.authorise_session`). Raises (ConsultcamError 5xx, database errors) when that cannot be
    decided now."""
    async with rt.unit_of_work(writes=False) as uow:
        try:
            session = await get_session(uow, session_id)
        except ResourceNotFound:
            return ENDED
        if session.status in ENDED_STATUSES:
            return ENDED
        try:
            # A fresh BackgroundTasks that is never run: a re-check is not a use of the sign-in.
            principal = await get_read_principal(request, rt, uow, BackgroundTasks())
            await authorise_session(uow, principal, session_id)  # a launch's sign-in: its sessions only
        except ConsultcamError as exc:
            if exc.status >= 500:
                raise
            return REVOKED
    return None


def _until_end(batch: list[Event], lease: StreamLease) -> list[Event]:
    """The events of `batch` up to and including the one that ended `lease` (e.g. `phone.revoked` for its
    phone), or none when the end came from elsewhere: nothing written after an end is sent."""
    for index, event in enumerate(batch):
        if ends_stream(event.type, event.session_id, event.data, lease):
            return batch[: index + 1]
    return []


def _ending_of(event: Event) -> StreamEnding:
    return REVOKED if event.type == "phone.revoked" else ENDED


def _frame(event: Event) -> ServerSentEvent:
    """An event as SSE: `id:` the bus id (what Last-Event-ID sends back), `event:` its type, `data:` JSON."""
    return ServerSentEvent(id=event.id, event=event.type, data=json.dumps(event.as_json()))


class _LeasedEventSourceResponse(EventSourceResponse):
    """An `EventSourceResponse` that releases its stream's lease however the response ends: normally, the
    client gone, a HEAD request, or cancelled before its generator ever ran (whose `finally` then never
    runs)."""

    def __init__(self, lease: StreamLease, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lease = lease

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self._lease.release()
