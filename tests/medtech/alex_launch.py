"""Sign-in and launch for the Medtech ALEX double: the Azure AD token endpoint and ALEX's vendor-forms decode.

* `POST /oauth2/v2.0/token` (RFC 6749 §4.4, as Azure AD's v2.0 endpoint): `grant_type=client_credentials`,
  the client by HTTP Basic (§2.3.1, id and secret form-urlencoded) or in the form (client_secret_post),
  `scope` the app's `api://…/.default`. Answers `{access_token, token_type "Bearer", expires_in 3599}`;
  a wrong client 401 `invalid_client`, another grant 400 `unsupported_grant_type`, another scope 400
  `invalid_scope`.
* Launch contexts: Medtech Evolution opens the app with `context` and `signature`; the signature is the
  base64url (no padding) HMAC-SHA256 of the context's ASCII bytes under a key only ALEX (the double and its
  handle) knows. `GET /vendorforms/api/getlaunchcontextstring/{context}/{signature}` answers
  `{patientId, facilityCode, providerId, createdTime}` for a registered context with its signature, else
  400 `invalid_signature`. Old or reused contexts are answered again: refusing them is consultcam's job.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, unquote
from zoneinfo import ZoneInfo

from tests.medtech.alex_fhir import Answer

TOKEN_PATH = "/oauth2/v2.0/token"
DECODE_PATH = "/vendorforms/api/getlaunchcontextstring/"
TOKEN_LIFETIME = 3599  # seconds, as Azure AD's access tokens for ALEX
NZ = ZoneInfo("Pacific/Auckland")
_JSON = {"Content-Type": "application/json; charset=utf-8", "Cache-Control": "no-store"}


def sign(key: bytes, context: str) -> str:
    """The launch signature: base64url (no padding) of HMAC-SHA256(key, context as ASCII)."""
    digest = hmac.new(key, context.encode("ascii"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


@dataclass(frozen=True)
class Launch:
    """What a decode answers for one context (createdTime ISO 8601 with the Pacific/Auckland offset)."""

    patient_id: str | None
    facility_code: str
    provider_id: str
    created_time: str

    def answer(self) -> dict[str, Any]:
        return {
            "patientId": self.patient_id,
            "facilityCode": self.facility_code,
            "providerId": self.provider_id,
            "createdTime": self.created_time,
        }


@dataclass
class Auth:
    """The client ALEX knows, the tokens issued to it (token → monotonic expiry) and the launch contexts."""

    client_id: str
    client_secret: str = field(repr=False)
    scope: str
    key: bytes = field(repr=False)
    tokens: dict[str, float] = field(default_factory=dict, repr=False)
    contexts: dict[str, Launch] = field(default_factory=dict, repr=False)
    decodes: int = 0

    def token(self, raw: bytes, authorization: str) -> tuple[int, dict[str, Any], dict[str, str]]:
        """POST /oauth2/v2.0/token with the form `raw`: (status, JSON body, headers)."""
        form = {name: values[0] for name, values in parse_qs(raw.decode("utf-8", "replace")).items()}
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        if authorization.startswith("Basic "):
            try:
                pair = base64.b64decode(authorization[6:], validate=True).decode()
            except ValueError:
                pair = ""
            name, _, password = pair.partition(":")
            client_id, client_secret = unquote(name), unquote(password)
        if form.get("grant_type") != "client_credentials":
            return 400, _oauth_error("unsupported_grant_type", "only client_credentials is supported"), _JSON
        if not (
            client_id is not None
            and client_secret is not None
            and hmac.compare_digest(client_id.encode(), self.client_id.encode())
            and hmac.compare_digest(client_secret.encode(), self.client_secret.encode())
        ):
            return (
                401,
                _oauth_error("invalid_client", "the client id or secret is wrong"),
                {**_JSON, "WWW-Authenticate": "Basic"},
            )
        if form.get("scope") != self.scope:
            return 400, _oauth_error("invalid_scope", f"the scope must be {self.scope}"), _JSON
        token = secrets.token_urlsafe(32)
        self.tokens[token] = time.monotonic() + TOKEN_LIFETIME
        return 200, {"access_token": token, "token_type": "Bearer", "expires_in": TOKEN_LIFETIME}, _JSON

    def valid_bearer(self, authorization: str) -> bool:
        """True when `authorization` is `Bearer <a token issued here, not expired or revoked>`."""
        scheme, _, token = authorization.partition(" ")
        expiry = self.tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        return expiry is not None and expiry > time.monotonic()

    def launch(
        self, patient_id: str | None, provider_id: str, facility_code: str, created: str
    ) -> tuple[str, str]:
        """Register a launch (created: ISO 8601 with an offset); returns (context, signature)."""
        when = datetime.fromisoformat(created)
        if when.tzinfo is None:
            raise ValueError("created needs a UTC offset")
        context = secrets.token_urlsafe(48)
        self.contexts[context] = Launch(
            patient_id, facility_code, provider_id, when.astimezone(NZ).isoformat(timespec="seconds")
        )
        return context, sign(self.key, context)

    def decode(self, rest: str) -> dict[str, Any]:
        """GET …/getlaunchcontextstring/{context}/{signature} (`rest`): the launch; raises Answer 400/404."""
        parts = [unquote(part) for part in rest.split("/")]
        if len(parts) != 2 or not all(parts):
            raise Answer(
                404, _error("not_found", "expected getlaunchcontextstring/{context}/{signature}"), _JSON
            )
        context, signature = parts
        try:
            expected = sign(self.key, context)
        except UnicodeEncodeError:
            expected = ""
        launch = self.contexts.get(context)
        if not expected or not hmac.compare_digest(expected.encode(), signature.encode()) or launch is None:
            raise Answer(
                400, _error("invalid_signature", "the launch context or its signature is not valid"), _JSON
            )
        self.decodes += 1
        return launch.answer()


def _error(code: str, text: str) -> dict[str, str]:
    return {"error": code, "message": text}


def _oauth_error(code: str, text: str) -> dict[str, str]:
    return {"error": code, "error_description": text}  # RFC 6749 §5.2
