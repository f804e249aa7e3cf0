"""The authorization server of the SMART EHR double: discovery, /authorize, /token, JWKS, id_tokens.

Rules (SMART App Launch 2.x (hl7.org/fhir/smart-app-launch/app-launch.html), RFC 6749, RFC 7636, OIDC Core):

* `GET /auth/authorize`: the client_id and exact redirect_uri must be the registered ones (else a 400 page:
  never redirect to an unknown URI). Then, answered by redirect with `error` (RFC 6749 §4.1.2.1) and the
  `state`: response_type other than `code` (unsupported_response_type), `aud` not the FHIR base, no S256
  `code_challenge`, an unknown `launch`, a standalone launch without `launch/patient` or with no selected
  patient (invalid_request), a scope outside the server's vocabulary (invalid_scope: a v1-only server does
  not know `.rs`/`.c`, a v2-only one not `.read`/`.write`), `deny_next()` (access_denied). Otherwise a code
  (single use, 60 s) for the launch's patient, encounter and user.
* `POST /auth/token` (form): `authorization_code` with the code's redirect_uri and a code_verifier whose
  S256 is the challenge (invalid_grant otherwise; a used code invalid_grant), the client by HTTP Basic for a
  confidential client (401 invalid_client otherwise), by `client_id` in the form for a public one;
  `refresh_token` likewise. Answer: access_token, token_type, expires_in, scope, patient, encounter, id_token
  (when `openid` was granted), refresh_token (when offline_access or online_access was granted).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote_plus, urlencode

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.smart.ehr_fhir import Answer

AUTHORIZE_PATH, TOKEN_PATH, JWKS_PATH = "/auth/authorize", "/auth/token", "/auth/jwks"
CODE_LIFETIME = 60  # seconds
ID_TOKEN_LIFETIME = 300  # seconds
_JSON = {"Content-Type": "application/json; charset=utf-8", "Cache-Control": "no-store"}
_TYPES = "Patient|Encounter|Practitioner|Media|DocumentReference|Observation|\\*"
V2_SCOPE = re.compile(rf"^(patient|user|system)/({_TYPES})\.c?r?u?d?s?$")
V1_SCOPE = re.compile(rf"^(patient|user|system)/({_TYPES})\.(read|write|\*)$")
PLAIN_SCOPES = {"launch", "launch/patient", "launch/encounter", "openid", "fhirUser", "profile"}
PLAIN_SCOPES |= {"offline_access", "online_access"}


class Redirect(Exception):
    """A 302 to `location` (raised from /authorize)."""

    def __init__(self, location: str) -> None:
        super().__init__(location)
        self.location = location


@dataclass
class Grant:
    """What a code, an access token or a refresh token stands for."""

    scope: list[str]
    patient: str | None
    encounter: str | None
    user: str | None  # "Practitioner/<id>" or None
    nonce: str | None = None
    challenge: str = ""
    redirect_uri: str = ""
    expires_at: float = 0.0
    used: bool = False


@dataclass
class Auth:
    """The authorization server's state (held under the double's lock)."""

    client_id: str
    client_secret: str | None
    redirect_uri: str
    permission: str = "v2"  # "v2", "v1" or "both": the scope names the server knows
    key: rsa.RSAPrivateKey = field(default_factory=lambda: rsa.generate_private_key(65537, 2048))
    kid: str = field(default_factory=lambda: secrets.token_hex(8))
    launches: dict[str, dict[str, str | None]] = field(default_factory=dict)
    codes: dict[str, Grant] = field(default_factory=dict)
    tokens: dict[str, Grant] = field(default_factory=dict)
    refresh_tokens: dict[str, Grant] = field(default_factory=dict)
    selected_patient: str | None = None
    selected_user: str | None = None
    deny: int = 0
    token_lifetime: int = 3600
    id_token_override: dict[str, Any] | None = None  # claims for the next id_token (None values removed)
    foreign_key_next: bool = False
    authorize_log: list[dict[str, str]] = field(default_factory=list)
    token_log: list[dict[str, Any]] = field(default_factory=list)

    # -- discovery -----------------------------------------------------------------------------------------

    def smart_configuration(self, root: str, iss: str) -> dict[str, Any]:
        """`{iss}/.well-known/smart-configuration` (SMART App Launch 2.x conformance.html)."""
        v1, v2 = self.permission in ("v1", "both"), self.permission in ("v2", "both")
        scopes = ["openid", "fhirUser", "launch", "launch/patient", "offline_access", "online_access"]
        if v2:
            scopes += ["patient/*.cruds", "user/*.cruds", "patient/Patient.rs", "patient/Media.c"]
        if v1:
            scopes += ["patient/*.read", "patient/*.write", "user/*.read", "patient/Patient.read"]
        capabilities = [
            "launch-ehr",
            "launch-standalone",
            "client-public",
            "client-confidential-symmetric",
            "context-ehr-patient",
            "context-ehr-encounter",
            "context-standalone-patient",
            "sso-openid-connect",
        ]
        capabilities += ["permission-v2"] * v2 + ["permission-v1"] * v1
        return {
            "issuer": iss,
            "jwks_uri": root + JWKS_PATH,
            "authorization_endpoint": root + AUTHORIZE_PATH,
            "token_endpoint": root + TOKEN_PATH,
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "none"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "scopes_supported": scopes,
            "response_types_supported": ["code"],
            "capabilities": capabilities,
            "code_challenge_methods_supported": ["S256"],
        }

    def jwks(self) -> dict[str, Any]:
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        return {"keys": [{**public, "kid": self.kid, "use": "sig", "alg": "RS256"}]}

    # -- /authorize ----------------------------------------------------------------------------------------

    def authorize(self, query: str, iss: str) -> None:
        """Raise Redirect (code or error) or Answer (400 page); see the module docstring."""
        params = {k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()}
        self.authorize_log.append(params)
        if params.get("client_id") != self.client_id:
            raise Answer(400, page("unknown client_id"), {"Content-Type": "text/html; charset=utf-8"})
        if params.get("redirect_uri") != self.redirect_uri:
            raise Answer(400, page("redirect_uri is not registered"), {"Content-Type": "text/html"})
        state = params.get("state", "")

        def back(**answer: str) -> Redirect:
            return Redirect(f"{self.redirect_uri}?{urlencode({**answer, 'state': state})}")

        scope = params.get("scope", "").split()
        if params.get("response_type") != "code":
            raise back(error="unsupported_response_type")
        if params.get("aud") != iss:
            raise back(error="invalid_request", error_description="aud must be this server's FHIR base")
        if params.get("code_challenge_method") != "S256" or not params.get("code_challenge"):
            raise back(error="invalid_request", error_description="PKCE with S256 is required")
        if unknown := [s for s in scope if not self._knows(s)]:
            raise back(error="invalid_scope", error_description=f"unknown scope {unknown[0]}")
        if self.deny > 0:
            self.deny -= 1
            raise back(error="access_denied", error_description="the user declined")
        if "launch" in params:
            context = self.launches.get(params["launch"])
            if context is None or "launch" not in scope:
                raise back(error="invalid_request", error_description="unknown launch, or no launch scope")
            patient, encounter, user = context["patient"], context["encounter"], context["user"]
        else:
            if "launch/patient" not in scope or self.selected_patient is None:
                raise back(error="invalid_request", error_description="no patient for a standalone launch")
            patient, encounter, user = self.selected_patient, None, self.selected_user
        code = secrets.token_urlsafe(24)
        self.codes[code] = Grant(
            scope=scope,
            patient=patient,
            encounter=encounter,
            user=user,
            nonce=params.get("nonce"),
            challenge=params["code_challenge"],
            redirect_uri=params["redirect_uri"],
            expires_at=time.time() + CODE_LIFETIME,
        )
        raise back(code=code)

    def _knows(self, scope: str) -> bool:
        if scope in PLAIN_SCOPES:
            return True
        v2 = self.permission in ("v2", "both") and V2_SCOPE.match(scope) and not scope.endswith("/")
        v1 = self.permission in ("v1", "both") and V1_SCOPE.match(scope)
        return bool(v2 or v1) and not scope.endswith(".")

    # -- /token --------------------------------------------------------------------------------------------

    def token(self, raw: bytes, authorization: str, iss: str) -> tuple[int, Any, dict[str, str]]:
        form = {k: v[0] for k, v in parse_qs(raw.decode("ascii", "replace")).items()}
        record: dict[str, Any] = {
            "grant_type": form.get("grant_type"),
            "code_verifier_ok": None,
            "redirect_uri": form.get("redirect_uri"),
            "client_auth": "none",
        }
        self.token_log.append(record)
        client = self._client(form, authorization, record)
        if client is not None:
            return (
                401,
                {"error": "invalid_client", "error_description": client},
                {
                    **_JSON,
                    "WWW-Authenticate": 'Basic realm="ehr-double"',
                },
            )
        if form.get("grant_type") == "authorization_code":
            grant = self.codes.get(form.get("code", ""))
            verifier = form.get("code_verifier", "")
            digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
            expected = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
            record["code_verifier_ok"] = grant is not None and secrets.compare_digest(
                expected, grant.challenge
            )
            if grant is None or grant.used or grant.expires_at < time.time():
                return _error("invalid_grant", "the code is unknown, used or expired")
            grant.used = True
            if grant.redirect_uri != form.get("redirect_uri"):
                return _error("invalid_grant", "redirect_uri differs from the authorization request")
            if not record["code_verifier_ok"]:
                return _error("invalid_grant", "code_verifier does not match the code_challenge")
        elif form.get("grant_type") == "refresh_token":
            grant = self.refresh_tokens.get(form.get("refresh_token", ""))
            if grant is None:
                return _error("invalid_grant", "the refresh token is unknown or revoked")
        else:
            return _error("unsupported_grant_type", "authorization_code or refresh_token")
        return 200, self._issue(grant, iss, form.get("grant_type") == "authorization_code"), _JSON

    def _client(self, form: dict[str, str], authorization: str, record: dict[str, Any]) -> str | None:
        """None when the client authenticated as registered; else why not."""
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "basic":
            record["client_auth"] = "client_secret_basic"
            try:
                user, _, password = base64.b64decode(value).decode().partition(":")
            except ValueError:
                return "malformed Basic credentials"
            if self.client_secret is None:
                return "this client is public: no secret expected"
            if unquote_plus(user) != self.client_id or unquote_plus(password) != self.client_secret:
                return "wrong client id or secret"
            return None
        if "client_secret" in form:
            record["client_auth"] = "client_secret_post"
            return "client_secret_post is not supported: use HTTP Basic"
        if self.client_secret is not None:
            return "a confidential client must authenticate with HTTP Basic"
        if form.get("client_id") != self.client_id:
            return "client_id missing or unknown"
        return None

    def _issue(self, grant: Grant, iss: str, with_id_token: bool) -> dict[str, Any]:
        access = secrets.token_urlsafe(32)
        self.tokens[access] = Grant(
            grant.scope,
            grant.patient,
            grant.encounter,
            grant.user,
            expires_at=time.time() + self.token_lifetime,
        )
        answer: dict[str, Any] = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": self.token_lifetime,
            "scope": " ".join(grant.scope),
        }
        if grant.patient:
            answer["patient"] = grant.patient
        if grant.encounter:
            answer["encounter"] = grant.encounter
        if {"offline_access", "online_access"} & set(grant.scope):
            refresh = secrets.token_urlsafe(32)
            self.refresh_tokens[refresh] = grant
            answer["refresh_token"] = refresh
        if with_id_token and "openid" in grant.scope:
            answer["id_token"] = self._id_token(grant, iss)
        return answer

    def _id_token(self, grant: Grant, iss: str) -> str:
        now = int(time.time())
        sub = (grant.user or "anonymous").replace("/", "-")
        claims: dict[str, Any] = {"iss": iss, "sub": sub, "aud": self.client_id, "iat": now}
        claims["exp"] = now + ID_TOKEN_LIFETIME
        if grant.nonce is not None:
            claims["nonce"] = grant.nonce
        if grant.user and "fhirUser" in grant.scope:
            claims["fhirUser"] = f"{iss}/{grant.user}"
        if self.id_token_override is not None:
            claims.update(self.id_token_override)
            claims = {k: v for k, v in claims.items() if v is not None}
            self.id_token_override = None
        key = self.key
        if self.foreign_key_next:
            key, self.foreign_key_next = rsa.generate_private_key(65537, 2048), False
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": self.kid})

    def bearer(self, authorization: str) -> Grant | None:
        """The grant of a valid, unexpired access token in `authorization`; None otherwise."""
        scheme, _, token = authorization.partition(" ")
        grant = self.tokens.get(token) if scheme.lower() == "bearer" else None
        if grant is None or grant.expires_at < time.time():
            return None
        return grant


def _error(code: str, description: str) -> tuple[int, Any, dict[str, str]]:
    return 400, {"error": code, "error_description": description}, _JSON


def page(text: str) -> str:
    """A tiny HTML error page (the double answers it as text/html)."""
    return f"<!doctype html><title>EHR double</title><h1>Bad request</h1><p>{text}</p>"
