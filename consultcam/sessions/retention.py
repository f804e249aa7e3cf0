"""The sweeper: deletes what expired, so no photo or patient detail outlives its purpose.

Rules (issue 2, DESIGN.md step 7): open sessions idle past SESSION_IDLE_MINUTES or older than
RETENTION_HOURS expire (images and objects deleted); uploads never registered are deleted once their URL
has expired; ended sessions are deleted outright after a short grace (so the pages can show the outcome)
and always by RETENTION_HOURS; objects with no session are deleted; a commit whose lease lapsed (its
process died) is marked interrupted and the session reopens (issue 10, consultcam/commits/lease.py);
AI descriptions that never finished (a job lost with a killed process) are marked failed (issue 6);
clinician sign-ins that ended or expired are deleted (issue 10, `consultcam.signin.sweep`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import delete, select

from consultcam import audit, signin
from consultcam.analysis.service import fail_stuck_analyses
from consultcam.commits import lease
from consultcam.images.service import UPLOAD_GRACE
from consultcam.models import CaptureSession, ClinicalImage, utcnow
from consultcam.runtime import Runtime
from consultcam.sessions import service as sessions
from consultcam.storage.store import session_prefix

log = logging.getLogger(__name__)

#: How long a committed, cancelled or expired session stays readable before its row is deleted.
ENDED_GRACE = timedelta(minutes=30)


@dataclass
class SweepReport:
    """What one sweep did (counts), for logs, metrics and tests."""

    expired_sessions: int = 0
    deleted_sessions: int = 0
    abandoned_uploads: int = 0
    reopened_commits: int = 0
    orphan_objects: int = 0
    stuck_analyses: int = 0
    expired_signins: int = 0
    errors: list[str] = field(default_factory=list)


async def sweep(rt: Runtime, now: datetime | None = None) -> SweepReport:
    """Run every rule once. Each session is handled in its own transaction, so one failure is logged and
    the rest still go."""
    now = now or utcnow()
    report = SweepReport()
    settings = rt.settings
    idle = timedelta(minutes=settings.session_idle_minutes)

    async with rt.unit_of_work(writes=False) as uow:
        rows = (
            await uow.session.execute(
                select(
                    CaptureSession.id,
                    CaptureSession.status,
                    CaptureSession.last_activity_at,
                    CaptureSession.retain_until,
                    CaptureSession.commit_lease_until,
                )
            )
        ).all()
        abandoned = (
            (
                await uow.session.execute(
                    select(ClinicalImage.id).where(
                        ClinicalImage.status == "pending",
                        ClinicalImage.upload_expires_at < now - UPLOAD_GRACE,
                    )
                )
            )
            .scalars()
            .all()
        )

    for session_id, status, last_activity, retain_until, lease_until in rows:
        try:
            if status == "open" and (last_activity + idle <= now or retain_until <= now):
                await _expire(rt, session_id, "retention" if retain_until <= now else "idle")
                report.expired_sessions += 1
            elif status == "committing" and lease.lease_end(lease_until, last_activity, settings) <= now:
                report.reopened_commits += await _interrupted(rt, session_id, now)
            elif retain_until <= now or (status != "open" and last_activity + ENDED_GRACE <= now):
                await _delete_session(rt, session_id)
                report.deleted_sessions += 1
        except Exception as exc:
            log.exception("sweeper: session %s", session_id)
            report.errors.append(f"{session_id}: {type(exc).__name__}")

    for image_id in abandoned:
        async with rt.unit_of_work() as uow:
            image = await uow.session.get(ClinicalImage, image_id)
            if image is not None and image.status == "pending":
                await rt.store.delete(image.upload_key)
                await uow.session.delete(image)
                audit.record(
                    uow.session, None, "upload.abandoned", session_id=image.session_id, image_id=image_id
                )
                report.abandoned_uploads += 1

    report.orphan_objects = await _delete_orphans(rt, now)
    try:
        report.stuck_analyses = await fail_stuck_analyses(rt.unit_of_work, rt, now)
    except Exception as exc:
        log.exception("sweeper: stuck AI descriptions")
        report.errors.append(f"analyses: {type(exc).__name__}")
    try:
        report.expired_signins = await signin.sweep(rt, now)
    except Exception as exc:
        log.exception("sweeper: sign-ins")
        report.errors.append(f"sign-ins: {type(exc).__name__}")
    if any(
        (
            report.expired_sessions,
            report.deleted_sessions,
            report.abandoned_uploads,
            report.reopened_commits,
            report.orphan_objects,
            report.stuck_analyses,
            report.expired_signins,
        )
    ):
        log.info("sweeper: %s", report)
    return report


async def _expire(rt: Runtime, session_id: str, reason: str) -> None:
    async with rt.unit_of_work() as uow:
        session = await sessions.lock_session(uow, session_id)
        if session.status == "open":
            await sessions.end_session(uow, rt, None, session, "expired", reason)


async def _interrupted(rt: Runtime, session_id: str, now: datetime) -> int:
    """Mark the session's commit attempt interrupted if, locked, its lease has still lapsed (a heartbeat
    may have renewed it since the list was read); 1 when it was."""
    async with rt.unit_of_work() as uow:
        session = await sessions.lock_session(uow, session_id)
        if not lease.lapsed(session, rt.settings, now):
            return 0
        lease.mark_interrupted(uow, rt, session, detected_by="sweeper", now=now)
        return 1


async def _delete_session(rt: Runtime, session_id: str) -> None:
    async with rt.unit_of_work() as uow:
        await uow.session.execute(delete(CaptureSession).where(CaptureSession.id == session_id))
    await rt.store.delete_prefix(session_prefix(session_id))
    await rt.bus.drop(session_id)


async def _delete_orphans(rt: Runtime, now: datetime) -> int:
    """Delete objects nothing refers to: everything under `sessions/<id>/` whose session is gone (a crash
    between a store write and a database commit), uploads `sessions/<id>/uploads/<imageId>` whose slot is no
    longer pending (a presigned PUT stays usable until it expires, even after registration or deletion: on
    S3 it cannot be revoked, so a PUT after registration lands here), and photos a registration wrote but did
    not record (it lost to a concurrent one, or crashed). Objects younger than the upload grace are left
    alone: they may be in flight."""
    objects = [obj for obj in await rt.store.list("sessions/") if obj.modified_at < now - UPLOAD_GRACE]
    if not objects:
        return 0
    session_ids = {obj.key.split("/")[1] for obj in objects}
    async with rt.unit_of_work(writes=False) as uow:
        known = set(
            (await uow.session.execute(select(CaptureSession.id).where(CaptureSession.id.in_(session_ids))))
            .scalars()
            .all()
        )
        rows = (
            await uow.session.execute(
                select(
                    ClinicalImage.status,
                    ClinicalImage.upload_key,
                    ClinicalImage.object_key,
                    ClinicalImage.thumbnail_key,
                ).where(ClinicalImage.session_id.in_(known))
            )
        ).all()
    referenced = {upload for status, upload, _, _ in rows if status == "pending"}
    referenced |= {key for _, _, *keys in rows for key in keys if key}
    stale = [obj.key for obj in objects if obj.key.split("/")[1] not in known or obj.key not in referenced]
    if stale:
        await rt.store.delete(*stale)
    return len(stale)
