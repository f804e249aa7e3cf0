"""one open capture session per encounter

A partial unique index on capture_sessions(encounter_id) WHERE status = 'open': concurrent
`POST /api/sessions` for one encounter (two clicks, two web processes) cannot open two sessions. A row
lock cannot guard this (the row does not exist yet); the index holds on SQLite and PostgreSQL alike, and
the loser of the race gets the winner's session (sessions.service.create_session).

Databases made before this revision may hold several open sessions for an encounter (an idle one not yet
swept, then a new one): all but the newest are marked expired first, and the sweeper then deletes them,
their images and objects as it does for any ended session.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN = sa.text("status = 'open'")


def upgrade() -> None:
    op.execute(
        """
        UPDATE capture_sessions SET status = 'expired', version = version + 1
        WHERE status = 'open' AND EXISTS (
            SELECT 1 FROM capture_sessions AS newer
            WHERE newer.encounter_id = capture_sessions.encounter_id
              AND newer.status = 'open'
              AND (newer.created_at > capture_sessions.created_at
                   OR (newer.created_at = capture_sessions.created_at AND newer.id > capture_sessions.id))
        )
        """
    )
    op.create_index(
        "uq_capture_sessions_open_encounter",
        "capture_sessions",
        ["encounter_id"],
        unique=True,
        sqlite_where=OPEN,
        postgresql_where=OPEN,
    )


def downgrade() -> None:
    op.drop_index("uq_capture_sessions_open_encounter", table_name="capture_sessions")
