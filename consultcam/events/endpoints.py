"""Server-Sent Events for one capture session (DESIGN.md, "Event types").

The stream replays what a reconnecting page missed (`Last-Event-ID`), sends a comment heartbeat so
proxies keep it open, stops when the client goes, and ends after `MAX_STREAM_SECONDS` with a `retry`
hint so the browser reconnects (and re-authenticates) by itself.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from consultcam import metrics
from consultcam.deps import ReadPrincipalDep, ReadUoWDep, RuntimeDep, authorise_session
from consultcam.events.bus import Event
from consultcam.sessions.service import get_session

router = APIRouter(prefix="/api/sessions/{session_id}", tags=["events"])

MAX_STREAM_SECONDS = 15 * 60
READ_TIMEOUT_SECONDS = 10.0
RETRY_MS = 1500
PING_SECONDS = 15


@router.get("/events", response_class=EventSourceResponse)
async def events(
    session_id: str, request: Request, rt: RuntimeDep, uow: ReadUoWDep, principal: ReadPrincipalDep
) -> EventSourceResponse:
    """The session's events as `text/event-stream`; `Last-Event-ID` (header or query) replays missed ones."""
    authorise_session(principal, session_id)
    await get_session(uow, session_id)
    last_id = request.headers.get("last-event-id") or request.query_params.get("lastEventId")
    bus = rt.bus

    async def stream() -> AsyncIterator[ServerSentEvent]:
        nonlocal last_id
        metrics.STREAMS_OPEN.inc()
        try:
            yield ServerSentEvent(comment="connected", retry=RETRY_MS)
            for event in await bus.read(session_id, last_id, timeout=0):  # what was missed, at once
                last_id = event.id
                yield _frame(event)
            deadline = time.monotonic() + MAX_STREAM_SECONDS
            while time.monotonic() < deadline and not await request.is_disconnected():
                for event in await bus.read(session_id, last_id, timeout=READ_TIMEOUT_SECONDS):
                    last_id = event.id
                    delay = (datetime.now(UTC) - event.at).total_seconds()
                    metrics.EVENT_DELIVERY_SECONDS.labels(event.type).observe(delay)
                    yield _frame(event)
        finally:
            metrics.STREAMS_OPEN.dec()

    # The heartbeat is a real `ping` event, not a comment: a page's EventSource cannot see comments, and
    # the page uses the heartbeat to notice a connection that died silently (Wi-Fi lost) and reconnect.
    return EventSourceResponse(
        stream(),
        ping=PING_SECONDS,
        ping_message_factory=lambda: ServerSentEvent(event="ping", data="{}"),
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def _frame(event: Event) -> ServerSentEvent:
    """An event as SSE: `id:` the bus id (what Last-Event-ID sends back), `event:` its type, `data:` JSON."""
    return ServerSentEvent(id=event.id, event=event.type, data=json.dumps(event.as_json()))
