"""commit lease: who runs a commit, until when, and how the last attempt ended

A commit holds its capture session by a lease its process renews while it runs (a heartbeat), instead of
a fixed 15-minute window: a commit whose lease lapsed (the process was killed) is seen as interrupted and
can be committed again at once, while a long one that keeps renewing is never taken over. The commit id
now stays the same through every retry, so connectors can recognise what an earlier attempt wrote.

Sessions caught committing by this upgrade have no lease: they count as interrupted once
`CONSULTCAM_COMMIT_LEASE_SECONDS` has passed since their last activity.

Revision ID: 0003_commits
Revises: 0002
Create Date: 2026-12-01 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_commits"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = (
    "commit_started_at",
    "commit_attempt",
    "commit_attempt_at",
    "commit_holder",
    "commit_lease_until",
    "commit_outcome",
    "commit_ended_at",
)


def upgrade() -> None:
    with op.batch_alter_table("capture_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("commit_started_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("commit_attempt", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("commit_attempt_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("commit_holder", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("commit_lease_until", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("commit_outcome", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("commit_ended_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("capture_sessions", schema=None) as batch_op:
        for name in reversed(_COLUMNS):
            batch_op.drop_column(name)
