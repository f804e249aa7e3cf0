"""SQLAlchemy 2 models: capture sessions, pairing tokens, phone credentials, clinical images, audit events,
clinician sign-in sessions.

Secrets are stored only as SHA-256 hashes (pairing tokens, phone credentials, sign-in cookies).
Relationships are `lazy="raise"` so a missing eager load fails in tests, not in production.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from consultcam.kit.status import ImageStatus, SessionStatus


def utcnow() -> datetime:
    """Aware UTC now; every timestamp in the database is UTC."""
    return datetime.now(UTC)


def new_id() -> str:
    """A random UUID4 string: ids in URLs are unguessable."""
    return str(uuid.uuid4())


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use aware UTC datetimes")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONType = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    """Declarative base with one naming convention, so Alembic names constraints the same everywhere."""

    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class CaptureSession(Base):
    """One encounter's photo session. status: open → committing → committed; or cancelled / expired.

    At most one open session per encounter (DESIGN.md: an open session for the same encounter is returned),
    enforced by a partial unique index so it holds across processes on PostgreSQL too (migration 0002).
    """

    __tablename__ = "capture_sessions"
    __table_args__ = (
        Index(
            "uq_capture_sessions_open_encounter",
            "encounter_id",
            unique=True,
            sqlite_where=text("status = 'open'"),
            postgresql_where=text("status = 'open'"),
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    status: Mapped[str] = mapped_column(String(16), default=SessionStatus.OPEN, index=True)
    encounter_id: Mapped[str] = mapped_column(String(128), index=True)
    patient_id: Mapped[str] = mapped_column(String(128))
    patient_name: Mapped[str] = mapped_column(String(200))
    patient_nhi: Mapped[str | None] = mapped_column(String(16))
    patient_birth_date: Mapped[date | None] = mapped_column(Date)
    practitioner_id: Mapped[str | None] = mapped_column(String(128))
    facility_id: Mapped[str | None] = mapped_column(String(128))
    #: The SMART EHR (its `iss`, as listed in CONSULTCAM_SMART_ISSUERS) whose launch bound the sign-in that
    #: opened this session (for one from before migration 0008, its launch's grant's); None for any other
    #: opener. A bound sign-in reaches the session only when this equals its own (`sessions.access`).
    launch_issuer: Mapped[str | None] = mapped_column(String(500))
    consent: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_activity_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: Hard cap: RETENTION_HOURS after creation, whatever the activity.
    retain_until: Mapped[datetime] = mapped_column(UTCDateTime)
    committed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    commit_id: Mapped[str | None] = mapped_column(String(36))
    commit_error: Mapped[str | None] = mapped_column(Text)
    # The commit's lease (consultcam/commits/lease.py, migration 0003_commits). `commit_id` stays the same
    # through every retry until the session is committed; each attempt is numbered.
    #: When the commit was first started: the commit time every retry hands the connector.
    commit_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Attempts of `commit_id` so far; the running attempt's number while the session is committing.
    commit_attempt: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: When the latest attempt started.
    commit_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: The process running (or that last ran) an attempt: "<host>:<pid>".
    commit_holder: Mapped[str | None] = mapped_column(String(200))
    #: The running attempt's lease: renewed by its heartbeat; once past, the attempt is interrupted.
    commit_lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: How the latest attempt that did not succeed ended: "failed" | "interrupted"; None otherwise.
    commit_outcome: Mapped[str | None] = mapped_column(String(16))
    #: When that attempt ended, or was found interrupted.
    commit_ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Increments on every state change, so concurrent writers can compare-and-set.
    version: Mapped[int] = mapped_column(Integer, default=1)

    images: Mapped[list[ClinicalImage]] = relationship(
        back_populates="session", lazy="raise", order_by="ClinicalImage.created_at", passive_deletes=True
    )
    phones: Mapped[list[PhoneCredential]] = relationship(lazy="raise", passive_deletes=True)


class PairingToken(Base):
    """The secret in a QR code: ≥128 bits, single use, short-lived, stored only as its SHA-256 hash."""

    __tablename__ = "pairing_tokens"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    session_id: Mapped[str] = mapped_column(ForeignKey("capture_sessions.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    redeemed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Set when a newer code replaced this one before it was redeemed.
    superseded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class PhoneCredential(Base):
    """What a phone gets for redeeming a pairing token: bound to one session, revocable, stored hashed."""

    __tablename__ = "phone_credentials"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    session_id: Mapped[str] = mapped_column(ForeignKey("capture_sessions.id", ondelete="CASCADE"), index=True)
    pairing_token_id: Mapped[str] = mapped_column(String(36))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_agent: Mapped[str] = mapped_column(String(300), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ClinicalImage(Base):
    """One photo. status: pending (upload URL issued) → ready (registered) → committed."""

    __tablename__ = "clinical_images"
    __table_args__ = (Index("ix_clinical_images_status_created", "status", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    session_id: Mapped[str] = mapped_column(ForeignKey("capture_sessions.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16), default=ImageStatus.PENDING)
    source: Mapped[str] = mapped_column(String(16))  # phone | desktop
    uploaded_by: Mapped[str] = mapped_column(String(200))
    filename: Mapped[str | None] = mapped_column(String(255))
    upload_key: Mapped[str] = mapped_column(String(300))
    upload_content_type: Mapped[str] = mapped_column(String(64))
    upload_size_bytes: Mapped[int] = mapped_column(Integer)
    upload_expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    object_key: Mapped[str | None] = mapped_column(String(300))
    thumbnail_key: Mapped[str | None] = mapped_column(String(300))
    content_type: Mapped[str | None] = mapped_column(String(64))
    size_bytes: Mapped[int | None] = mapped_column(Integer)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    sha256: Mapped[str | None] = mapped_column(String(64))
    captured_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    registered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    image_metadata: Mapped[dict[str, Any]] = mapped_column("metadata", JSONType, default=dict)
    edits: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    quality: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    analysis: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    resource_id: Mapped[str | None] = mapped_column(String(300))
    commit_error: Mapped[str | None] = mapped_column(Text)

    session: Mapped[CaptureSession] = relationship(back_populates="images", lazy="raise")


class SignInSession(Base):
    """A clinician's sign-in in one browser (consultcam.auth.signin): the browser's cookie carries a 256-bit
    random value whose SHA-256 is `token_hash`; nothing else identifies it. It counts while not ended, before
    `idle_expires_at` (pushed on by use) and `expires_at` (fixed at sign-in), and while `binding` matches
    what the server now trusts for its `method`; the sweeper deletes it once it no longer counts.

    `method` is how the clinician proved who they are: "embedded" (CONSULTCAM_CLINICIAN_TOKEN), "oidc"
    (an identity provider's authorization code flow), "medtech" (a Medtech ALEX Apps launch) or "smart" (a
    SMART App Launch); `subject`, `name` and, for a launch, `practitioner_id`, `facility_id` and (SMART)
    `launch_issuer` become the `Clinician`.
    """

    __tablename__ = "signin_sessions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    method: Mapped[str] = mapped_column(String(16))
    #: A fingerprint of what the sign-in was proven against (the embedded token, the OIDC issuer): when the
    #: server's changes (a new CONSULTCAM_CLINICIAN_TOKEN), every sign-in made with the old one stops
    #: counting.
    binding: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(200))  # Clinician.id
    name: Mapped[str | None] = mapped_column(String(200))
    user_agent: Mapped[str] = mapped_column(String(300), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    idle_expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    end_reason: Mapped[str | None] = mapped_column(String(32))  # signed-out | replaced
    #: The provider and facility an EMR launch bound this sign-in to (None otherwise): see `Clinician`.
    practitioner_id: Mapped[str | None] = mapped_column(String(64))
    facility_id: Mapped[str | None] = mapped_column(String(64))
    #: The SMART EHR whose launch bound this sign-in: the `iss` as listed in CONSULTCAM_SMART_ISSUERS
    #: (migration 0008); None for every other method. A "smart" sign-in without it does not count.
    launch_issuer: Mapped[str | None] = mapped_column(String(500))
    #: An OIDC sign-in's `fhirUser` claim ("Practitioner/123"), and its ID Token sealed with the server's key
    #: (`consultcam.kit.sealing`) for RP-Initiated Logout's id_token_hint (migration 0007).
    fhir_user: Mapped[str | None] = mapped_column(String(500))
    sealed_id_token: Mapped[str | None] = mapped_column(Text)


class LaunchContextUse(Base):
    """A Medtech launch context that has been used (consultcam.launch.medtech): the SHA-256 of its
    `context` and `signature`, so the same launch URL is refused a second time (a replay), until
    `expires_at` (when the context would be refused as too old anyway); the sweeper deletes it then. The
    context itself is never stored."""

    __tablename__ = "launch_context_uses"

    context_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    used_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class AuthorizationRequest(Base):
    """One redirect of a browser to an authorization server, waiting for its callback (issue 13): an OIDC
    sign-in (`purpose` "oidc") or a SMART App Launch (`purpose` "smart"). The callback finds it by the
    SHA-256 of its `state` (RFC 6749 §10.12), refuses it after `expires_at` or once `used_at` is set (a
    replayed callback), and reads what it must send or check (the PKCE code_verifier, RFC 7636; the OIDC
    `nonce`; the return path; the SMART `launch`, endpoints and issuer) from `sealed`: JSON encrypted with
    the server's key (`consultcam.kit.sealing`), never readable from the database alone. The sweeper deletes
    it after `expires_at`."""

    __tablename__ = "authorization_requests"

    state_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(16))  # oidc | smart
    issuer: Mapped[str] = mapped_column(String(500))
    sealed: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SmartGrant(Base):
    """The access a SMART App Launch granted for one capture session (issue 13): the EHR (`issuer`, its
    FHIR base `fhir_base`, `token_endpoint`, `client_id`), the `scope` granted, the launching user's
    `fhir_user` (e.g. "Practitioner/123"), and the access and refresh tokens sealed with the server's key
    (`consultcam.kit.sealing`; a token is never stored in the clear) with the access token's expiry. The
    session's commit uses it to write back into that EHR; it goes when the session goes."""

    __tablename__ = "smart_grants"

    session_id: Mapped[str] = mapped_column(
        ForeignKey("capture_sessions.id", ondelete="CASCADE"), primary_key=True
    )
    issuer: Mapped[str] = mapped_column(String(500))
    fhir_base: Mapped[str] = mapped_column(String(500))
    token_endpoint: Mapped[str] = mapped_column(String(500))
    client_id: Mapped[str] = mapped_column(String(200))
    scope: Mapped[str] = mapped_column(Text, default="")
    fhir_user: Mapped[str | None] = mapped_column(String(500))
    sealed_tokens: Mapped[str] = mapped_column(Text)
    access_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AuditEvent(Base):
    """Who did what and when. Never a token, a URL signature or image bytes."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor_type: Mapped[str] = mapped_column(String(16))  # clinician | phone | system
    actor_id: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(48))
    session_id: Mapped[str | None] = mapped_column(String(36), index=True)
    image_id: Mapped[str | None] = mapped_column(String(36))
    detail: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
