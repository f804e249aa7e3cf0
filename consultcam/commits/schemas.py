"""Request and response shapes for commits (DESIGN.md, `POST /api/sessions/{id}/commit`)."""

from __future__ import annotations

from typing import Literal

from consultcam.schemas import CamelModel


class CommitRequest(CamelModel):
    """Commit all ready images, or only `imageIds` (the rest are reported `skipped` and deleted)."""

    image_ids: list[str] | None = None


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
