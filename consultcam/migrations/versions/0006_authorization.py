"""OIDC sign-in and SMART App Launch: pending authorization requests, SMART grants

`authorization_requests` holds each redirect to an authorization server until its callback (state hash,
sealed PKCE verifier and nonce, expiry, use); `smart_grants` holds the tokens a SMART launch granted for a
capture session, sealed with the server's key (issue 13).

Revision ID: 0006_authorization
Revises: 0005_medtech
Create Date: 2026-12-03 16:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_authorization"
down_revision: str | None = "0005_medtech"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "authorization_requests",
        sa.Column("state_hash", sa.String(length=64), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("issuer", sa.String(length=500), nullable=False),
        sa.Column("sealed", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("state_hash", name=op.f("pk_authorization_requests")),
    )
    with op.batch_alter_table("authorization_requests", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_authorization_requests_expires_at"), ["expires_at"], unique=False
        )
    op.create_table(
        "smart_grants",
        sa.Column("session_id", sa.String(length=36), nullable=False),
        sa.Column("issuer", sa.String(length=500), nullable=False),
        sa.Column("fhir_base", sa.String(length=500), nullable=False),
        sa.Column("token_endpoint", sa.String(length=500), nullable=False),
        sa.Column("client_id", sa.String(length=200), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("fhir_user", sa.String(length=500), nullable=True),
        sa.Column("sealed_tokens", sa.Text(), nullable=False),
        sa.Column("access_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["capture_sessions.id"],
            name=op.f("fk_smart_grants_session_id_capture_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("session_id", name=op.f("pk_smart_grants")),
    )


def downgrade() -> None:
    op.drop_table("smart_grants")
    with op.batch_alter_table("authorization_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_authorization_requests_expires_at"))
    op.drop_table("authorization_requests")
