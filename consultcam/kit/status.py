"""The typed states of the records that have one (the database stores their values as strings).

`StrEnum`, so a member compares equal to its stored value and serialises to it in JSON: `SessionStatus.OPEN ==
"open"`. Each enum's docstring gives its life cycle; the rules for moving between states are the owning
domain's service.
"""

from __future__ import annotations

from enum import StrEnum


class SessionStatus(StrEnum):
    """A capture session: open → committing → committed; or cancelled (by the clinician) or expired (idle,
    retention or end of day)."""

    OPEN = "open"
    COMMITTING = "committing"
    COMMITTED = "committed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class ImageStatus(StrEnum):
    """A clinical image: pending (an upload URL was issued) → ready (registered) → committed."""

    PENDING = "pending"
    READY = "ready"
    COMMITTED = "committed"


class CommitStatus(StrEnum):
    """A commit attempt as the session records it (`lastCommit`): running → committed or failed; interrupted
    when its process died and its lease expired."""

    RUNNING = "running"
    COMMITTED = "committed"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


class ImageCommitStatus(StrEnum):
    """One image's result in a commit: committed, failed, or skipped (not asked for)."""

    COMMITTED = "committed"
    FAILED = "failed"
    SKIPPED = "skipped"


class AnalysisStatus(StrEnum):
    """An image's AI description (`ClinicalImage.analysis["status"]`): pending → running → done or failed;
    disabled when no AI is configured."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    DISABLED = "disabled"
