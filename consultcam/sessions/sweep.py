"""The sessions domain's sweep step: capture sessions end and disappear on time (run by
`consultcam.retention.sweeper`).

Rules (issue 2, DESIGN.md step 7): an open session idle past SESSION_IDLE_MINUTES or older than
RETENTION_HOURS expires (images and objects deleted, phones signed out); an ended session (committed,
cancelled, expired) is deleted outright after ENDED_GRACE (so the pages can show the outcome), and any
session by RETENTION_HOURS. A committing session whose lease lapsed is the commits domain's
(`consultcam.commits.lease.reopen_lapsed_commits`), not deleted here.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from consultcam.commits import lease
from consultcam.db import Transactions
from consultcam.kit.status import SessionStatus
from consultcam.runtime import Runtime
from consultcam.sessions import repository
from consultcam.sessions import service as sessions
from consultcam.storage.keys import session_prefix

log = logging.getLogger(__name__)

#: How long a committed, cancelled or expired session stays readable before its row is deleted.
ENDED_GRACE = timedelta(minutes=30)


async def sweep_sessions(tx: Transactions, rt: Runtime, now: datetime, errors: list[str]) -> tuple[int, int]:
    """Expire the open sessions past their idle time or retention, delete the ended ones past ENDED_GRACE
    and every session past RETENTION_HOURS; returns (expired, deleted). Each session is handled in its own
    transaction of `tx`: one that fails is logged, named in `errors` ("<session id>: <exception type>"),
    and the rest still go."""
    idle = timedelta(minutes=rt.settings.session_idle_minutes)
    async with tx(writes=False) as uow:
        rows = await repository.session_states(uow.session)
    expired = deleted = 0
    for session_id, status, last_activity, retain_until, lease_until in rows:
        try:
            if status == SessionStatus.OPEN and (last_activity + idle <= now or retain_until <= now):
                await _expire(tx, rt, session_id, "retention" if retain_until <= now else "idle")
                expired += 1
            elif (
                status == SessionStatus.COMMITTING
                and lease.lease_end(lease_until, last_activity, rt.settings) <= now
            ):
                continue  # an interrupted commit: reopened by the commits step, not deleted
            elif retain_until <= now or (status != SessionStatus.OPEN and last_activity + ENDED_GRACE <= now):
                await _delete(tx, rt, session_id)
                deleted += 1
        except Exception as exc:
            log.exception("sweeper: session %s", session_id)
            errors.append(f"{session_id}: {type(exc).__name__}")
    return expired, deleted


async def _expire(tx: Transactions, rt: Runtime, session_id: str, reason: str) -> None:
    """Expire the session if, locked, it is still open."""
    async with tx() as uow:
        session = await sessions.lock_session(uow, session_id)
        if session.status == SessionStatus.OPEN:
            await sessions.end_session(uow, rt, None, session, SessionStatus.EXPIRED, reason)


async def _delete(tx: Transactions, rt: Runtime, session_id: str) -> None:
    """Delete the session's row (tokens, phones and images cascade), then its objects and its events."""
    async with tx() as uow:
        await repository.delete_session(uow.session, session_id)
    await rt.store.delete_prefix(session_prefix(session_id))
    await rt.bus.drop(session_id)
