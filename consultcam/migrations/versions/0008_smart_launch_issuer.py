"""SMART launch: sign-ins and capture sessions bound to the EHR as well as the Practitioner

CONSULTCAM_SMART_ISSUERS may list several EHRs, and two EHRs may both have a Practitioner/7. A SMART sign-in
was bound to its Practitioner id only (no facility), so the GP of one EHR reached the capture sessions of the
other's GP with the same id. From this revision a SMART sign-in is bound to (EHR, Practitioner): the EHR's
`iss`, exactly as listed in CONSULTCAM_SMART_ISSUERS, is kept as `signin_sessions.launch_issuer` and stamped
on the sessions it opens as `capture_sessions.launch_issuer`; a bound sign-in reaches a session only when
practitioner, facility and issuer all equal its own (`consultcam.sessions.access.reaches`, exact equality,
None equal only to None).

Existing rows get null, which is right for Medtech and every other sign-in and session, except capture
sessions a SMART launch opened or resumed: each has its launch's grant (`smart_grants`, one per session),
whose `issuer` is that same accepted `iss`, and takes it (when the session has a practitioner and no
facility, the shape of a SMART session). So a GP who launches again after the upgrade reaches their open
sessions as before. Nothing is guessed:

- a SMART sign-in from before (method "smart", no issuer) no longer counts (`consultcam.auth.signin`
  refuses it like no cookie): nothing records which EHR it came from; the GP launches again from their EHR,
  and that sign-in carries the issuer;
- a session with no grant keeps issuer null: no SMART sign-in reaches it (its issuer is never null);
  clinicians not bound (embedded token, OIDC) still do.

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
    # The issuer of the launch that opened or resumed a session, from its grant (see the docstring).
    op.execute(
        "UPDATE capture_sessions SET launch_issuer = "
        "(SELECT g.issuer FROM smart_grants g WHERE g.session_id = capture_sessions.id) "
        "WHERE launch_issuer IS NULL AND practitioner_id IS NOT NULL AND facility_id IS NULL "
        "AND EXISTS (SELECT 1 FROM smart_grants g WHERE g.session_id = capture_sessions.id)"
    )


def downgrade() -> None:
    with op.batch_alter_table("capture_sessions", schema=None) as batch_op:
        batch_op.drop_column("launch_issuer")
    with op.batch_alter_table("signin_sessions", schema=None) as batch_op:
        batch_op.drop_column("launch_issuer")
