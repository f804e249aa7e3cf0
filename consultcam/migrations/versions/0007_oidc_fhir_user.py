"""OIDC browser sign-in: the sign-in's fhirUser and its sealed ID Token

`signin_sessions.fhir_user` keeps the identity provider's `fhirUser` claim (e.g. "Practitioner/123"), the
default practitioner of the sessions the clinician opens; `signin_sessions.sealed_id_token` keeps the ID
Token, sealed with the server's key, for RP-Initiated Logout's `id_token_hint` (issue 13).

Revision ID: 0007_oidc_fhir_user
Revises: 0006_authorization
Create Date: 2026-12-03 16:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_oidc_fhir_user"
down_revision: str | None = "0006_authorization"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("signin_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("fhir_user", sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column("sealed_id_token", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("signin_sessions", schema=None) as batch_op:
        batch_op.drop_column("sealed_id_token")
        batch_op.drop_column("fhir_user")
