"""Production clinician sign-in: OpenID Connect bearer JWTs verified against the issuer's JWKS.

When `CONSULTCAM_OIDC_ISSUER` and `CONSULTCAM_OIDC_AUDIENCE` are both set, a clinician's request carries
`Authorization: Bearer <JWT>` (RFC 6750 §2.1): an access token or ID token from the practice's identity
provider, typically put there by the EMR launch or by a sign-in proxy in front of consultcam.

What a token must be (RFC 7519 §7.2, RFC 8725 §3), checked in this order:

1. Shape: JWS compact serialization, three base64url segments joined by dots (RFC 7515 §7.1), at most
   `MAX_TOKEN_CHARS`. Phone credentials are dot-free random strings, so the shape alone tells them apart
   (`looks_like_jwt`).
2. Header `alg`: one of `CONSULTCAM_OIDC_ALGORITHMS` (default RS256, ES256). Only asymmetric algorithms can be
   configured: never `none` (RFC 8725 §3.2), never HS* — an HMAC "verified" with the issuer's *public* key is
   forgeable by anyone (RFC 8725 §3.1, the algorithm-confusion attack).
3. Key: the JWK whose `kid` the header names, from the issuer's JWK Set (RFC 7517 §5, §4.5). Its `kty`/`crv`
   must fit `alg`, and its `alg` and `use` (RFC 7517 §4.4, §4.2), when present, must agree: the key decides
   the algorithm, not the token. A token without `kid` is accepted only when exactly one published key fits.
4. Signature, then claims with a clock-skew leeway (`CONSULTCAM_OIDC_LEEWAY_SECONDS`, default 60):
   `iss` equal to the issuer (RFC 7519 §4.1.1), `aud` containing the audience (§4.1.3), `exp` required and not
   passed (§4.1.4), `nbf` and `iat` not in the future (§4.1.5, §4.1.6), and the clinician claim
   (`CONSULTCAM_OIDC_CLINICIAN_CLAIM`, default `sub`) present.

The JWK Set comes from `jwks_uri` in `<issuer>/.well-known/openid-configuration` (OpenID Connect Discovery 1.0
§4; the document's `issuer` must equal the configured one, §4.3), or from `CONSULTCAM_OIDC_JWKS_URL`. It is
fetched with httpx (timeout `CONSULTCAM_OIDC_HTTP_TIMEOUT_SECONDS`) and cached for
`CONSULTCAM_OIDC_JWKS_CACHE_SECONDS`; requests never fetch it while the cache is fresh. Key rotation: a `kid`
missing from a cached set makes one refetch, at most once per `REFETCH_COOLDOWN_SECONDS` (so random `kid`s
cannot turn consultcam into a flood against the identity provider). Concurrent requests share one fetch. When
a refresh fails, keys fetched less than `STALE_IF_ERROR_SECONDS` past their lifetime stay in use, so a short
identity-provider outage does not sign every clinician out.

Errors (the `{error, detail}` body of `consultcam.errors`; the token is never echoed or logged):

- `InvalidToken` 401 with `WWW-Authenticate: Bearer error="invalid_token", error_description="…"`
  (RFC 6750 §3, §3.1): the token is malformed, unsigned, wrongly signed, expired, not yet valid, for another
  issuer or audience, or signed by a key the issuer does not publish.
- `IdentityProviderUnavailable` 503 with `Retry-After`: discovery or the JWK Set could not be fetched or made
  no sense, and no usable cached keys remain. Never a 500.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Callable
from typing import Any

import httpx
import jwt
from jwt import PyJWK

from consultcam.auth.principals import Clinician
from consultcam.config import OIDC_ALGORITHMS, Settings, is_https_or_loopback
from consultcam.errors import ConsultcamError, NotAuthenticated

log = logging.getLogger(__name__)

#: Longer bearer values are refused before any parsing (identity-provider tokens are a few KiB at most).
MAX_TOKEN_CHARS = 16 * 1024
#: Largest discovery document or JWK Set read.
MAX_DOCUMENT_BYTES = 512 * 1024
#: At most one refetch per this many seconds for an unknown `kid`, and after a failed fetch.
REFETCH_COOLDOWN_SECONDS = 10.0
#: How long past their lifetime cached keys stay in use while the identity provider cannot be reached.
STALE_IF_ERROR_SECONDS = 3600.0
#: Longest clinician identifier kept (the audit trail's actor_id holds 200 characters, with "oidc:").
MAX_CLINICIAN_ID_CHARS = 190

_JWT_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")

#: The key a signature algorithm needs: (`kty`, `crv` or None for any), RFC 7518 §3.1 and RFC 8037 §3.1.
_KEY_FOR_ALGORITHM: dict[str, tuple[str, frozenset[str] | None]] = {
    **{alg: ("RSA", None) for alg in ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")},
    "ES256": ("EC", frozenset({"P-256"})),
    "ES384": ("EC", frozenset({"P-384"})),
    "ES512": ("EC", frozenset({"P-521"})),
    "EdDSA": ("OKP", frozenset({"Ed25519", "Ed448"})),
}


def looks_like_jwt(token: str) -> bool:
    """True when `token` has the JWS compact shape `header.payload.signature` (RFC 7515 §7.1): three
    base64url segments, the last possibly empty (an unsigned `alg: none` token, refused later)."""
    return len(token) <= MAX_TOKEN_CHARS and _JWT_SHAPE.fullmatch(token) is not None


def _header_safe(text: str) -> str:
    """`text` within RFC 6750 §3's error_description characters (%x20-21 / %x23-5B / %x5D-7E)."""
    return "".join(c if " " <= c <= "~" and c not in '"\\' else ("'" if c == '"' else "?") for c in text)


class InvalidToken(NotAuthenticated):
    """401: the bearer JWT was refused; `reason` says why, without echoing the token (RFC 6750 §3.1)."""

    error = "InvalidToken"

    def __init__(self, reason: str) -> None:
        super().__init__(
            f"{reason} Sign in again through your practice's identity provider and send the new token as "
            "Authorization: Bearer <token>."
        )
        self.reason = reason
        self.headers = {
            "WWW-Authenticate": f'Bearer error="invalid_token", error_description="{_header_safe(reason)}"'
        }


class IdentityProviderUnavailable(ConsultcamError):
    """503: the issuer's discovery document or JWK Set cannot be had, so no token can be checked."""

    status, error = 503, "IdentityProviderUnavailable"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.headers = {"Retry-After": "30"}


class _FetchFailed(Exception):
    """A discovery or JWKS fetch failed; the message names what and why (no secrets in it)."""


class OIDCVerifier:
    """Verifies clinicians' bearer JWTs for one issuer and audience; one per web app (`from_settings`).

    `verify(token)` returns the `Clinician` (`id` = "oidc:<clinician claim>", `name` from the `name` claim) or
    raises `InvalidToken` (401) / `IdentityProviderUnavailable` (503). `jwks_fetches` counts JWKS fetches.
    `clock` (monotonic seconds) drives the cache only; claim times are checked against the wall clock.
    """

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        algorithms: tuple[str, ...] = ("RS256", "ES256"),
        leeway_seconds: int = 60,
        clinician_claim: str = "sub",
        jwks_url: str = "",
        jwks_cache_seconds: float = 300,
        http_timeout_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        refused = set(algorithms) - OIDC_ALGORITHMS
        if refused or not algorithms:
            raise ValueError(f"OIDC algorithms must be asymmetric ones of {sorted(OIDC_ALGORITHMS)}")
        for url in (issuer, jwks_url):
            if url and not is_https_or_loopback(url):
                raise ValueError(f"{url!r} must be https:// (http:// only to loopback)")
        self.issuer = issuer
        self.audience = audience
        self.algorithms = tuple(algorithms)
        self.leeway = leeway_seconds
        self.clinician_claim = clinician_claim
        self.cache_seconds = jwks_cache_seconds
        self.timeout = httpx.Timeout(http_timeout_seconds)
        self.jwks_fetches = 0
        self._configured_jwks_url = jwks_url
        self._jwks_url = jwks_url  # from the setting, or discovered (and forgotten when it fails)
        self._clock = clock
        self._lock = asyncio.Lock()
        self._keys: list[dict[str, Any]] | None = None
        self._parsed: dict[tuple[int, str], PyJWK] = {}
        self._fetched_at = 0.0
        self._generation = 0  # bumped by every successful fetch
        self._failed_at: float | None = None
        self._failure = ""
        self._kid_refetch_at: float | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> OIDCVerifier | None:
        """The verifier for `CONSULTCAM_OIDC_*`, or None when OIDC is not configured."""
        if not settings.oidc_enabled:
            return None
        return cls(
            issuer=settings.oidc_issuer,
            audience=settings.oidc_audience,
            algorithms=settings.oidc_algorithms,
            leeway_seconds=settings.oidc_leeway_seconds,
            clinician_claim=settings.oidc_clinician_claim,
            jwks_url=settings.oidc_jwks_url,
            jwks_cache_seconds=settings.oidc_jwks_cache_seconds,
            http_timeout_seconds=settings.oidc_http_timeout_seconds,
        )

    # --- verification -------------------------------------------------------------------------------

    async def verify(self, token: str) -> Clinician:
        """The clinician a bearer JWT proves; raises InvalidToken (401), IdentityProviderUnavailable (503)."""
        if not looks_like_jwt(token):
            raise InvalidToken("The bearer token is not a JWT (three base64url parts joined by dots).")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("The token's header could not be read.") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or not alg or alg.lower() == "none":
            raise InvalidToken("The token is not signed (alg none); only signed tokens are accepted.")
        if alg not in self.algorithms:
            accepted = ", ".join(self.algorithms)
            raise InvalidToken(
                f"The token's signature algorithm is not accepted here (accepted: {accepted})."
            )
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise InvalidToken("The token's key id (kid) is not a string.")
        key = await self._signing_key(kid, alg)
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=[alg],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp", "iss", "aud"], "enforce_minimum_key_length": True},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(self._reason(exc)) from None
        return self._clinician(claims)

    def _reason(self, exc: jwt.PyJWTError) -> str:
        """What was wrong, in words for the 401 (PyJWT checks the signature before any claim)."""
        if isinstance(exc, jwt.InvalidSignatureError):
            return "The token's signature does not verify with the identity provider's key."
        if isinstance(exc, jwt.ExpiredSignatureError):
            return "The token has expired (exp)."
        if isinstance(exc, jwt.ImmatureSignatureError):
            claim = "iat" if "(iat)" in str(exc) else "nbf"
            return f"The token is not valid yet ({claim} is in the future, beyond the allowed clock skew)."
        if isinstance(exc, jwt.InvalidIssuerError):
            return f"The token was not issued by {self.issuer} (iss)."
        if isinstance(exc, jwt.InvalidAudienceError):
            return f"The token is not meant for this server: its audience (aud) lacks {self.audience}."
        if isinstance(exc, jwt.MissingRequiredClaimError):
            return f"The token has no '{exc.claim}' claim."
        if isinstance(exc, jwt.InvalidKeyError):
            return "The identity provider's key for this token is not acceptable (too short or malformed)."
        if isinstance(exc, jwt.InvalidAlgorithmError):
            return "The token's algorithm does not match its signing key."
        return "The token is malformed or one of its claims is invalid."

    def _clinician(self, claims: dict[str, Any]) -> Clinician:
        value = claims.get(self.clinician_claim)
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if (
            not isinstance(value, str)
            or not value.strip()
            or len(value) > MAX_CLINICIAN_ID_CHARS
            or not value.isprintable()
        ):
            raise InvalidToken(
                f"The token's '{self.clinician_claim}' claim is missing or does not identify a clinician."
            )
        name = claims.get("name")
        display = " ".join(name.split())[:200] if isinstance(name, str) else ""
        return Clinician(id=f"oidc:{value}", name=display or None)

    # --- keys ---------------------------------------------------------------------------------------

    async def _signing_key(self, kid: str | None, alg: str) -> PyJWK:
        generation = self._generation
        keys = await self._current_keys()
        index, problem = self._pick(keys, kid, alg)
        fetched_just_now = self._generation != generation
        if index is None and problem is None and not fetched_just_now and self._may_refetch_for_kid():
            self._kid_refetch_at = self._clock()
            keys = await self._current_keys(force=True)
            index, problem = self._pick(keys, kid, alg)
        if index is None:
            raise InvalidToken(
                problem or "The token's signing key (kid) is not one the identity provider publishes."
            )
        cached = self._parsed.get((index, alg))
        if cached is None:
            try:
                cached = PyJWK(keys[index], algorithm=alg)
            except jwt.PyJWTError:
                log.warning("the identity provider's key %r cannot be used for %s", kid, alg)
                raise InvalidToken("The identity provider's key for this token could not be used.") from None
            self._parsed[(index, alg)] = cached
        return cached

    def _may_refetch_for_kid(self) -> bool:
        last = self._kid_refetch_at
        return last is None or self._clock() - last >= REFETCH_COOLDOWN_SECONDS

    @staticmethod
    def _pick(keys: list[dict[str, Any]], kid: str | None, alg: str) -> tuple[int | None, str | None]:
        """(index of the key for `kid` and `alg`, None) or (None, why not); (None, None) means unknown kid."""
        kty, curves = _KEY_FOR_ALGORITHM[alg]

        def fits(jwk: dict[str, Any]) -> bool:
            ops = jwk.get("key_ops")
            return (
                jwk.get("kty") == kty
                and (curves is None or jwk.get("crv") in curves)
                and jwk.get("alg", alg) == alg
                and jwk.get("use", "sig") == "sig"
                and (not isinstance(ops, list) or "verify" in ops)
            )

        if kid is None:
            fitting = [i for i, jwk in enumerate(keys) if fits(jwk)]
            if len(fitting) == 1:
                return fitting[0], None
            return None, "The token names no signing key (kid) and the identity provider publishes several."
        named = [i for i, jwk in enumerate(keys) if jwk.get("kid") == kid]
        if not named:
            return None, None
        fitting = [i for i in named if fits(keys[i])]
        if not fitting:
            return None, "The token's algorithm does not fit its signing key (RFC 8725 section 3.1)."
        return fitting[0], None

    async def _current_keys(self, *, force: bool = False) -> list[dict[str, Any]]:
        """The cached keys while fresh (and not `force`d), else fetched once for all waiting requests."""
        if not force and self._fresh() and self._keys is not None:
            return self._keys
        generation = self._generation
        async with self._lock:
            if self._generation != generation and self._keys is not None:
                return self._keys  # another request fetched while this one waited
            if not force and self._fresh() and self._keys is not None:
                return self._keys
            now = self._clock()
            if self._failed_at is not None and now - self._failed_at < REFETCH_COOLDOWN_SECONDS:
                return self._stale_or_unavailable(self._failure)
            try:
                keys = await self._fetch_keys()
            except _FetchFailed as exc:
                self._failed_at, self._failure = self._clock(), str(exc)
                log.warning("OIDC: %s", exc)
                return self._stale_or_unavailable(str(exc))
            self._keys, self._parsed = keys, {}
            self._fetched_at, self._failed_at = self._clock(), None
            self._generation += 1
            return keys

    def _fresh(self) -> bool:
        return self._keys is not None and self._clock() - self._fetched_at < self.cache_seconds

    def _stale_or_unavailable(self, failure: str) -> list[dict[str, Any]]:
        usable_for = self.cache_seconds + STALE_IF_ERROR_SECONDS
        if self._keys is not None and self._clock() - self._fetched_at < usable_for:
            return self._keys
        raise IdentityProviderUnavailable(
            f"Cannot check your sign-in right now: {failure}. Try again in a minute; if it keeps happening, "
            f"tell your practice IT support that the identity provider {self.issuer} cannot be reached."
        )

    async def _fetch_keys(self) -> list[dict[str, Any]]:
        """The JWK Set's keys (RFC 7517 §5), discovering `jwks_uri` first when it is not known."""
        if not self._jwks_url:
            self._jwks_url = await self._discover()
        url = self._jwks_url
        self.jwks_fetches += 1
        try:
            document = await self._get_json(url, "the JWKS")
        except _FetchFailed:
            if not self._configured_jwks_url:
                self._jwks_url = ""  # discover again next time: the provider may have moved it
            raise
        keys = document.get("keys")
        if not isinstance(keys, list):
            raise _FetchFailed(f"the JWKS at {url} has no 'keys' list")
        usable = [k for k in keys if isinstance(k, dict) and isinstance(k.get("kty"), str)]
        if not usable:
            raise _FetchFailed(f"the JWKS at {url} publishes no keys")
        return usable

    async def _discover(self) -> str:
        """`jwks_uri` from the issuer's OpenID Provider Configuration (OpenID Connect Discovery 1.0 §4)."""
        url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
        document = await self._get_json(url, "the discovery document")
        if document.get("issuer") != self.issuer:
            raise _FetchFailed(
                f"the discovery document at {url} names another issuer than CONSULTCAM_OIDC_ISSUER (§4.3)"
            )
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not is_https_or_loopback(jwks_uri):
            raise _FetchFailed(f"the discovery document at {url} has no https jwks_uri")
        return jwks_uri

    async def _get_json(self, url: str, what: str) -> dict[str, Any]:
        """GET a JSON object of at most MAX_DOCUMENT_BYTES; redirects are not followed."""
        body = bytearray()
        try:
            async with (
                httpx.AsyncClient(timeout=self.timeout, follow_redirects=False) as client,
                client.stream("GET", url, headers={"Accept": "application/json"}) as response,
            ):
                if response.status_code != 200:
                    raise _FetchFailed(f"{what} at {url} answered HTTP {response.status_code}")
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_DOCUMENT_BYTES:
                        raise _FetchFailed(f"{what} at {url} is larger than {MAX_DOCUMENT_BYTES} bytes")
        except httpx.HTTPError as exc:
            raise _FetchFailed(f"{what} at {url} could not be fetched ({type(exc).__name__})") from None
        try:
            document = json.loads(body)
        except ValueError:
            raise _FetchFailed(f"{what} at {url} is not JSON") from None
        if not isinstance(document, dict):
            raise _FetchFailed(f"{what} at {url} is not a JSON object")
        return document
