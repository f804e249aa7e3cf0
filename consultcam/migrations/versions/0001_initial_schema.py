"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-20 22:28:27.413424
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_type", sa.String(length=16), nullable=False),
        sa.Column("actor_id", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=48), nullable=False),
        sa.Column("session_id", sa.String(length=36), nullable=True),
        sa.Column("image_id", sa.String(length=36), nullable=True),
        sa.Column(
            "detail",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_events_at"), ["at"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_events_session_id"), ["session_id"], unique=False)

    op.create_table(
        "capture_sessions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("encounter_id", sa.String(length=128), nullable=False),
        sa.Column("patient_id", sa.String(length=128), nullable=False),
        sa.Column("patient_name", sa.String(length=200), nullable=False),
        sa.Column("patient_nhi", sa.String(length=16), nullable=True),
        sa.Column("patient_birth_date", sa.Date(), nullable=True),
        sa.Column("practitioner_id", sa.String(length=128), nullable=True),
        sa.Column("facility_id", sa.String(length=128), nullable=True),
        sa.Column(
            "consent",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_activity_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retain_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("committed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("commit_id", sa.String(length=36), nullable=True),
        sa.Column("commit_error", sa.Text(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_capture_sessions")),
    )
    with op.batch_alter_table("capture_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_capture_sessions_encounter_id"), ["encounter_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_capture_sessions_status"), ["status"], unique=False)

    op.create_table(
        "clinical_images",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("session_id", sa.String(length=36), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("uploaded_by", sa.String(length=200), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=True),
        sa.Column("upload_key", sa.String(length=300), nullable=False),
        sa.Column("upload_content_type", sa.String(length=64), nullable=False),
        sa.Column("upload_size_bytes", sa.Integer(), nullable=False),
        sa.Column("upload_expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("object_key", sa.String(length=300), nullable=True),
        sa.Column("thumbnail_key", sa.String(length=300), nullable=True),
        sa.Column("content_type", sa.String(length=64), nullable=True),
        sa.Column("size_bytes", sa.Integer(), nullable=True),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("captured_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "metadata",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "edits",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "quality",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "analysis",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("resource_id", sa.String(length=300), nullable=True),
        sa.Column("commit_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["capture_sessions.id"],
            name=op.f("fk_clinical_images_session_id_capture_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clinical_images")),
    )
    with op.batch_alter_table("clinical_images", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_clinical_images_session_id"), ["session_id"], unique=False)
        batch_op.create_index("ix_clinical_images_status_created", ["status", "created_at"], unique=False)

    op.create_table(
        "pairing_tokens",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("session_id", sa.String(length=36), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("redeemed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("superseded_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["capture_sessions.id"],
            name=op.f("fk_pairing_tokens_session_id_capture_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pairing_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_pairing_tokens_token_hash")),
    )
    with op.batch_alter_table("pairing_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_pairing_tokens_session_id"), ["session_id"], unique=False)

    op.create_table(
        "phone_credentials",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("session_id", sa.String(length=36), nullable=False),
        sa.Column("pairing_token_id", sa.String(length=36), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user_agent", sa.String(length=300), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["capture_sessions.id"],
            name=op.f("fk_phone_credentials_session_id_capture_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_phone_credentials")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_phone_credentials_token_hash")),
    )
    with op.batch_alter_table("phone_credentials", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_phone_credentials_session_id"), ["session_id"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("phone_credentials", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_phone_credentials_session_id"))

    op.drop_table("phone_credentials")
    with op.batch_alter_table("pairing_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pairing_tokens_session_id"))

    op.drop_table("pairing_tokens")
    with op.batch_alter_table("clinical_images", schema=None) as batch_op:
        batch_op.drop_index("ix_clinical_images_status_created")
        batch_op.drop_index(batch_op.f("ix_clinical_images_session_id"))

    op.drop_table("clinical_images")
    with op.batch_alter_table("capture_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_capture_sessions_status"))
        batch_op.drop_index(batch_op.f("ix_capture_sessions_encounter_id"))

    op.drop_table("capture_sessions")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_events_session_id"))
        batch_op.drop_index(batch_op.f("ix_audit_events_at"))

    op.drop_table("audit_events")
