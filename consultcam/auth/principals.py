"""Who is calling: a clinician (embedded token, a sign-in session, or an OIDC bearer JWT) or a paired phone.

Embedded mode: clinicians send `Authorization: Bearer <CONSULTCAM_CLINICIAN_TOKEN>`, or carry the sign-in
cookie that `/login` sets: an opaque random id of a server-side sign-in session (`consultcam.auth.signin`),
ended on the server by `POST /logout`. Production (`CONSULTCAM_OIDC_ISSUER` and `_AUDIENCE` set): clinicians
send `Authorization: Bearer <JWT>` from the practice's identity provider, verified by `consultcam.auth.oidc`;
the embedded token and its sign-ins are then refused unless `CONSULTCAM_OIDC_ALLOW_EMBEDDED_TOKEN` is true,
so a production deployment has no static master secret. Phones send their phone credential as a Bearer token
or the HttpOnly cookie that `POST /api/pair` sets; it is a dot-free random string, never JWT-shaped, which is
how a bearer value is told apart. Secrets are compared in constant time; phone credentials and sign-in ids
are stored as SHA-256. The wiring (which credential is tried when) is in `consultcam.deps`.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import secrets
from dataclasses import dataclass
from typing import Literal

#: The clinician's sign-in cookie: the opaque id of a server-side sign-in session (consultcam.auth.signin).
CLINICIAN_COOKIE = "consultcam_clinician"
PHONE_COOKIE = "consultcam_phone"
#: The shortest CONSULTCAM_CLINICIAN_TOKEN accepted (characters), and the fewest distinct characters in it.
MIN_CLINICIAN_TOKEN_LENGTH = 32
MIN_CLINICIAN_TOKEN_DISTINCT = 8


@dataclass(frozen=True)
class Clinician:
    """A signed-in clinician; `id` identifies them in the audit trail: "clinician:embedded" for the embedded
    token, "oidc:<claim>" for an OIDC token (the `CONSULTCAM_OIDC_CLINICIAN_CLAIM`, default `sub`), with
    `name` from the token's `name` claim when it has one.

    `credential_id` is the id of the server-side sign-in session the request came with (the browser's
    cookie), None for a bearer token: what logout ends, and what names the streams a credential opened.

    `practitioner_id`, `facility_id` and `launch_issuer` are set when the sign-in is bound to one provider
    at one practice (an EMR launch: Medtech's `providerId` and `facilityCode`, no issuer,
    "medtech:<facility>:<provider>" as `id`; a SMART launch: the Practitioner id of the id_token's
    `fhirUser`, no facility, and the EHR's `iss` as listed in CONSULTCAM_SMART_ISSUERS,
    "smart:<host>:<fhirUser>"); such a clinician reaches only the capture sessions whose three equal its
    own (`bound`, `consultcam.sessions.access.reaches`), so two EHRs' Practitioner/7 are two people. None
    for the embedded token and OIDC, which reach every session.

    `fhir_user`: the identity provider's `fhirUser` claim for an OIDC sign-in ("Practitioner/123"), which
    does not bind the sign-in; the sessions such a clinician opens default to that practitioner."""

    id: str
    name: str | None = None
    credential_id: str | None = None
    practitioner_id: str | None = None
    facility_id: str | None = None
    fhir_user: str | None = None
    launch_issuer: str | None = None
    kind: Literal["clinician"] = "clinician"

    @property
    def bound(self) -> bool:
        """Whether this sign-in is bound to one provider and facility, or one EHR's provider (an EMR
        launch)."""
        return (
            self.practitioner_id is not None or self.facility_id is not None or self.launch_issuer is not None
        )


@dataclass(frozen=True)
class Phone:
    """A paired phone: may act only on `session_id`, never commit or edit."""

    id: str  # the phone credential id
    session_id: str
    kind: Literal["phone"] = "phone"


Principal = Clinician | Phone

EMBEDDED_CLINICIAN = Clinician(id="clinician:embedded")


def new_secret() -> str:
    """A URL-safe random secret of 256 bits (pairing tokens and phone credentials; ≥128 bits required)."""
    return secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    """SHA-256 hex of a high-entropy secret. No salt or stretching is needed: the secrets are 256-bit random
    values, not passwords (NIST SP 800-63B §5.1.1.2 concerns memorised secrets)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header (RFC 6750 §2.1), or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def is_clinician_token(candidate: str, clinician_token: str) -> bool:
    """Constant-time comparison with the embedded clinician token."""
    return bool(clinician_token) and hmac.compare_digest(candidate.encode(), clinician_token.encode())


def clinician_token_weakness(token: str) -> str | None:
    """Why `token` is too weak to be CONSULTCAM_CLINICIAN_TOKEN, or None when it is strong enough.

    The token is a master secret (it signs a browser in and is a bearer for the whole API), so it must be a
    machine-made random string, not a password: at least MIN_CLINICIAN_TOKEN_LENGTH characters, at least
    MIN_CLINICIAN_TOKEN_DISTINCT different characters, and no more than half of its neighbouring characters
    repeating or counting up or down by one ("aaaa", "abcd", "4321"). A random 32-character hex string
    (128 bits, `openssl rand -hex 16`) passes, as does the generated one (`secrets.token_urlsafe(32)`, 256
    bits). The message never repeats the token.
    """
    if len(token) < MIN_CLINICIAN_TOKEN_LENGTH:
        return f"it has {len(token)} characters; at least {MIN_CLINICIAN_TOKEN_LENGTH} are needed"
    if len(set(token)) < MIN_CLINICIAN_TOKEN_DISTINCT:
        return (
            f"it uses only {len(set(token))} different characters; at least {MIN_CLINICIAN_TOKEN_DISTINCT} "
            "are needed"
        )
    steps = sum(abs(ord(a) - ord(b)) <= 1 for a, b in itertools.pairwise(token))
    if steps * 2 > len(token) - 1:
        return "it is mostly repeated or consecutive characters (like aaaa or 1234)"
    return None
