"""The audit trail: who did what to which session or image, and when.

Written in the same transaction as the action, so an action and its audit row land together or not at all.
Details never hold a token, a signed URL or image bytes: only ids, counts, sizes and outcomes.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from consultcam.auth.principals import Principal
from consultcam.models import AuditEvent

#: Actions recorded (issue 2: created, paired, uploaded, viewed, committed, deleted, expired; issue 5:
#: consent, the session's ZIP download; issue 6: a photo sent to the AI endpoint, with the model and the
#: endpoint's host, never the key or the photo; issue 10: a clinician's sign-in in a browser began or ended,
#: named by its id, never its cookie; issue 12: a Medtech launch accepted or refused, with the reason, never
#: the launch context).
ACTIONS = frozenset(
    {
        "session.created",
        "session.resumed",
        "session.viewed",
        "session.downloaded",
        "session.cancelled",
        "session.expired",
        "pairing.issued",
        "phone.paired",
        "phone.revoked",
        "consent.recorded",
        "image.upload_issued",
        "image.uploaded",
        "image.rejected",
        "image.downloaded",
        "image.updated",
        "image.deleted",
        "image.sent-for-analysis",
        "commit.started",
        "commit.succeeded",
        "commit.failed",
        "commit.interrupted",
        "upload.abandoned",
        "signin.started",
        "signin.ended",
        "launch.accepted",
        "launch.refused",
    }
)

#: Words that may not appear in a detail key (split on "_"): what could carry a secret or the image itself.
_FORBIDDEN_WORDS = frozenset(
    {"token", "secret", "sig", "signature", "url", "password", "data", "jpeg", "base64"}
)


def record(
    db: AsyncSession,
    actor: Principal | None,
    action: str,
    *,
    session_id: str | None = None,
    image_id: str | None = None,
    system: str = "sweeper",
    **detail: Any,
) -> None:
    """Add an audit event to the current transaction. `actor` None means the system: `system` names which
    part of it (the sweeper, the AI description job) as the event's actor id.

    Raises ValueError for an unknown action or a detail key that could carry a secret or bytes.
    """
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    bad = [k for k in detail if _FORBIDDEN_WORDS & set(k.lower().split("_"))]
    if bad:
        raise ValueError(f"audit detail may not carry {bad}")
    db.add(
        AuditEvent(
            actor_type=actor.kind if actor else "system",
            actor_id=actor.id if actor else system,
            action=action,
            session_id=session_id,
            image_id=image_id,
            detail=detail,
        )
    )
