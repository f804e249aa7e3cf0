"""The sweeper: deletes what expired, so no photo or patient detail outlives its purpose.

It runs each domain's sweep step once, in this order, and reports what they did (issue 2, DESIGN.md step 7):

1. sessions (`consultcam.sessions.sweep`): open sessions idle past SESSION_IDLE_MINUTES or older than
   RETENTION_HOURS expire (images and objects deleted); ended sessions are deleted after a short grace
   (so the pages can show the outcome) and always by RETENTION_HOURS;
2. commits (`consultcam.commits.lease`): a commit whose lease lapsed (its process died) is marked
   interrupted and the session reopens (issue 10);
3. uploads (`consultcam.images.service.sweep_unregistered_uploads`): uploads never registered are
   deleted once their URL has expired; then objects nothing refers to (`consultcam.retention.uploads`);
4. analysis (`consultcam.analysis.service`): AI descriptions that never finished (a job lost with a killed
   process) are marked failed (issue 6);
5. sign-in (`consultcam.auth.signin`): clinician sign-ins that ended or expired are deleted (issue 10);
6. launches (`consultcam.launch.medtech`): used Medtech launch contexts past their expiry are deleted
   (issue 12; by then the context is refused as expired anyway);
7. authorization requests (`consultcam.auth.authorization_requests`): pending OIDC sign-ins and SMART
   launches past their expiry, used or not, are deleted (issue 13).

A step that fails is logged and named in the report's `errors`; the steps after it still run. The
session steps handle each session in its own transaction, so one session's failure spares the others.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import astuple, dataclass, field
from datetime import datetime

from consultcam.analysis.service import fail_stuck_analyses
from consultcam.auth import authorization_requests, signin
from consultcam.commits.lease import reopen_lapsed_commits
from consultcam.db import Transactions
from consultcam.images.service import sweep_unregistered_uploads
from consultcam.launch import medtech
from consultcam.models import utcnow
from consultcam.retention.uploads import delete_orphan_objects
from consultcam.runtime import Runtime
from consultcam.sessions.sweep import sweep_sessions

log = logging.getLogger(__name__)


@dataclass
class SweepReport:
    """What one sweep did (counts), for logs, metrics and tests; `errors` names what failed."""

    expired_sessions: int = 0
    deleted_sessions: int = 0
    abandoned_uploads: int = 0
    reopened_commits: int = 0
    orphan_objects: int = 0
    stuck_analyses: int = 0
    expired_signins: int = 0
    expired_launch_contexts: int = 0
    expired_authorization_requests: int = 0
    errors: list[str] = field(default_factory=list)

    def did_something(self) -> bool:
        """Whether any count is non-zero."""
        return any(astuple(self)[:-1])


#: One sweep step: runs with the transactions, the runtime's ports and the sweep's time, and adds what it
#: did to the report.
Step = Callable[[Transactions, Runtime, datetime, SweepReport], Awaitable[None]]


async def _sessions(tx: Transactions, rt: Runtime, now: datetime, report: SweepReport) -> None:
    expired, deleted = await sweep_sessions(tx, rt, now, report.errors)
    report.expired_sessions += expired
    report.deleted_sessions += deleted


async def _commits(tx: Transactions, rt: Runtime, now: datetime, report: SweepReport) -> None:
    report.reopened_commits += await reopen_lapsed_commits(tx, rt, now, report.errors)


async def _uploads(tx: Transactions, rt: Runtime, now: datetime, report: SweepReport) -> None:
    report.abandoned_uploads += await sweep_unregistered_uploads(tx, rt.store, now)


async def _orphans(tx: Transactions, rt: Runtime, now: datetime, report: SweepReport) -> None:
    report.orphan_objects += await delete_orphan_objects(tx, rt.store, now)


async def _analyses(tx: Transactions, rt: Runtime, now: datetime, report: SweepReport) -> None:
    report.stuck_analyses += await fail_stuck_analyses(tx, rt, now)


async def _signins(tx: Transactions, rt: Runtime, now: datetime, report: SweepReport) -> None:
    report.expired_signins += await signin.sweep(tx, now)


async def _launches(tx: Transactions, rt: Runtime, now: datetime, report: SweepReport) -> None:
    report.expired_launch_contexts += await medtech.sweep(tx, now)


async def _authorization_requests(tx: Transactions, rt: Runtime, now: datetime, report: SweepReport) -> None:
    report.expired_authorization_requests += await authorization_requests.sweep(tx, now)


#: The steps in the order they run, each with the name its failure is reported under.
STEPS: tuple[tuple[str, Step], ...] = (
    ("sessions", _sessions),
    ("commits", _commits),
    ("uploads", _uploads),
    ("orphans", _orphans),
    ("analyses", _analyses),
    ("sign-ins", _signins),
    ("launches", _launches),
    ("authorization requests", _authorization_requests),
)


async def sweep(tx: Transactions, rt: Runtime, now: datetime | None = None) -> SweepReport:
    """Run every step once at `now` (default: the current time), each opening its own transactions from
    `tx`; `rt` gives the ports (settings, store, bus). Returns the report; never raises for a step's
    failure (logged, and named in `errors` as "<step>: <exception type>")."""
    now = now or utcnow()
    report = SweepReport()
    for name, step in STEPS:
        try:
            await step(tx, rt, now, report)
        except Exception as exc:
            log.exception("sweeper: %s", name)
            report.errors.append(f"{name}: {type(exc).__name__}")
    if report.did_something():
        log.info("sweeper: %s", report)
    return report
