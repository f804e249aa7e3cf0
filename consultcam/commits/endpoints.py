"""HTTP endpoint for the commit (DESIGN.md, `POST /api/sessions/{id}/commit`)."""

from __future__ import annotations

from fastapi import APIRouter

from consultcam.commits import service
from consultcam.commits.schemas import CommitOut, CommitRequest
from consultcam.deps import RuntimeDep, StandaloneSessionPrincipalDep
from consultcam.errors import Unprocessable

router = APIRouter(prefix="/api/sessions/{session_id}", tags=["commits"])


@router.post("/commit", response_model=CommitOut)
async def commit(
    session_id: str,
    rt: RuntimeDep,
    principal: StandaloneSessionPrincipalDep,
    body: CommitRequest | None = None,
) -> CommitOut:
    """Commit the session's photos into the record, `{"imageIds": [...]}` or `{"all": true}`; all or nothing
    (409 while running or after success). The clinician, or the session's phone when
    `CONSULTCAM_PHONE_CAN_COMMIT` is on (else 403); 422 `CommitScopeMissing` without a body, `MetadataMissing`
    when a photo lacks required metadata."""
    if body is None:
        raise Unprocessable(
            'Say what to commit: send {"imageIds": [...]} with the photos the page shows, or {"all": true}. '
            "An empty request commits nothing.",
            error="CommitScopeMissing",
        )
    return await service.commit_session(
        rt.unit_of_work, rt, principal, session_id, None if body.all else body.image_ids
    )
