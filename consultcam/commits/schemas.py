"""Request and response shapes for commits (DESIGN.md, `POST /api/sessions/{id}/commit`)."""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator

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
