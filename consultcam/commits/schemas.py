"""Request and response shapes for commits (DESIGN.md, `POST /api/sessions/{id}/commit`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import model_validator

from consultcam.kit.status import CommitStatus, SessionStatus
from consultcam.schemas import CamelModel


class CommitRequest(CamelModel):
    """What to commit, said explicitly: `{"imageIds": [...]}` (the photos the page shows; the session's other
    ready photos are reported `skipped` and deleted) or `{"all": true}` (every ready photo). `{}` is refused
    (422), so that an empty body (a form posted from another site) never means "everything" (issue 10)."""

    image_ids: list[str] | None = None
    all: bool = False

    @model_validator(mode="after")
    def _says_what(self) -> CommitRequest:
        if self.all and self.image_ids is not None:
            raise ValueError("send either imageIds or all: true, not both")
        if not self.all and self.image_ids is None:
            raise ValueError(
                'say what to commit: imageIds (the photos the page shows) or "all": true (every ready photo)'
            )
        return self


class CommitResultOut(CamelModel):
    image_id: str
    status: Literal["committed", "failed", "skipped"]
    resource_id: str | None = None
    error: str | None = None


class CommitOut(CamelModel):
    status: Literal["committed", "failed"]
    commit_id: str
    connector: str
    results: list[CommitResultOut]


class LastCommitOut(CamelModel):
    """The session's latest commit attempt (issue 10: the GP sees the truth after a crash).

    `status`: "running" (its process renews the lease, `leaseExpiresAt`), "committed", "failed" (the
    record system refused; `detail` says why) or "interrupted" (its process stopped, e.g. killed, before it
    finished: whether the photos reached the record is not known; committing again does not duplicate).
    `commitId` stays the same through every retry until the session is committed; `attempt` counts them.
    """

    commit_id: str
    status: Literal["running", "committed", "failed", "interrupted"]
    attempt: int
    started_at: datetime | None = None
    ended_at: datetime | None = None
    lease_expires_at: datetime | None = None
    detail: str | None = None

    @classmethod
    def of(cls, session: Any) -> LastCommitOut | None:
        """From a CaptureSession row; None before the first commit attempt."""
        if not session.commit_id or not session.commit_attempt:
            return None
        status = _COMMIT_STATUS_OF_SESSION.get(session.status, session.commit_outcome)
        if status not in _COMMIT_STATUSES:
            return None  # a cancelled or expired session after a failed commit shows that instead
        return cls(
            commit_id=session.commit_id,
            status=status,
            attempt=session.commit_attempt,
            started_at=session.commit_attempt_at,
            ended_at=session.committed_at if status == CommitStatus.COMMITTED else session.commit_ended_at,
            lease_expires_at=session.commit_lease_until if status == CommitStatus.RUNNING else None,
            detail=session.commit_error
            if status in (CommitStatus.FAILED, CommitStatus.INTERRUPTED)
            else None,
        )


#: The latest attempt's status while the session itself says it (else the session's `commit_outcome`).
_COMMIT_STATUS_OF_SESSION: dict[str, CommitStatus] = {
    SessionStatus.COMMITTING: CommitStatus.RUNNING,
    SessionStatus.COMMITTED: CommitStatus.COMMITTED,
}
_COMMIT_STATUSES = frozenset(CommitStatus)
