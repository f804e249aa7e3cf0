"""The OpenID Connect authorization code flow with PKCE, as a confidential client (issue 13): the protocol
half, done by Authlib's framework-free parts (the grant URI and token request, client authentication,
`authlib.oidc.core.CodeIDToken`) and joserfc (its JWT library) over httpx. No web framework,
no database: `consultcam.auth.oidc_signin` keeps the pending requests and starts the sign-in.

What it does, and the rules it follows:

- Discovery (OpenID Connect Discovery 1.0 §4): `<issuer>/.well-known/openid-configuration`, cached for
  CONSULTCAM_OIDC_JWKS_CACHE_SECONDS; its `issuer` must equal CONSULTCAM_OIDC_ISSUER exactly (§4.3), and
  every endpoint must be https (http only to loopback).
- The authorization request (OIDC Core §3.1.2.1): `response_type=code`, `scope=openid profile` (+ `fhirUser`
  when the provider lists it in `scopes_supported`), `state`, `nonce`, and PKCE S256 (RFC 7636 §4.2).
- The code exchange (OIDC Core §3.1.3): client authentication `client_secret_basic`, or `client_secret_post`
  when the provider's `token_endpoint_auth_methods_supported` lists only that (RFC 8414 §2; absent means
  basic), with the PKCE `code_verifier`.
- The ID Token (OIDC Core §3.1.3.7): signature by a key of the provider's `jwks_uri` with an algorithm of
  CONSULTCAM_OIDC_ALGORITHMS; `iss` the issuer, `aud` containing the client id (`azp` the client id when
  there are others), `exp` not passed and `iat` present (leeway CONSULTCAM_OIDC_LEEWAY_SECONDS), `nonce`
  the one sent, `at_hash` matching the access token when present.
- Claims: the clinician claim (CONSULTCAM_OIDC_CLINICIAN_CLAIM, default `sub`), `name`, `fhirUser` from the
  ID Token, else from the UserInfo endpoint (§5.3), whose `sub` must be the ID Token's (§5.3.2).
- RP-Initiated Logout 1.0 §2: the provider's `end_session_endpoint` with `id_token_hint`, `client_id` and
  `post_logout_redirect_uri`.

Errors: `LoginRefused` (what the provider answered or what did not verify; `reason` a stable code) and
`ProviderUnavailable` (the provider could not be reached or answered nonsense). Messages never carry a
token, a code or the client secret.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import httpx
from authlib.oauth2.auth import ClientAuth
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri, prepare_token_request
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from authlib.oidc.core import CodeIDToken
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry

from consultcam.config import Settings, is_https_or_loopback

log = logging.getLogger(__name__)

#: Longest claim value kept (the audit trail's actor_id holds 200 characters, with "oidc:").
MAX_CLAIM_CHARS = 190


class LoginRefused(Exception):
    """The sign-in cannot complete: `reason` is a stable code ("access-denied", "token-refused",
    "id-token-invalid", "nonce-mismatch", "no-subject"), the message says what happened in plain words."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class ProviderUnavailable(Exception):
    """The identity provider could not be reached or answered something unusable (`reason`:
    "unreachable", "issuer-mismatch", "bad-metadata")."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Identity:
    """Who signed in: `subject` (the clinician claim's value), `name` (may be None), `fhir_user` (e.g.
    "Practitioner/123", None when the provider gave none), and the raw `id_token` (for logout's
    `id_token_hint` only; never logged)."""

    subject: str
    name: str | None
    fhir_user: str | None
    id_token: str


class OIDCLogin:
    """One confidential client of one OpenID Provider (`from_settings`); shared by every request of a web
    process, so discovery and keys are fetched once per cache period."""

    def __init__(self, settings: Settings) -> None:
        secret = settings.oidc_client_secret
        self.issuer = settings.oidc_issuer
        self.client_id = settings.oidc_client_id
        self._secret = secret.get_secret_value() if secret is not None else ""
        self.algorithms = list(settings.oidc_algorithms)
        self.leeway = settings.oidc_leeway_seconds
        self.claim = settings.oidc_clinician_claim
        self.cache_seconds = settings.oidc_jwks_cache_seconds
        self.timeout = settings.oidc_http_timeout_seconds
        self._metadata: dict[str, Any] | None = None
        self._metadata_at = 0.0
        self._keys: KeySet | None = None
        self._lock = asyncio.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> OIDCLogin | None:
        """The client for CONSULTCAM_OIDC_*, or None when browser sign-in by OIDC is not configured."""
        return cls(settings) if settings.oidc_login_enabled else None

    def _client_auth(self, metadata: dict[str, Any]) -> ClientAuth:
        """client_secret_basic unless the provider lists only client_secret_post (RFC 8414 §2: absent
        means basic)."""
        methods = metadata.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
        method = "client_secret_basic" if "client_secret_basic" in methods else "client_secret_post"
        return ClientAuth(self.client_id, self._secret, method)

    async def metadata(self, *, refresh: bool = False) -> dict[str, Any]:
        """The provider's configuration and keys (cached; `refresh`: fetched again now). Raises
        ProviderUnavailable."""
        async with self._lock:
            fresh = time.monotonic() - self._metadata_at < self.cache_seconds
            if self._metadata is not None and fresh and not refresh:
                return self._metadata
            url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
            document = await self._get_json(url, "its discovery document")
            if document.get("issuer") != self.issuer:
                raise ProviderUnavailable(
                    "issuer-mismatch",
                    f"The identity provider at {url} calls itself {str(document.get('issuer'))[:200]!r}, not "
                    f"{self.issuer!r} (CONSULTCAM_OIDC_ISSUER must be its exact issuer).",
                )
            for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
                value = document.get(name)
                if not isinstance(value, str) or not is_https_or_loopback(value):
                    raise ProviderUnavailable(
                        "bad-metadata", f"The identity provider's discovery document has no https {name}."
                    )
            keys = await self._get_json(document["jwks_uri"], "its keys (jwks_uri)")
            try:
                self._keys = KeySet.import_key_set(keys)  # type: ignore[arg-type]
            except (JoseError, ValueError, TypeError, KeyError):
                raise ProviderUnavailable(
                    "bad-metadata", "The identity provider's keys cannot be read."
                ) from None
            self._metadata, self._metadata_at = document, time.monotonic()
            return document

    async def authorization_url(
        self, redirect_uri: str, *, state: str, nonce: str, code_verifier: str
    ) -> str:
        """The URL to send the browser to (OIDC Core §3.1.2.1, RFC 7636 S256). Raises ProviderUnavailable."""
        metadata = await self.metadata()
        offered = metadata.get("scopes_supported") or []
        scope = "openid profile" + (" fhirUser" if "fhirUser" in offered else "")
        url = prepare_grant_uri(
            metadata["authorization_endpoint"],
            self.client_id,
            "code",
            redirect_uri=redirect_uri,
            scope=scope,
            state=state,
            nonce=nonce,
            code_challenge=create_s256_code_challenge(code_verifier),
            code_challenge_method="S256",
        )
        return str(url)

    async def exchange(self, redirect_uri: str, *, code: str, code_verifier: str, nonce: str) -> Identity:
        """Redeem `code` at the token endpoint and verify its ID Token. Raises LoginRefused,
        ProviderUnavailable."""
        metadata = await self.metadata()
        body = prepare_token_request(
            "authorization_code", code=code, redirect_uri=redirect_uri, code_verifier=code_verifier
        )
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
        url, headers, body = self._client_auth(metadata).prepare(
            "POST", metadata["token_endpoint"], headers, body
        )
        async with httpx.AsyncClient(timeout=self.timeout, follow_redirects=False) as client:
            try:
                response = await client.post(url, headers=headers, content=body)
                token = response.json()
            except (httpx.HTTPError, ValueError) as exc:
                raise ProviderUnavailable(
                    "unreachable",
                    f"The identity provider's token endpoint could not be used ({type(exc).__name__}).",
                ) from None
            if not isinstance(token, dict) or response.status_code != 200 or "error" in token:
                error = token.get("error") if isinstance(token, dict) else None
                raise LoginRefused(
                    "token-refused",
                    f"The identity provider refused to complete the sign-in ({_word(error)}): the sign-in "
                    "answer was already used, is too old, or was not made for this sign-in.",
                )
            if not self._has_key_for(token.get("id_token")):
                await self.metadata(refresh=True)  # key rotation: the provider signs with a new key
            claims = self._verify_id_token(token, nonce)
            userinfo = metadata.get("userinfo_endpoint")
            if (claims.get("name") is None or claims.get("fhirUser") is None) and isinstance(userinfo, str):
                access = token.get("access_token")
                if isinstance(access, str):
                    claims = {**(await self._userinfo(client, userinfo, access, claims["sub"])), **claims}
        subject = claims.get(self.claim)
        if isinstance(subject, int) and not isinstance(subject, bool):
            subject = str(subject)
        if not isinstance(subject, str) or not subject.strip() or len(subject) > MAX_CLAIM_CHARS:
            raise LoginRefused("no-subject", f"The identity provider did not say who you are ({self.claim}).")
        return Identity(
            subject=subject,
            name=_text(claims.get("name"), 200),
            fhir_user=_text(claims.get("fhirUser"), 500),
            id_token=str(token["id_token"]),
        )

    def _has_key_for(self, id_token: object) -> bool:
        """Whether the cached keys include the one the token's header names (`kid`), or it names none."""
        if not isinstance(id_token, str) or self._keys is None:
            return True
        try:
            kid = jws.extract_compact(id_token.encode()).headers().get("kid")
        except (JoseError, ValueError):
            return True  # malformed: verification says so
        return kid is None or any(key.kid == kid for key in self._keys.keys)

    def _verify_id_token(self, token: dict[str, Any], nonce: str) -> dict[str, Any]:
        raw = token.get("id_token")
        if not isinstance(raw, str) or self._keys is None:
            raise LoginRefused("id-token-invalid", "The identity provider sent no ID Token.")
        try:
            decoded = jwt.decode(raw, self._keys, registry=JWSRegistry(algorithms=self.algorithms))
            claims = CodeIDToken(
                decoded.claims,
                decoded.header,
                {
                    "iss": {"essential": True, "value": self.issuer},
                    "aud": {"essential": True, "value": self.client_id},
                },
                {"nonce": nonce, "client_id": self.client_id, "access_token": token.get("access_token")},
            )
            claims.validate(leeway=self.leeway)
        except JoseError as exc:
            if getattr(exc, "claim", None) == "nonce" or "nonce" in str(exc):
                raise LoginRefused(
                    "nonce-mismatch",
                    "The sign-in answer was made for another sign-in request (its nonce differs).",
                ) from None
            raise LoginRefused(
                "id-token-invalid", f"The identity provider's ID Token did not verify ({exc.error})."
            ) from None
        return dict(claims)

    async def _userinfo(
        self, client: httpx.AsyncClient, url: str, access_token: str, subject: str
    ) -> dict[str, Any]:
        if not is_https_or_loopback(url):
            return {}
        try:
            response = await client.get(
                url, headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"}
            )
            data = response.json() if response.status_code == 200 else {}
        except (httpx.HTTPError, ValueError):
            log.warning("OIDC: the UserInfo endpoint could not be read; signing in without a name")
            return {}
        if not isinstance(data, dict) or data.get("sub") != subject:
            return {}  # OIDC Core §5.3.2: a UserInfo for another subject must not be used
        return data

    async def end_session_url(self, id_token: str | None, post_logout_redirect_uri: str) -> str | None:
        """The provider's end-session URL (RP-Initiated Logout 1.0 §2), or None when it offers none or
        cannot be reached (signing out here must not wait on it)."""
        try:
            metadata = await self.metadata()
        except ProviderUnavailable:
            return None
        endpoint = metadata.get("end_session_endpoint")
        if not isinstance(endpoint, str) or not is_https_or_loopback(endpoint):
            return None
        params = {"client_id": self.client_id, "post_logout_redirect_uri": post_logout_redirect_uri}
        if id_token:
            params["id_token_hint"] = id_token
        return str(httpx.URL(endpoint, params=params))

    async def _get_json(self, url: str, what: str) -> dict[str, Any]:
        try:
            async with httpx.AsyncClient(timeout=self.timeout, follow_redirects=False) as client:
                response = await client.get(url, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(
                "unreachable",
                f"The identity provider {self.issuer} could not be reached for {what} "
                f"({type(exc).__name__}).",
            ) from None
        try:
            document = response.json() if response.status_code == 200 else None
        except ValueError:
            document = None
        if not isinstance(document, dict):
            raise ProviderUnavailable(
                "bad-metadata",
                f"The identity provider answered {what} with HTTP {response.status_code}, not JSON.",
            )
        return document


def _word(value: object) -> str:
    """An OAuth error code as safe to show (RFC 6749 §5.2 codes are %x20-21 / %x23-5B / %x5D-7E)."""
    text = value if isinstance(value, str) else "no error code"
    return "".join(c for c in text[:60] if c.isalnum() or c in "_- ") or "no error code"


def _text(value: object, limit: int) -> str | None:
    """A claim as one line of at most `limit` characters, or None."""
    if not isinstance(value, str):
        return None
    text = " ".join(value.split())[:limit]
    return text or None
