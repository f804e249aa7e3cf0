"""SMART launch: sign-ins and capture sessions bound to the EHR as well as the Practitioner

CONSULTCAM_SMART_ISSUERS may list several EHRs, and two EHRs may both have a Practitioner/7. A SMART sign-in
was bound to its Practitioner id only (no facility), so the GP of one EHR reached the capture sessions of the
other's GP with the same id. From this revision a SMART sign-in is bound to (EHR, Practitioner): the EHR's
`iss`, exactly as listed in CONSULTCAM_SMART_ISSUERS, is kept as `signin_sessions.launch_issuer` and stamped
on the sessions it opens as `capture_sessions.launch_issuer`; a bound sign-in reaches a session only when
practitioner, facility and issuer all equal its own (`consultcam.sessions.access.reaches`, exact equality,
None equal only to None).

Existing rows get null, which is right for Medtech and every other sign-in and session. What it means for
rows made by SMART launches before this revision (deliberately the safe side, not a guess at their EHR):

- a SMART sign-in from before (method "smart", no issuer) no longer counts (`consultcam.auth.signin`
  refuses it like no cookie): the GP launches again from their EHR, and that sign-in carries the issuer;
- a SMART session from before has issuer null, so no SMART sign-in made after the upgrade reaches it (its
  issuer is never null): it answers 404 like another provider's, a new launch for its encounter is refused
  "encounter-held" until it is committed or cancelled by an unbound clinician, or idles out and the sweeper
  expires it. Clinicians not bound (embedded token, OIDC) still reach it.

Downgrading drops both columns, and with them the EHR binding (back to the Practitioner-only rule).

Revision ID: 0008_smart_issuer
Revises: 0007_oidc_fhir_user
Create Date: 2026-12-03 22:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_smart_issuer"
down_revision: str | None = "0007_oidc_fhir_user"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("signin_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("launch_issuer", sa.String(length=500), nullable=True))
    with op.batch_alter_table("capture_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("launch_issuer", sa.String(length=500), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("capture_sessions", schema=None) as batch_op:
        batch_op.drop_column("launch_issuer")
    with op.batch_alter_table("signin_sessions", schema=None) as batch_op:
        batch_op.drop_column("launch_issuer")
