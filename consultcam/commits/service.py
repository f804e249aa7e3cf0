"""The commit: a session's images into the record through one connector, all or nothing, never twice.

States: open → committing → committed, or back to open with the failure recorded. The claim
(`UPDATE … WHERE status = 'open'`) makes a second commit while one runs, or after success, a 409.
A commit spans three short transactions of the caller's `Transactions`, not one: the connector may take
a while and must not hold the database (on SQLite that would block every phone and desktop) — claim, call
the connector, then record.

Crashes (issue 10): the claim takes a lease that a heartbeat renews while the connector works
(`consultcam.commits.lease`); an attempt whose process died is found interrupted once its lease lapses
and the session can be committed again. Every attempt of a session's commit carries the same commit id
and commit time, so a retry writes the same thing: the same export file, conditional creates on the
image id (FHIR), the same SOP Instance UIDs (DICOMweb). An attempt records its outcome only while it
still holds the session. The SQL is `consultcam.commits.repository`.

A session opened by a SMART App Launch (issue 13) commits into that EHR with the launch's tokens, whatever
CONSULTCAM_EMR_URL says: `rt.grant_connectors` builds its connector from the grant (`commits.grants`); when
the EHR's sign-in can no longer be renewed the commit fails with 409 `LaunchExpired`, nothing written.
"""

from __future__ import annotations

import asyncio
import io
import logging
import uuid
from typing import Any

from PIL import Image

from consultcam import audit, metrics
from consultcam.auth.principals import Phone, Principal
from consultcam.commits import grants, lease, repository
from consultcam.commits.checks import check_required_metadata
from consultcam.commits.connectors.base import (
    CommitContext,
    CommitFailed,
    CommitItem,
    Connector,
    ImageResult,
    LaunchExpired,
    PatientRef,
)
from consultcam.commits.schemas import CommitOut, CommitResultOut
from consultcam.db import Transactions
from consultcam.errors import Conflict, NotPermitted, Unprocessable, UpstreamFailed
from consultcam.events.bus import publish_after_commit
from consultcam.images import service as images
from consultcam.kit.status import CommitStatus, ImageCommitStatus, ImageStatus, SessionStatus
from consultcam.models import ClinicalImage, utcnow
from consultcam.runtime import Runtime
from consultcam.sessions import repository as session_rows
from consultcam.sessions import service as sessions
from consultcam.sessions.encounters import names_a_record_encounter
from consultcam.storage.keys import session_prefix

log = logging.getLogger(__name__)


async def commit_session(
    tx: Transactions, rt: Runtime, actor: Principal, session_id: str, image_ids: list[str] | None
) -> CommitOut:
    """Commit the session's ready images (or `image_ids` of them) through `rt.connector` (or, for a session
    a SMART launch opened, through that EHR: see the module docstring), in transactions of
    `tx` that it opens and commits itself (claim, lease renewals, outcome); `rt` gives the ports (settings,
    bus, store, connector). The clinician commits; the session's phone too when `CONSULTCAM_PHONE_CAN_COMMIT`
    is on (issue 5), with the same checks.

    Returns the per-image results. Raises NotPermitted 403 (`PhoneCannotCommit`), ResourceNotFound 404,
    Conflict 409 (not open: committing, committed, cancelled, expired), Unprocessable 422 (no photos, ids not
    in the session, or `MetadataMissing`: a photo lacks a field of `CONSULTCAM_REQUIRED_METADATA`, with
    `missing: [{imageId, fields}]`; nothing is claimed or written), UpstreamFailed 502 when the connector
    failed: nothing was written and the session is open again; Conflict 409 `LaunchExpired` when the EHR's
    sign-in of a SMART launch expired: nothing was written, the session is open, the photos are kept.
    """
    if isinstance(actor, Phone) and not rt.settings.phone_can_commit:
        raise NotPermitted(
            "Photos are committed to the record by the clinician on the desktop, after reviewing them. "
            "Ask the clinician to commit.",
            error="PhoneCannotCommit",
        )
    context, attempt, chosen, skipped, connector = await _claim(tx, rt, actor, session_id, image_ids)
    total = len(chosen)

    async def progress(done: int, _total: int) -> None:
        await rt.bus.publish(
            session_id, "commit.progress", {"commitId": context.commit_id, "done": done, "total": total}
        )

    try:
        async with lease.Heartbeat(tx, rt.settings, session_id, context.commit_id, attempt):
            items = [await _item(rt, image) for image in chosen]
            results = await connector.commit(context, items, progress)
    except LaunchExpired as expired:
        metrics.COMMITS.labels(connector.name, "failed").inc()
        await _record_failure(
            tx, rt, actor, context, attempt, expired.detail, expired.results, connector.name
        )
        raise Conflict(expired.detail, error="LaunchExpired") from expired
    except CommitFailed as failed:
        metrics.COMMITS.labels(connector.name, "failed").inc()
        await _record_failure(tx, rt, actor, context, attempt, failed.detail, failed.results, connector.name)
        raise UpstreamFailed(failed.detail, error="CommitFailed") from failed
    except Unprocessable as refused:  # a photo cannot be rendered (stored edits that do not fit it)
        metrics.COMMITS.labels(connector.name, "failed").inc()
        results = [ImageResult(image.id, ImageCommitStatus.FAILED, error=refused.detail) for image in chosen]
        await _record_failure(tx, rt, actor, context, attempt, refused.detail, results, connector.name)
        raise
    except Exception as exc:
        log.exception("commit %s failed unexpectedly", context.commit_id)
        metrics.COMMITS.labels(connector.name, "error").inc()
        detail = (
            "The photos could not be sent to the record because of an unexpected error; nothing was "
            "saved there. Try again; if it keeps happening, tell your practice IT support."
        )
        results = [
            ImageResult(image.id, ImageCommitStatus.FAILED, error=type(exc).__name__) for image in chosen
        ]
        await _record_failure(tx, rt, actor, context, attempt, detail, results, connector.name)
        raise UpstreamFailed(detail, error="CommitFailed") from exc
    all_results = results + [ImageResult(image_id, ImageCommitStatus.SKIPPED) for image_id in skipped]
    await _record_success(tx, rt, actor, context, attempt, all_results, connector.name)
    metrics.COMMITS.labels(connector.name, "committed").inc()
    return CommitOut(
        status="committed",
        commit_id=context.commit_id,
        connector=connector.name,
        results=[_result_out(r) for r in all_results],
    )


def _result_out(result: ImageResult) -> CommitResultOut:
    """One image's result in the API's shape."""
    return CommitResultOut(
        image_id=result.image_id, status=result.status, resource_id=result.resource_id, error=result.error
    )


async def _claim(
    tx: Transactions, rt: Runtime, actor: Principal, session_id: str, image_ids: list[str] | None
) -> tuple[CommitContext, int, list[ClinicalImage], list[str], Connector]:
    """Transaction 1: check, then move the session open → committing under a fresh lease. Returns the
    commit context, the attempt number, the images to send, the ids of ready images left out and the
    connector (the SMART launch's EHR, or `rt.connector`). The
    session row is locked first, so no photo is registered, changed or deleted between choosing the images
    and the claim (PostgreSQL). An earlier attempt whose lease lapsed is recorded as interrupted here."""
    async with tx() as uow:
        session = await sessions.lock_session(uow, session_id)
        now = utcnow()
        if lease.lapsed(session, rt.settings, now):
            lease.mark_interrupted(uow, rt, session, detected_by="next-commit", now=now)
            await uow.session.flush()
        if session.status == SessionStatus.COMMITTING:
            raise Conflict(lease.running_words(session, rt.settings, now), error="CommitInProgress")
        if session.status == SessionStatus.COMMITTED:
            raise Conflict(
                "This session has already been committed to the record; committing again would "
                "duplicate the photos.",
                error="AlreadyCommitted",
            )
        sessions.require_open(session, rt.settings)
        ready = await images.ready_images(uow, session_id)
        if image_ids is not None:
            unknown = sorted(set(image_ids) - {image.id for image in ready})
            if unknown:
                raise Unprocessable(
                    f"These photos are not in the session (or not ready): {', '.join(unknown)}. "
                    "Reload the page and choose again.",
                    error="UnknownImages",
                )
        chosen = [image for image in ready if image_ids is None or image.id in image_ids]
        if not chosen:
            raise Unprocessable(
                "There are no photos to commit. Take or upload a photo first.", error="NothingToCommit"
            )
        check_required_metadata(ready, chosen, rt.settings.required_metadata)
        # One commit id (and commit time) for every attempt until the session is committed: a retry after
        # a failure or a crash is the same commit, and the connectors recognise what it already wrote.
        commit_id = session.commit_id or uuid.uuid4().hex
        first_at = session.commit_started_at if session.commit_id and session.commit_started_at else now
        attempt = session.commit_attempt + 1 if session.commit_id else 1
        holder = lease.holder_name()
        claimed = await repository.claim_session(
            uow.session,
            session_id,
            commit_id=commit_id,
            first_at=first_at,
            attempt=attempt,
            holder=holder,
            now=now,
            lease_until=now + lease.lease_length(rt.settings),
        )
        if not claimed:
            raise Conflict(
                "A commit of this session is already running. Wait for it to finish.",
                error="CommitInProgress",
            )
        grant = await grants.grant_access(uow, rt.settings, session_id)
        connector = grants.connector_for(tx, rt, session_id, grant)
        audit.record(
            uow.session,
            actor,
            "commit.started",
            session_id=session_id,
            commit_id=commit_id,
            attempt=attempt,
            holder=holder,
            images=len(chosen),
            connector=connector.name,
            committed_by=actor.kind,
        )
        publish_after_commit(
            uow, rt.bus, session_id, "commit.started", {"commitId": commit_id, "total": len(chosen)}
        )
        context = CommitContext(
            session_id=session.id,
            commit_id=commit_id,
            encounter_id=session.encounter_id,
            encounter_in_record=names_a_record_encounter(session.encounter_id),
            patient=PatientRef(
                id=session.patient_id,
                name=session.patient_name,
                nhi=session.patient_nhi,
                birth_date=session.patient_birth_date,
            ),
            practitioner_id=session.practitioner_id,
            facility_id=session.facility_id,
            committed_at=first_at,
            consent=session.consent,
            attempt=attempt,
        )
        if grant is not None:
            context = grants.author_from_grant(context, grant)
        skipped = [image.id for image in ready if image not in chosen]
    return context, attempt, list(chosen), skipped, connector


async def _item(rt: Runtime, image: ClinicalImage) -> CommitItem:
    """The image as it goes into the record: stored JPEG with the edits burned in."""
    jpeg = await images.render_image(rt, image)
    if image.edits:
        width, height = await asyncio.to_thread(_size, jpeg)
    else:
        width, height = image.width or 0, image.height or 0
    return CommitItem(
        image_id=image.id,
        jpeg=jpeg,
        width=width,
        height=height,
        captured_at=image.captured_at,
        created_at=image.created_at,
        metadata=image.image_metadata or {},
    )


def _size(jpeg: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(jpeg)) as img:
        return img.size


#: The 409 for an attempt that finished after losing its lease (it stalled longer than a lease).
_TAKEN_OVER = (
    "This commit stopped answering for longer than its lease, so the session was reopened (or a newer "
    "commit took over) before it finished; what it sent is in the record. Reload the page: if the photos "
    "are not shown as committed, commit again (nothing is saved twice)."
)


async def _record_success(
    tx: Transactions,
    rt: Runtime,
    actor: Principal,
    context: CommitContext,
    attempt: int,
    results: list[ImageResult],
    connector: str,
) -> None:
    """Transaction 3 (success): session committed, image rows marked, temporary objects deleted after.
    Raises Conflict 409 `CommitInterrupted` when the attempt no longer holds the session (see lease)."""
    async with tx() as uow:
        session = await sessions.lock_session(uow, context.session_id)
        if not lease.is_current(session, context.commit_id, attempt):
            log.warning("commit %s attempt %s finished without its lease", context.commit_id, attempt)
            raise Conflict(_TAKEN_OVER, error="CommitInterrupted")
        session.status, session.committed_at = SessionStatus.COMMITTED, utcnow()
        session.version += 1
        session.commit_lease_until = None
        by_id = {r.image_id: r for r in results}
        for image in await session_rows.images_of(uow.session, context.session_id):
            result = by_id.get(image.id)
            if result is not None and result.status == ImageCommitStatus.COMMITTED:
                image.status, image.resource_id = ImageStatus.COMMITTED, result.resource_id
            else:
                await uow.session.delete(image)
        audit.record(
            uow.session,
            actor,
            "commit.succeeded",
            session_id=context.session_id,
            commit_id=context.commit_id,
            attempt=attempt,
            connector=connector,
            committed=sum(r.status == ImageCommitStatus.COMMITTED for r in results),
            skipped=sum(r.status == ImageCommitStatus.SKIPPED for r in results),
        )
        publish_after_commit(
            uow,
            rt.bus,
            context.session_id,
            "session.committed",
            {"commitId": context.commit_id, "results": [_result_json(r) for r in results]},
        )
        store, prefix = rt.store, session_prefix(context.session_id)

        async def _delete_objects() -> None:
            await store.delete_prefix(prefix)

        uow.after_commit(_delete_objects)


async def _record_failure(
    tx: Transactions,
    rt: Runtime,
    actor: Principal,
    context: CommitContext,
    attempt: int,
    detail: str,
    results: list[ImageResult],
    connector: str,
) -> None:
    """Transaction 3 (failure): back to open with the failure recorded on the session and each image.
    Nothing changes when the attempt no longer holds the session (a newer one decides)."""
    async with tx() as uow:
        session = await sessions.lock_session(uow, context.session_id)
        if not lease.is_current(session, context.commit_id, attempt):
            log.warning("commit %s attempt %s failed without its lease", context.commit_id, attempt)
            return
        session.status, session.commit_error, session.version = (
            SessionStatus.OPEN,
            detail,
            session.version + 1,
        )
        session.commit_outcome, session.commit_ended_at = CommitStatus.FAILED, utcnow()
        session.commit_lease_until = None
        errors = {r.image_id: r.error for r in results}
        for image in await repository.images_by_id(uow.session, list(errors)):
            image.commit_error = errors[image.id]
        audit.record(
            uow.session,
            actor,
            "commit.failed",
            session_id=context.session_id,
            commit_id=context.commit_id,
            attempt=attempt,
            connector=connector,
            reason=detail[:300],
        )
        publish_after_commit(
            uow,
            rt.bus,
            context.session_id,
            "commit.failed",
            {"commitId": context.commit_id, "detail": detail, "results": [_result_json(r) for r in results]},
        )


def _result_json(result: ImageResult) -> dict[str, Any]:
    """One image's result as events carry it (camelCase, no nulls)."""
    return _result_out(result).model_dump(mode="json", by_alias=True, exclude_none=True)
