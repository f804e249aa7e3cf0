"""Production clinician sign-in: OIDC bearer JWTs checked against a real identity provider stand-in.

The tests make their own RSA and EC keys and serve a real OpenID Provider Configuration (OpenID Connect
Discovery 1.0 §4) and JWK Set (RFC 7517 §5) from an HTTP server on a free loopback port; nothing in the
verification is mocked. Each refused token must be 401 with `WWW-Authenticate: Bearer error="invalid_token"`
(RFC 6750 §3.1) and never echo the token; an unreachable issuer 503; phones keep working.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from pydantic import ValidationError
from sqlalchemy import select

from consultcam.auth.oidc import (
    _KEY_FOR_ALGORITHM,
    REFETCH_COOLDOWN_SECONDS,
    STALE_IF_ERROR_SECONDS,
    IdentityProviderUnavailable,
    InvalidToken,
    OIDCVerifier,
    looks_like_jwt,
)
from consultcam.config import OIDC_ALGORITHMS, Settings
from consultcam.models import AuditEvent
from tests.conftest import CLINICIAN_TOKEN, PATIENT, assert_error, jpeg_bytes, pair_phone, token_of, upload

AUDIENCE = "consultcam-api"
SUBJECT = "hpi-47ABCD"
REALM = "/realms/practice"
DISCOVERY = f"{REALM}/.well-known/openid-configuration"
JWKS = f"{REALM}/protocol/openid-connect/certs"


# --- the identity provider stand-in -------------------------------------------------------------------


class IdentityProvider:
    """What the HTTP server serves: `keys` (public JWKs) at JWKS, and counts every hit by path."""

    def __init__(self, port: int) -> None:
        self.issuer = f"http://127.0.0.1:{port}{REALM}"
        self.keys: list[dict[str, Any]] = []
        self.hits: Counter[str] = Counter()
        self.failing = False
        self.discovery_issuer: str | None = None  # None: the real issuer

    def reset(self) -> None:
        self.keys, self.hits, self.failing, self.discovery_issuer = [], Counter(), False, None

    @property
    def jwks_hits(self) -> int:
        return self.hits[JWKS]


class _Handler(BaseHTTPRequestHandler):
    server: Any

    def do_GET(self) -> None:
        idp: IdentityProvider = self.server.idp
        idp.hits[self.path] += 1
        if idp.failing:
            self._send(500, {"error": "server_error"})
        elif self.path == DISCOVERY:
            issuer = idp.discovery_issuer or idp.issuer
            self._send(
                200, {"issuer": issuer, "jwks_uri": f"http://127.0.0.1:{self.server.server_port}{JWKS}"}
            )
        elif self.path == JWKS:
            self._send(200, {"keys": idp.keys})
        else:
            self._send(404, {"error": "not_found"})

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture(scope="module")
def idp_server() -> Iterator[IdentityProvider]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.idp = IdentityProvider(server.server_port)  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.idp  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()
    thread.join()


class Key:
    """A signing key pair with its public JWK (`kid`, `use`, `alg`)."""

    def __init__(self, private: Any, kid: str, alg: str) -> None:
        self.private, self.kid, self.alg = private, kid, alg
        algorithm = RSAAlgorithm if isinstance(private, rsa.RSAPrivateKey) else ECAlgorithm
        self.jwk = {
            **algorithm.to_jwk(private.public_key(), as_dict=True),
            "kid": kid,
            "use": "sig",
            "alg": alg,
        }

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


@pytest.fixture(scope="module")
def rsa_key() -> Key:
    return Key(rsa.generate_private_key(public_exponent=65537, key_size=2048), "rsa-2026-01", "RS256")


@pytest.fixture(scope="module")
def ec_key() -> Key:
    return Key(ec.generate_private_key(ec.SECP256R1()), "ec-2026-01", "ES256")


@pytest.fixture(scope="module")
def next_key() -> Key:
    return Key(rsa.generate_private_key(public_exponent=65537, key_size=2048), "rsa-2026-07", "RS256")


@pytest.fixture
def idp(idp_server: IdentityProvider, rsa_key: Key, ec_key: Key) -> IdentityProvider:
    """The identity provider publishing the RSA and EC keys, with its hit counts at zero."""
    idp_server.reset()
    idp_server.keys = [rsa_key.jwk, ec_key.jwk]
    return idp_server


def claims(idp: IdentityProvider, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    values = {
        "iss": idp.issuer,
        "aud": [AUDIENCE, "account"],
        "sub": SUBJECT,
        "name": "Dr Aroha Ngata",
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        **changes,
    }
    return {k: v for k, v in values.items() if v is not None}


def sign(key: Key, payload: dict[str, Any], **header: Any) -> str:
    return jwt.encode(payload, key.private, algorithm=key.alg, headers={"kid": key.kid, **header})


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def handmade(header: dict[str, Any], payload: dict[str, Any], secret: bytes | None) -> str:
    """A JWS built by hand, for what PyJWT refuses to make: `alg: none`, or HS256 keyed with a public key."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}"
    signature = b"" if secret is None else hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


# --- the app with OIDC on -----------------------------------------------------------------------------


@pytest.fixture
def oidc_extra() -> dict[str, Any]:
    """More settings for one test: `@pytest.mark.parametrize("oidc_extra", [{...}])`."""
    return {}


@pytest.fixture
def settings_overrides(idp: IdentityProvider, oidc_extra: dict[str, Any]) -> dict[str, Any]:
    """conftest's `settings` (and so `app`, `new_client`) with OIDC configured against the stand-in; a
    callable in `oidc_extra` is given the identity provider."""
    extra = {k: v(idp) if callable(v) else v for k, v in oidc_extra.items()}
    return {"oidc_issuer": idp.issuer, "oidc_audience": AUDIENCE, **extra}


async def create_session(new_client: Any, token: str, encounter: str = "enc-1") -> httpx.Response:
    async with new_client(authorization=f"Bearer {token}") as client:
        return await client.post("/api/sessions", json={"encounterId": encounter, "patient": PATIENT})


def assert_invalid_token(response: httpx.Response, token: str, *words: str) -> dict[str, Any]:
    body = assert_error(response, 401, "InvalidToken", *words)
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer error="invalid_token", error_description="'), challenge
    assert challenge.endswith('"'), challenge
    assert challenge.count('"') == 4, challenge  # RFC 6750 §3: nothing in the description breaks quoting
    assert token not in response.text
    assert token not in challenge
    for part in token.split("."):
        assert len(part) < 8 or part not in response.text
    return body


async def audit_actors(runtime: Any, action: str) -> list[tuple[str, str]]:
    async with runtime.sessionmaker() as db:
        rows = await db.execute(
            select(AuditEvent.actor_type, AuditEvent.actor_id).where(AuditEvent.action == action)
        )
        return [(kind, actor) for kind, actor in rows.all()]


# --- valid tokens --------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["rsa", "ec"])
async def test_a_valid_token_creates_a_session_audited_as_its_subject(
    which: str, idp: IdentityProvider, rsa_key: Key, ec_key: Key, new_client: Any, runtime: Any
) -> None:
    key = rsa_key if which == "rsa" else ec_key
    response = await create_session(new_client, sign(key, claims(idp)))
    assert response.status_code == 201, response.text
    assert await audit_actors(runtime, "session.created") == [("clinician", f"oidc:{SUBJECT}")]
    assert idp.hits == Counter({DISCOVERY: 1, JWKS: 1})


async def test_the_principal_carries_the_name_and_the_configured_claim(
    idp: IdentityProvider, rsa_key: Key
) -> None:
    verifier = OIDCVerifier(issuer=idp.issuer, audience=AUDIENCE, clinician_claim="hpi_cpn")
    clinician = await verifier.verify(
        sign(rsa_key, claims(idp, hpi_cpn="99ZZZZ", name="  Dr  Aroha\tNgata "))
    )
    assert (clinician.id, clinician.name, clinician.kind) == ("oidc:99ZZZZ", "Dr Aroha Ngata", "clinician")
    nameless = await verifier.verify(sign(rsa_key, claims(idp, hpi_cpn="99ZZZZ", name=None)))
    assert nameless.name is None
    with pytest.raises(InvalidToken, match="hpi_cpn"):
        await verifier.verify(sign(rsa_key, claims(idp)))  # no hpi_cpn claim: no clinician


async def test_a_single_audience_string_and_a_token_without_kid_pass(
    idp: IdentityProvider, rsa_key: Key, ec_key: Key
) -> None:
    verifier = OIDCVerifier(issuer=idp.issuer, audience=AUDIENCE)
    assert (await verifier.verify(sign(rsa_key, claims(idp, aud=AUDIENCE)))).id == f"oidc:{SUBJECT}"
    # No kid: exactly one published key fits ES256 (the EC one), so it is the key.
    no_kid = jwt.encode(claims(idp), ec_key.private, algorithm="ES256")
    assert "kid" not in jwt.get_unverified_header(no_kid)
    assert (await verifier.verify(no_kid)).id == f"oidc:{SUBJECT}"


async def test_leeway_is_honoured(idp: IdentityProvider, rsa_key: Key, new_client: Any) -> None:
    now = int(time.time())
    # exp 30 s ago, nbf and iat 30 s ahead: within the 60 s default clock skew.
    skewed = sign(rsa_key, claims(idp, exp=now - 30, nbf=now + 30, iat=now + 30))
    assert (await create_session(new_client, skewed)).status_code == 201
    too_late = sign(rsa_key, claims(idp, exp=now - 90))
    assert_invalid_token(await create_session(new_client, too_late, "enc-2"), too_late, "expired")


@pytest.mark.parametrize("oidc_extra", [{"oidc_leeway_seconds": 0}])
async def test_leeway_is_configurable(idp: IdentityProvider, rsa_key: Key, new_client: Any) -> None:
    token = sign(rsa_key, claims(idp, exp=int(time.time()) - 30))
    assert_invalid_token(await create_session(new_client, token), token, "expired")


# --- refused tokens ------------------------------------------------------------------------------------


def _refused(idp: IdentityProvider, rsa_key: Key, ec_key: Key, stranger: Key, case: str) -> tuple[str, str]:
    """(token, a word its 401 detail must contain)."""
    now = int(time.time())
    if case == "expired":
        return sign(rsa_key, claims(idp, iat=now - 3600, nbf=now - 3600, exp=now - 600)), "expired"
    if case == "not yet valid":
        return sign(rsa_key, claims(idp, nbf=now + 600, iat=now)), "nbf"
    if case == "issued in the future":
        return sign(rsa_key, claims(idp, iat=now + 600, nbf=None)), "iat"
    if case == "no exp":
        return sign(rsa_key, claims(idp, exp=None)), "'exp'"
    if case == "wrong issuer":
        return sign(rsa_key, claims(idp, iss="https://login.example.org/realms/other")), "iss"
    if case == "issuer with a trailing slash":
        return sign(rsa_key, claims(idp, iss=idp.issuer + "/")), "iss"
    if case == "wrong audience":
        return sign(rsa_key, claims(idp, aud=["account", "another-api"])), "aud"
    if case == "no audience":
        return sign(rsa_key, claims(idp, aud=None)), "aud"
    if case == "bad signature":
        good = sign(rsa_key, claims(idp))
        header, _, signature = good.split(".")
        forged = b64url(json.dumps(claims(idp, sub="someone-else")).encode())
        return f"{header}.{forged}.{signature}", "signature"
    if case == "signed by a stranger under a published kid":
        return sign(stranger, claims(idp), kid=rsa_key.kid), "signature"
    if case == "alg none":
        return handmade({"alg": "none", "typ": "JWT"}, claims(idp), None), "not signed"
    if case == "alg None with a kid":
        return handmade({"alg": "None", "kid": rsa_key.kid}, claims(idp), None), "not signed"
    if case == "HS256 keyed with the public key":
        return handmade({"alg": "HS256", "kid": rsa_key.kid}, claims(idp), rsa_key.public_pem()), "algorithm"
    if case == "HS256 keyed with the JWK's modulus":
        return handmade(
            {"alg": "HS256", "kid": rsa_key.kid}, claims(idp), rsa_key.jwk["n"].encode()
        ), "algorithm"
    if case == "RS384 (not configured)":
        return jwt.encode(claims(idp), rsa_key.private, "RS384", headers={"kid": rsa_key.kid}), "algorithm"
    if case == "ES256 under the RSA key's kid":
        return sign(ec_key, claims(idp), kid=rsa_key.kid), "does not fit"
    if case == "RS256 under the EC key's kid":
        return sign(rsa_key, claims(idp), kid=ec_key.kid), "does not fit"
    if case == "unknown kid":
        return sign(stranger, claims(idp), kid="rsa-unknown"), "kid"
    if case == "no subject":
        return sign(rsa_key, claims(idp, sub=None)), "sub"
    if case == "subject too long":
        return sign(rsa_key, claims(idp, sub="x" * 300)), "sub"
    if case == "garbage in JWT shape":
        return "eyJhbGciOi.bm90IGpzb24.c2ln", "header"
    raise AssertionError(case)


REFUSED = [
    "expired",
    "not yet valid",
    "issued in the future",
    "no exp",
    "wrong issuer",
    "issuer with a trailing slash",
    "wrong audience",
    "no audience",
    "bad signature",
    "signed by a stranger under a published kid",
    "alg none",
    "alg None with a kid",
    "HS256 keyed with the public key",
    "HS256 keyed with the JWK's modulus",
    "RS384 (not configured)",
    "ES256 under the RSA key's kid",
    "RS256 under the EC key's kid",
    "unknown kid",
    "no subject",
    "subject too long",
    "garbage in JWT shape",
]


@pytest.mark.parametrize("case", REFUSED)
async def test_refused_tokens_are_401_invalid_token(
    case: str, idp: IdentityProvider, rsa_key: Key, ec_key: Key, next_key: Key, new_client: Any, runtime: Any
) -> None:
    token, word = _refused(idp, rsa_key, ec_key, next_key, case)
    assert looks_like_jwt(token)
    assert_invalid_token(await create_session(new_client, token), token, word)
    # The same on a route a phone may use too: a refused JWT is never tried as a phone credential.
    async with new_client(authorization=f"Bearer {token}") as client:
        assert_invalid_token(await client.get("/api/sessions/x"), token, word)
    assert await audit_actors(runtime, "session.created") == []


async def test_hs256_is_refused_even_when_configured_with_it(idp: IdentityProvider) -> None:
    """RFC 8725 §3.1-3.2: the settings refuse HS* and none, so no deployment can be configured into them."""
    for algorithms in ("HS256", "RS256,HS256", "none", "RS256,none", ""):
        with pytest.raises(ValidationError, match="OIDC_ALGORITHMS"):
            Settings(oidc_issuer=idp.issuer, oidc_audience=AUDIENCE, oidc_algorithms=algorithms)
    assert Settings(oidc_algorithms="RS256, PS256,EdDSA").oidc_algorithms == ("RS256", "PS256", "EdDSA")
    with pytest.raises(ValueError, match="asymmetric"):
        OIDCVerifier(issuer=idp.issuer, audience=AUDIENCE, algorithms=("RS256", "HS256"))
    assert set(_KEY_FOR_ALGORITHM) == OIDC_ALGORITHMS


def test_settings_need_issuer_and_audience_together_and_https() -> None:
    with pytest.raises(ValidationError, match="together"):
        Settings(oidc_issuer="https://login.example.org")
    with pytest.raises(ValidationError, match="https"):
        Settings(oidc_issuer="http://login.example.org", oidc_audience=AUDIENCE)
    with pytest.raises(ValidationError, match="https"):
        Settings(
            oidc_issuer="https://login.example.org", oidc_audience=AUDIENCE, oidc_jwks_url="http://x.org/k"
        )
    assert Settings(oidc_issuer="https://login.example.org", oidc_audience=AUDIENCE).oidc_enabled
    assert not Settings().oidc_enabled


def test_jwt_shape_tells_tokens_from_phone_credentials() -> None:
    assert looks_like_jwt("aGVhZGVy.cGF5bG9hZA.c2ln")
    assert looks_like_jwt("aGVhZGVy.cGF5bG9hZA.")  # unsigned: refused as a JWT, not tried as a phone
    for not_jwt in ("Zm9v_bar-43charsOfTokenUrlsafe0123456789abc", "a.b", "a.b.c.d", "a..c", "a.b+.c", ""):
        assert not looks_like_jwt(not_jwt), not_jwt
    assert not looks_like_jwt("a." + "b" * 20000 + ".c")


# --- the JWK Set: cache, rotation, outages ----------------------------------------------------------


async def test_the_jwks_is_cached_not_fetched_per_request(
    idp: IdentityProvider, rsa_key: Key, ec_key: Key, new_client: Any
) -> None:
    for n in range(6):
        key = (rsa_key, ec_key)[n % 2]
        assert (await create_session(new_client, sign(key, claims(idp)), f"enc-{n}")).status_code == 201
    assert idp.hits == Counter({DISCOVERY: 1, JWKS: 1})


async def test_key_rotation_refetches_once_for_a_new_kid(
    idp: IdentityProvider, rsa_key: Key, next_key: Key, new_client: Any, runtime: Any
) -> None:
    assert (await create_session(new_client, sign(rsa_key, claims(idp)), "enc-1")).status_code == 201
    idp.keys = [next_key.jwk]  # the provider rotates: the old key is withdrawn, the new one published
    for n in range(5):
        response = await create_session(new_client, sign(next_key, claims(idp)), f"enc-new-{n}")
        assert response.status_code == 201, response.text
    assert idp.jwks_hits == 2  # the first fetch, and one refetch for the new kid; then the cache again
    assert idp.hits[DISCOVERY] == 1
    # The withdrawn key went with the refetch: a token it signs is refused (and fetches nothing).
    old = sign(rsa_key, claims(idp))
    assert_invalid_token(await create_session(new_client, old, "enc-old"), old, "kid")
    assert idp.jwks_hits == 2
    actors = await audit_actors(runtime, "session.created")
    assert actors == [("clinician", f"oidc:{SUBJECT}")] * 6


async def test_unknown_kids_cannot_make_a_fetch_per_request(
    idp: IdentityProvider, next_key: Key, new_client: Any
) -> None:
    for n in range(8):
        token = sign(next_key, claims(idp), kid=f"random-{n}")
        assert_invalid_token(await create_session(new_client, token), token, "kid")
    # The first fetch (the kid was unknown in freshly fetched keys: no second one), one refetch for the
    # next unknown kid, then none within REFETCH_COOLDOWN_SECONDS.
    assert idp.jwks_hits == 2


async def test_concurrent_requests_share_one_fetch(idp: IdentityProvider, rsa_key: Key) -> None:
    verifier = OIDCVerifier(issuer=idp.issuer, audience=AUDIENCE)
    token = sign(rsa_key, claims(idp))
    results = await asyncio.gather(*(verifier.verify(token) for _ in range(20)))
    assert {r.id for r in results} == {f"oidc:{SUBJECT}"}
    assert idp.hits == Counter({DISCOVERY: 1, JWKS: 1})


async def test_cache_lifetime_refresh_and_stale_keys_during_an_outage(
    idp: IdentityProvider, rsa_key: Key
) -> None:
    now = [1000.0]
    verifier = OIDCVerifier(
        issuer=idp.issuer, audience=AUDIENCE, jwks_cache_seconds=300, clock=lambda: now[0]
    )
    token = sign(rsa_key, claims(idp))
    await verifier.verify(token)
    now[0] += 299
    await verifier.verify(token)
    assert idp.jwks_hits == 1
    now[0] += 2  # past the lifetime: fetched again
    await verifier.verify(token)
    assert idp.jwks_hits == 2

    idp.failing = True  # the provider goes down after the keys expire: the stale keys carry on
    now[0] += 301
    assert (await verifier.verify(token)).id == f"oidc:{SUBJECT}"
    assert idp.jwks_hits == 3
    await verifier.verify(token)  # within the cool-down after a failure: no new attempt
    assert idp.jwks_hits == 3
    now[0] += STALE_IF_ERROR_SECONDS  # too stale to trust
    with pytest.raises(IdentityProviderUnavailable, match="HTTP 500"):
        await verifier.verify(token)

    idp.failing = False  # back: after the cool-down the keys are fetched again
    now[0] += REFETCH_COOLDOWN_SECONDS
    assert (await verifier.verify(token)).id == f"oidc:{SUBJECT}"


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(
    "oidc_extra", [{"oidc_issuer": f"http://127.0.0.1:{_closed_port()}/realms/practice"}]
)
async def test_an_unreachable_issuer_is_503_not_500(
    idp: IdentityProvider, rsa_key: Key, new_client: Any, settings: Any, runtime: Any
) -> None:
    token = sign(rsa_key, claims(idp, iss=settings.oidc_issuer))
    response = await create_session(new_client, token)
    body = assert_error(response, 503, "IdentityProviderUnavailable", "identity provider", "try again")
    assert settings.oidc_issuer in body["detail"]
    assert response.headers["retry-after"] == "30"
    assert token not in response.text
    assert await audit_actors(runtime, "session.created") == []


async def test_a_failing_jwks_is_503(idp: IdentityProvider, rsa_key: Key, new_client: Any) -> None:
    idp.failing = True
    response = await create_session(new_client, sign(rsa_key, claims(idp)))
    assert_error(response, 503, "IdentityProviderUnavailable", "HTTP 500")


async def test_a_discovery_document_for_another_issuer_is_refused(
    idp: IdentityProvider, rsa_key: Key, new_client: Any
) -> None:
    idp.discovery_issuer = "https://evil.example.org/realms/practice"  # OpenID Connect Discovery §4.3
    response = await create_session(new_client, sign(rsa_key, claims(idp)))
    assert_error(response, 503, "IdentityProviderUnavailable", "another issuer")
    assert idp.jwks_hits == 0


@pytest.mark.parametrize("oidc_extra", [{"oidc_jwks_url": lambda idp: idp.issuer.removesuffix(REALM) + JWKS}])
async def test_an_explicit_jwks_url_skips_discovery(
    idp: IdentityProvider, rsa_key: Key, new_client: Any
) -> None:
    assert (await create_session(new_client, sign(rsa_key, claims(idp)))).status_code == 201
    assert idp.hits == Counter({JWKS: 1})


# --- the embedded token under OIDC -----------------------------------------------------------------------


async def test_the_embedded_token_is_refused_when_oidc_is_on(new_client: Any, runtime: Any) -> None:
    response = await create_session(new_client, CLINICIAN_TOKEN)
    assert_error(response, 401, "InvalidCredential", "identity provider", "embedded clinician token")
    assert CLINICIAN_TOKEN not in response.text
    # Nor does its login cookie sign a browser in: /login still sets one, but it counts for nothing.
    async with new_client() as browser:
        await browser.get("/login", params={"token": CLINICIAN_TOKEN})
        response = await browser.post("/api/sessions", json={"encounterId": "enc-1", "patient": PATIENT})
        assert_error(response, 401, "NotAuthenticated", "identity provider")
    assert await audit_actors(runtime, "session.created") == []


@pytest.mark.parametrize("oidc_extra", [{"oidc_allow_embedded_token": True}])
async def test_the_embedded_token_works_beside_oidc_when_explicitly_allowed(
    idp: IdentityProvider, rsa_key: Key, new_client: Any, runtime: Any
) -> None:
    assert (await create_session(new_client, CLINICIAN_TOKEN, "enc-1")).status_code == 201
    assert (await create_session(new_client, sign(rsa_key, claims(idp)), "enc-2")).status_code == 201
    actors = await audit_actors(runtime, "session.created")
    assert actors == [("clinician", "clinician:embedded"), ("clinician", f"oidc:{SUBJECT}")]


async def test_no_credentials_under_oidc_says_how_to_sign_in(new_client: Any, idp: IdentityProvider) -> None:
    async with new_client() as client:
        response = await client.post("/api/sessions", json={"encounterId": "enc-1", "patient": PATIENT})
    body = assert_error(response, 401, "NotAuthenticated", "sign in", "clinician", "Authorization: Bearer")
    assert idp.issuer in body["detail"]
    assert response.headers["www-authenticate"] == "Bearer"  # no error code without credentials (§3.1)


# --- phones are unaffected ---------------------------------------------------------------------------


async def test_phones_pair_and_upload_with_oidc_on(
    idp: IdentityProvider, rsa_key: Key, new_client: Any, runtime: Any
) -> None:
    token = sign(rsa_key, claims(idp))
    async with new_client(authorization=f"Bearer {token}") as desktop:
        session = (
            await desktop.post("/api/sessions", json={"encounterId": "enc-1", "patient": PATIENT})
        ).json()
        phone = await pair_phone(new_client, session)  # the phone cookie
        response = await upload(phone, session["id"], jpeg_bytes())
        assert response.status_code == 201, response.text

        fresh = (await desktop.post(f"/api/sessions/{session['id']}/pairing")).json()
        paired = await new_client().post("/api/pair", json={"token": token_of(fresh["url"])})
        assert paired.status_code == 200, paired.text
        async with new_client(authorization=f"Bearer {paired.json()['phoneToken']}") as bearer_phone:
            assert (await upload(bearer_phone, session["id"], jpeg_bytes())).status_code == 201
            # A phone is still a phone: 403 where only the clinician may act.
            refused = await bearer_phone.post(f"/api/sessions/{session['id']}/pairing")
            assert_error(refused, 403, "ClinicianOnly", "clinician")

        images = (await desktop.get(f"/api/sessions/{session['id']}/images")).json()["images"]
        assert len(images) == 2
    actors = await audit_actors(runtime, "image.uploaded")
    assert [kind for kind, _ in actors] == ["phone", "phone"]
    assert idp.jwks_hits == 1


async def test_a_wrong_phone_credential_is_still_401_under_oidc(new_client: Any) -> None:
    async with new_client(authorization="Bearer not-a-phone-credential-0123456789abcdef") as client:
        assert_error(await client.post("/api/sessions/x/pairing"), 401, "InvalidCredential")
        assert_error(await client.get("/api/sessions/x"), 401, "PhoneNotPaired")
