"""Medtech launch: sign-ins bound to a provider and facility, used launch contexts

A Medtech ALEX Apps launch (issue 12) signs the GP in for one provider at one facility: the sign-in keeps
both (`practitioner_id`, `facility_id`, null for other sign-ins). `launch_context_uses` holds the SHA-256 of
each launch context already used, so a launch URL cannot be replayed while it is still fresh.

Revision ID: 0005_medtech
Revises: 0004_signin
Create Date: 2026-12-03 15:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_medtech"
down_revision: str | None = "0004_signin"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("signin_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("practitioner_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("facility_id", sa.String(length=64), nullable=True))
    op.create_table(
        "launch_context_uses",
        sa.Column("context_hash", sa.String(length=64), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("context_hash", name=op.f("pk_launch_context_uses")),
    )
    with op.batch_alter_table("launch_context_uses", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_launch_context_uses_expires_at"), ["expires_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("launch_context_uses", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_launch_context_uses_expires_at"))
    op.drop_table("launch_context_uses")
    with op.batch_alter_table("signin_sessions", schema=None) as batch_op:
        batch_op.drop_column("facility_id")
        batch_op.drop_column("practitioner_id")
