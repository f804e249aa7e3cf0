"""HTTP endpoint for the commit (DESIGN.md, `POST /api/sessions/{id}/commit`)."""

from __future__ import annotations

from fastapi import APIRouter

from consultcam.commits import service
from consultcam.commits.schemas import CommitOut, CommitRequest
from consultcam.deps import ClinicianDep, RuntimeDep

router = APIRouter(prefix="/api/sessions/{session_id}", tags=["commits"])


@router.post("/commit", response_model=CommitOut)
async def commit(
    session_id: str, rt: RuntimeDep, clinician: ClinicianDep, body: CommitRequest | None = None
) -> CommitOut:
    """Commit the session's photos into the record; all or nothing (409 while running or after success)."""
    return await service.commit_session(rt, clinician, session_id, body.image_ids if body else None)
