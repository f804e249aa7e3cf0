"""The EHR calls a SMART App Launch needs (the `SmartEhr` port), over the retrying HTTP client.

* Discovery: `GET {iss}/.well-known/smart-configuration` (SMART App Launch 2.x conformance.html); it must
  name authorization_endpoint, token_endpoint, and, for the OpenID Connect sign-in consultcam asks for,
  issuer and jwks_uri.
* Token exchange: `POST token_endpoint` (form) grant_type=authorization_code, code, redirect_uri and the PKCE
  code_verifier (RFC 6749 §4.1.3, RFC 7636 §4.5); a confidential client (CONSULTCAM_SMART_CLIENT_SECRET) by
  HTTP Basic (client_secret_basic, §2.3.1: id and secret form-urlencoded), a public one with client_id in
  the form. Never retried: a code is single use.
* id_token: RS256/ES256 JWS checked with the server's JWKS (fetched, kept `JWKS_CACHE_SECONDS`, fetched
  again once for an unknown `kid`), `iss`, `aud` = our client id, `exp`/`iat` with `LEEWAY` (pyjwt).
* FHIR reads: `GET {fhir_base}/Patient/{id}`, `/Encounter/{id}` with `Authorization: Bearer`.

The GP is waiting: few, short retries (the Medtech launch's `LAUNCH_RETRY`), 10 s per phase. Nothing here
logs a code, a token or a patient detail.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import httpx
import jwt

from consultcam.config import Settings
from consultcam.kit.http import RetryPolicy, Unreachable, new_client, send_with_retries
from consultcam.kit.oauth2 import client_auth
from consultcam.launch.alex_api import LAUNCH_RETRY, parse_patient
from consultcam.launch.port import LaunchFailure
from consultcam.launch.smart_port import (
    EhrEncounter,
    EhrPatient,
    SmartFailure,
    SmartServer,
    TokenAnswer,
)

__all__ = ["JWKS_CACHE_SECONDS", "LEEWAY", "NHI_SYSTEM", "SmartApi", "parse_configuration"]

NHI_SYSTEM = "https://standards.digital.health.nz/ns/nhi-id"
JWKS_CACHE_SECONDS = 300.0
LEEWAY = 60  # seconds of clock skew allowed on exp and iat
ALGORITHMS = ["RS256", "ES256"]  # never none or HS* (RFC 8725 §3.1-3.2)
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_FHIR_JSON = {"Accept": "application/fhir+json"}


class SmartApi:
    """The SMART EHRs consultcam may be launched from, for one client registration. One httpx client for
    the process, closed by `close`. Every call raises SmartFailure (`consultcam.launch.smart_port.Why`)."""

    def __init__(
        self,
        client_id: str,
        client_secret: str | None,
        *,
        timeout: float = 10.0,
        retry: RetryPolicy = LAUNCH_RETRY,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.client_id = client_id
        self._secret = client_secret
        self._retry = retry
        self._client = new_client(timeout=timeout, transport=transport)
        self._keys: dict[str, tuple[float, jwt.PyJWKSet]] = {}

    def __repr__(self) -> str:  # never the secret
        return f"SmartApi(client_id={self.client_id!r})"

    @classmethod
    def from_settings(cls, settings: Settings) -> SmartApi | None:
        """The adapter when CONSULTCAM_SMART_ISSUERS and CONSULTCAM_SMART_CLIENT_ID are set; else None."""
        if not settings.smart_issuers or not settings.smart_client_id:
            return None
        secret = settings.smart_client_secret.get_secret_value() if settings.smart_client_secret else None
        return cls(settings.smart_client_id, secret or None)

    async def close(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()

    async def discover(self, iss: str) -> SmartServer:
        """`GET {iss}/.well-known/smart-configuration` → SmartServer; "ehr-unreachable" or "ehr-error"."""
        url = f"{iss}/.well-known/smart-configuration"
        response = await self._send(lambda: self._client.get(url, headers={"Accept": "application/json"}),
                                    "GET", "SMART discovery")  # fmt: skip
        return parse_configuration(iss, _json(response, "the SMART configuration"))

    async def exchange_code(
        self, server: SmartServer, code: str, verifier: str, redirect_uri: str
    ) -> TokenAnswer:
        """The authorization code grant (see the module docstring) → TokenAnswer. A 4xx is
        "token-refused"; a 5xx or an unreadable answer "ehr-error"; no answer "ehr-unreachable"."""
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        }
        headers = {"Accept": "application/json"}
        extra_form, extra_headers = client_auth(self.client_id, self._secret)
        form |= extra_form
        headers |= extra_headers
        endpoint = server.token_endpoint
        response = await self._send(
            lambda: self._client.post(endpoint, data=form, headers=headers), "POST", "SMART token exchange"
        )
        if 400 <= response.status_code < 500:
            error = _oauth_error(response)
            raise SmartFailure("token-refused", f"the token endpoint refused the code ({error})")
        return parse_token(_json(response, "the token response"))

    async def id_token_claims(self, server: SmartServer, id_token: str) -> dict[str, Any]:
        """The verified claims of `id_token` (see the module docstring); "id-token-invalid" otherwise,
        "ehr-unreachable"/"ehr-error" when the keys cannot be fetched."""
        try:
            kid = jwt.get_unverified_header(id_token).get("kid")
        except jwt.InvalidTokenError:
            raise SmartFailure("id-token-invalid", "the id_token is not a JWS") from None
        key = await self._key(server.jwks_uri, kid, fresh=False)
        if key is None:
            key = await self._key(server.jwks_uri, kid, fresh=True)
        if key is None:
            raise SmartFailure("id-token-invalid", "the id_token's key is not in the EHR's JWKS")
        try:
            claims: dict[str, Any] = jwt.decode(
                id_token,
                key,
                algorithms=ALGORITHMS,
                audience=self.client_id,
                issuer=server.issuer,
                leeway=LEEWAY,
                options={"require": ["iss", "sub", "aud", "exp", "iat"]},
            )
        except jwt.InvalidTokenError as exc:
            raise SmartFailure("id-token-invalid", f"the id_token: {type(exc).__name__}") from None
        return claims

    async def _key(self, jwks_uri: str, kid: str | None, *, fresh: bool) -> Any:
        cached = self._keys.get(jwks_uri)
        if fresh or cached is None or cached[0] < time.monotonic():
            response = await self._send(lambda: self._client.get(jwks_uri), "GET", "SMART JWKS")
            try:
                keys = jwt.PyJWKSet.from_dict(_json(response, "the JWKS"))
            except (jwt.PyJWKError, jwt.PyJWKSetError):
                raise SmartFailure("ehr-error", "the EHR's JWKS holds no usable key") from None
            cached = self._keys[jwks_uri] = (time.monotonic() + JWKS_CACHE_SECONDS, keys)
        usable = [k for k in cached[1].keys if kid is None or k.key_id == kid]
        return usable[0].key if len(usable) == 1 or (usable and kid) else None

    async def read_patient(self, fhir_base: str, patient_id: str, access_token: str) -> EhrPatient:
        """`GET {fhir_base}/Patient/{id}` → EhrPatient; "patient-not-found" for 403/404/410, "ehr-error"
        for 401 or something that is not a Patient with an id and a name."""
        body = await self._read(fhir_base, "Patient", patient_id, access_token)
        try:
            found = parse_patient(body, NHI_SYSTEM)
        except LaunchFailure as failure:
            raise SmartFailure("ehr-error", str(failure).replace("ALEX", "the EHR")) from None
        return EhrPatient(id=found.id, name=found.name, nhi=found.nhi, birth_date=found.birth_date)

    async def read_encounter(self, fhir_base: str, encounter_id: str, access_token: str) -> EhrEncounter:
        """`GET {fhir_base}/Encounter/{id}` → EhrEncounter; "patient-not-found" for 403/404/410."""
        body = await self._read(fhir_base, "Encounter", encounter_id, access_token)
        if body.get("resourceType") != "Encounter" or not _is_id(body.get("id")):
            raise SmartFailure("ehr-error", "the EHR answered the Encounter read with something else")
        reference = (
            (body.get("subject") or {}).get("reference") if isinstance(body.get("subject"), dict) else None
        )
        patient = None
        if isinstance(reference, str):
            tail = reference.rsplit("/", 2)
            if len(tail) >= 2 and tail[-2] == "Patient" and _is_id(tail[-1]):
                patient = tail[-1]
        return EhrEncounter(id=str(body["id"]), patient_id=patient, status=str(body.get("status") or ""))

    async def _read(self, fhir_base: str, kind: str, rid: str, token: str) -> dict[str, Any]:
        url = f"{fhir_base}/{kind}/{quote(rid, safe='')}"
        headers = {**_FHIR_JSON, "Authorization": f"Bearer {token}"}
        response = await self._send(lambda: self._client.get(url, headers=headers), "GET", f"EHR GET {kind}")
        status = response.status_code
        if status in (403, 404, 410):
            raise SmartFailure("patient-not-found", f"the EHR answered GET {kind} with HTTP {status}")
        if status == 401:
            raise SmartFailure("ehr-error", f"the EHR refused the launch's own access token (GET {kind})")
        return _json(response, f"the {kind} read")

    async def _send(
        self, attempt: Callable[[], Awaitable[httpx.Response]], method: str, label: str
    ) -> httpx.Response:
        try:
            attempted = await send_with_retries(attempt, self._retry, method=method, label=label)
        except Unreachable as exc:
            raise SmartFailure("ehr-unreachable", f"{label}: no answer ({exc})") from None
        response = attempted.response
        if response.status_code == 429 or response.status_code >= 500:
            raise SmartFailure("ehr-error", f"{label}: the EHR answered HTTP {response.status_code}")
        return response


def _is_id(value: Any) -> bool:
    return isinstance(value, str) and bool(_FHIR_ID.fullmatch(value))


def _json(response: httpx.Response, what: str) -> dict[str, Any]:
    """The JSON object of a 2xx answer; "ehr-error" for anything else."""
    try:
        body = response.json() if 200 <= response.status_code < 300 else None
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise SmartFailure("ehr-error", f"the EHR answered {what} with HTTP {response.status_code}, not JSON")
    return body


def _oauth_error(response: httpx.Response) -> str:
    """The `error` code of an OAuth error answer (RFC 6749 §5.2), or the HTTP status."""
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, str) and re.fullmatch(r"[a-z_]{1,40}", error):
        return error
    return f"HTTP {response.status_code}"


def _url(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value.startswith(("https://", "http://")):
        raise SmartFailure("ehr-error", f"the SMART configuration has no {name}")
    return value


def _words(body: dict[str, Any], name: str) -> tuple[str, ...]:
    value = body.get(name)
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()


def parse_configuration(iss: str, body: dict[str, Any]) -> SmartServer:
    """A `.well-known/smart-configuration` document → SmartServer. Raises SmartFailure "ehr-error" when an
    endpoint consultcam needs (authorize, token, and issuer + jwks_uri for the id_token) is missing."""
    issuer = body.get("issuer")
    if not isinstance(issuer, str) or not issuer:
        raise SmartFailure("ehr-error", "the SMART configuration has no issuer (no OpenID Connect sign-in)")
    return SmartServer(
        iss=iss,
        authorization_endpoint=_url(body, "authorization_endpoint"),
        token_endpoint=_url(body, "token_endpoint"),
        issuer=issuer,
        jwks_uri=_url(body, "jwks_uri"),
        scopes_supported=_words(body, "scopes_supported"),
        capabilities=_words(body, "capabilities"),
        code_challenge_methods=_words(body, "code_challenge_methods_supported"),
    )


def parse_token(body: dict[str, Any]) -> TokenAnswer:
    """A token response (RFC 6749 §5.1, SMART launch context) → TokenAnswer; "ehr-error" when it has no
    bearer access_token, or a patient/encounter that is not a FHIR id."""
    access = body.get("access_token")
    if not isinstance(access, str) or not access or str(body.get("token_type", "")).lower() != "bearer":
        raise SmartFailure("ehr-error", "the token response has no bearer access_token")

    def text(name: str) -> str | None:
        value = body.get(name)
        return value if isinstance(value, str) and value else None

    for name in ("patient", "encounter"):
        if text(name) is not None and not _is_id(text(name)):
            raise SmartFailure("ehr-error", f"the token response's {name} is not a FHIR id")
    expires = body.get("expires_in")
    return TokenAnswer(
        access_token=access,
        refresh_token=text("refresh_token"),
        expires_in=int(expires) if isinstance(expires, int | float) and expires > 0 else None,
        scope=text("scope") or "",
        patient=text("patient"),
        encounter=text("encounter"),
        id_token=text("id_token"),
    )
