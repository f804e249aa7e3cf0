"""Who is calling: a clinician (embedded token, or an OIDC bearer JWT) or a paired phone (its credential).

Embedded mode: clinicians send `Authorization: Bearer <CONSULTCAM_CLINICIAN_TOKEN>` or carry the signed
cookie that `/login` sets. Production (`CONSULTCAM_OIDC_ISSUER` and `_AUDIENCE` set): clinicians send
`Authorization: Bearer <JWT>` from the practice's identity provider, verified by `consultcam.oidc`; the
embedded token and its cookie are then refused unless `CONSULTCAM_OIDC_ALLOW_EMBEDDED_TOKEN` is true, so a
production deployment has no static master secret. Phones send their phone credential as a Bearer token or
the HttpOnly cookie that `POST /api/pair` sets; it is a dot-free random string, never JWT-shaped, which is
how a bearer value is told apart. Secrets are compared in constant time and phone credentials are stored as
SHA-256. The wiring (which credential is tried when) is in `consultcam.deps`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Literal

CLINICIAN_COOKIE = "consultcam_clinician"
PHONE_COOKIE = "consultcam_phone"
CLINICIAN_COOKIE_SECONDS = 12 * 3600


@dataclass(frozen=True)
class Clinician:
    """A signed-in clinician; `id` identifies them in the audit trail: "clinician:embedded" for the embedded
    token, "oidc:<claim>" for an OIDC token (the `CONSULTCAM_OIDC_CLINICIAN_CLAIM`, default `sub`), with
    `name` from the token's `name` claim when it has one."""

    id: str
    name: str | None = None
    kind: Literal["clinician"] = "clinician"


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


def _cookie_mac(secret_key: bytes, clinician_token: str, expires: int) -> str:
    # The token's hash is in the MAC, so changing CONSULTCAM_CLINICIAN_TOKEN signs every browser out.
    message = f"clinician|{expires}|{hash_secret(clinician_token)}".encode()
    return hmac.new(secret_key, message, hashlib.sha256).hexdigest()


def make_clinician_cookie(secret_key: bytes, clinician_token: str, now: float | None = None) -> str:
    """`<expiry>.<hmac>`: proves the browser once presented the clinician token, without holding it."""
    expires = int((now or time.time()) + CLINICIAN_COOKIE_SECONDS)
    return f"{expires}.{_cookie_mac(secret_key, clinician_token, expires)}"


def verify_clinician_cookie(value: str, secret_key: bytes, clinician_token: str) -> bool:
    """True when the cookie was made by `make_clinician_cookie` with this token and has not expired."""
    expires_text, _, mac = value.partition(".")
    if not expires_text.isdigit() or int(expires_text) < time.time():
        return False
    return hmac.compare_digest(mac, _cookie_mac(secret_key, clinician_token, int(expires_text)))
