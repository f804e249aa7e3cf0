"""The commit lease: a running commit holds its capture session only while its process says it is alive.

A commit claims the session (open → committing) with a lease of `CONSULTCAM_COMMIT_LEASE_SECONDS` and the
name of its process; a heartbeat renews the lease every third of that while the connector works, however
long it takes. When the process dies (kill -9, a power cut) the renewals stop, the lease lapses and the
attempt is *interrupted*: whoever looks next (the next commit, a read of the session, the sweeper) puts the
session back to open, records `commit.interrupted` in the audit trail and tells the pages, so the GP can
commit again at once. A commit whose lease is still being renewed is never taken over.

Fencing: an attempt is known by (commit id, attempt number). It records its outcome only while the session
still names it as the running attempt (`is_current`), so an attempt that lost its lease (a stalled
process that woke up) never overwrites what a newer attempt did.

The commit id itself stays the same through every retry until the session is committed, with the time it
was first started, so connectors write the same thing again and recognise their earlier writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from datetime import datetime, timedelta
from types import TracebackType

from consultcam import audit
from consultcam.commits import repository
from consultcam.config import Settings
from consultcam.db import Transactions, UnitOfWork
from consultcam.events.bus import publish_after_commit
from consultcam.kit.status import CommitStatus, SessionStatus
from consultcam.models import CaptureSession, utcnow
from consultcam.runtime import Runtime
from consultcam.sessions.service import lock_session

log = logging.getLogger(__name__)

#: What the session's `commitError` (and the pages) say after an interrupted commit. The connectors make a
#: retry safe (conditional creates, stable UIDs, one export file per commit), which is why "again" is right.
INTERRUPTED = (
    "The last commit was interrupted (consultcam stopped while it was saving), so it is not known whether "
    "every photo reached the record. Commit again: photos already saved there are recognised and not "
    "saved twice."
)


def holder_name() -> str:
    """This process, as the lease names it: "<host>:<pid>" (no secret; shown in the audit trail)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def lease_length(settings: Settings) -> timedelta:
    """`CONSULTCAM_COMMIT_LEASE_SECONDS` as a timedelta."""
    return timedelta(seconds=settings.commit_lease_seconds)


def lease_end(
    commit_lease_until: datetime | None, last_activity_at: datetime, settings: Settings
) -> datetime:
    """When a running attempt's lease ends, from the session's columns. A session caught committing by the
    upgrade to migration 0003_commits has no lease: it ends one lease length after its last activity."""
    return commit_lease_until or last_activity_at + lease_length(settings)


def lease_until(session: CaptureSession, settings: Settings) -> datetime:
    """When the running attempt's lease on `session` ends (see lease_end)."""
    return lease_end(session.commit_lease_until, session.last_activity_at, settings)


def lapsed(session: CaptureSession, settings: Settings, now: datetime | None = None) -> bool:
    """True when the session is committing but nobody has renewed the lease in time: the attempt was
    interrupted (its process died or lost the database for longer than a lease)."""
    return session.status == SessionStatus.COMMITTING and lease_until(session, settings) <= (now or utcnow())


def is_current(session: CaptureSession, commit_id: str, attempt: int) -> bool:
    """Whether the locked `session` still names (commit_id, attempt) as its running commit attempt."""
    return (
        session.status == SessionStatus.COMMITTING
        and session.commit_id == commit_id
        and session.commit_attempt == attempt
    )


def running_words(session: CaptureSession, settings: Settings, now: datetime | None = None) -> str:
    """The 409 detail while an attempt holds the session: when it started and when it was last heard from,
    so the GP knows it is really running (and that it is not stuck)."""
    now = now or utcnow()
    started = session.commit_attempt_at or session.last_activity_at
    heard = lease_until(session, settings) - lease_length(settings)
    return (
        f"A commit of this session is already running: it started {_ago(now - started)} and was last heard "
        f"from {_ago(now - heard)}. Saving can take a while when the record system is slow; wait for it to "
        "finish, and the page will show the result."
    )


def _ago(delta: timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 2:
        return "just now"
    if seconds < 120:
        return f"{seconds} seconds ago"
    return f"{seconds // 60} minutes ago"


def mark_interrupted(
    uow: UnitOfWork, rt: Runtime, session: CaptureSession, *, detected_by: str, now: datetime | None = None
) -> None:
    """Record that the running attempt of the locked `session` was interrupted: back to open, with
    `commit_outcome` "interrupted" and INTERRUPTED as `commit_error`; the audit trail gets
    `commit.interrupted` (actor: the system part that found it, `detected_by` "next-commit" |
    "session-read" | "sweeper"); the pages get `commit.failed` with `interrupted: true`. Call it only
    when `lapsed`."""
    now = now or utcnow()
    audit.record(
        uow.session,
        None,
        "commit.interrupted",
        session_id=session.id,
        system=detected_by,
        commit_id=session.commit_id,
        attempt=session.commit_attempt,
        holder=session.commit_holder,
        started_at=(session.commit_attempt_at or session.last_activity_at).isoformat(),
        lease_until=lease_until(session, rt.settings).isoformat(),
    )
    log.warning(
        "commit %s attempt %s of session %s was interrupted (holder %s stopped renewing its lease)",
        session.commit_id,
        session.commit_attempt,
        session.id,
        session.commit_holder,
    )
    session.status, session.commit_outcome = SessionStatus.OPEN, CommitStatus.INTERRUPTED
    session.commit_ended_at = now
    session.commit_error, session.commit_lease_until = INTERRUPTED, None
    session.last_activity_at, session.version = now, session.version + 1
    publish_after_commit(
        uow,
        rt.bus,
        session.id,
        "commit.failed",
        {"commitId": session.commit_id, "interrupted": True, "detail": INTERRUPTED, "results": []},
    )


async def settle(
    uow: UnitOfWork, rt: Runtime, session: CaptureSession, *, detected_by: str = "session-read"
) -> None:
    """If `session` (just read in `uow`, a writing unit of work) is committing with a lapsed lease, lock
    it, look again and mark the attempt interrupted, so what is shown is the truth. Otherwise nothing."""
    if not lapsed(session, rt.settings):
        return
    locked = await lock_session(uow, session.id)
    if lapsed(locked, rt.settings):
        mark_interrupted(uow, rt, locked, detected_by=detected_by)
        await uow.session.flush()


async def reopen_lapsed_commits(tx: Transactions, rt: Runtime, now: datetime, errors: list[str]) -> int:
    """The commits domain's sweep step (`consultcam.retention.sweeper`): mark interrupted every commit
    attempt whose lease had lapsed at `now` (its process died), so the session reopens (issue 10); returns
    how many. Each session in its own transaction of `tx`, re-checked under its lock (a heartbeat may have
    renewed the lease since the list was read); one that fails is logged and named in `errors`
    ("<session id>: <exception type>")."""
    async with tx(writes=False) as uow:
        rows = await repository.committing_sessions(uow.session)
    reopened = 0
    for session_id, last_activity, until in rows:
        if lease_end(until, last_activity, rt.settings) > now:
            continue
        try:
            async with tx() as uow:
                session = await lock_session(uow, session_id)
                if lapsed(session, rt.settings, now):
                    mark_interrupted(uow, rt, session, detected_by="sweeper", now=now)
                    reopened += 1
        except Exception as exc:
            log.exception("sweeper: session %s", session_id)
            errors.append(f"{session_id}: {type(exc).__name__}")
    return reopened


class Heartbeat:
    """`async with Heartbeat(tx, settings, session_id, commit_id, attempt) as beat:` renews the attempt's
    lease every third of `CONSULTCAM_COMMIT_LEASE_SECONDS` until the block ends, each time in its own short
    transaction of `tx`. `beat.lost` turns True when the session no longer names this attempt (the lease
    lapsed and someone else took over): the work may go on (the connectors are idempotent), but the attempt
    must not record its outcome. A renewal that fails (database unreachable) is logged and tried again."""

    def __init__(
        self, tx: Transactions, settings: Settings, session_id: str, commit_id: str, attempt: int
    ) -> None:
        self._tx, self._settings = tx, settings
        self._session_id, self._commit_id, self._attempt = session_id, commit_id, attempt
        self._task: asyncio.Task[None] | None = None
        self.lost = False

    async def __aenter__(self) -> Heartbeat:
        self._task = asyncio.create_task(self._run(), name=f"commit-heartbeat-{self._commit_id}")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        interval = self._settings.commit_lease_seconds / 3
        while not self.lost:
            await asyncio.sleep(interval)
            try:
                await self.renew()
            except Exception as exc:  # the next beat tries again; the lease covers two missed beats
                log.warning("commit %s: lease not renewed (%s)", self._commit_id, type(exc).__name__)

    async def renew(self) -> None:
        """Push the lease one length ahead, if this attempt still holds the session."""
        async with self._tx() as uow:
            renewed = await repository.renew_lease(
                uow.session,
                self._session_id,
                self._commit_id,
                self._attempt,
                utcnow() + lease_length(self._settings),
            )
        if not renewed:
            self.lost = True
            log.warning("commit %s attempt %s lost its lease", self._commit_id, self._attempt)
