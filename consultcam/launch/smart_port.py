"""The SMART launch port: what the SMART App Launch rules (`consultcam.launch.smart`) ask of an EHR's
authorization server and FHIR API, and what they get back.

The adapter is `consultcam.launch.smart_api.SmartApi` (built by `bootstrap.build_runtime` when
CONSULTCAM_SMART_ISSUERS is set); tests run it against the SMART EHR test double (tests/smart).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any, Literal, Protocol

__all__ = ["EhrEncounter", "EhrPatient", "SmartEhr", "SmartFailure", "SmartServer", "TokenAnswer", "Why"]

#: Why the EHR gave no answer a launch can use:
#: - "ehr-unreachable": no answer at all (refused, timed out, DNS);
#: - "ehr-error": a 429/5xx, or an answer that is not the documented shape (discovery, FHIR reads);
#: - "token-refused": the token endpoint refused the code (4xx: invalid_grant, invalid_client, ...);
#: - "id-token-invalid": the id_token's signature, issuer, audience, expiry or nonce is wrong;
#: - "patient-not-found": the EHR has no such Patient or Encounter for this token (404/410/403).
Why = Literal["ehr-unreachable", "ehr-error", "token-refused", "id-token-invalid", "patient-not-found"]


class SmartFailure(Exception):
    """The EHR gave no usable answer; `why` says which kind (see `Why`). The message never holds a code,
    a token or a patient detail."""

    def __init__(self, why: Why, message: str) -> None:
        super().__init__(message)
        self.why: Why = why


@dataclass(frozen=True)
class SmartServer:
    """What `{iss}/.well-known/smart-configuration` says (SMART App Launch 2.x conformance.html): the
    endpoints, the OpenID issuer its id_tokens carry (`issuer`) and their keys (`jwks_uri`), the scopes
    and capabilities it lists, and the PKCE methods (`code_challenge_methods`)."""

    iss: str
    authorization_endpoint: str
    token_endpoint: str
    issuer: str
    jwks_uri: str
    scopes_supported: tuple[str, ...]
    capabilities: tuple[str, ...]
    code_challenge_methods: tuple[str, ...]


@dataclass(frozen=True)
class TokenAnswer:
    """The token response (RFC 6749 §5.1 with SMART's launch context): `expires_in` in seconds (None when
    not given), `patient`/`encounter` FHIR ids or None, `id_token` compact JWS or None."""

    access_token: str
    refresh_token: str | None
    expires_in: int | None
    scope: str
    patient: str | None
    encounter: str | None
    id_token: str | None

    def __repr__(self) -> str:  # never the tokens
        return f"TokenAnswer(scope={self.scope!r}, patient={self.patient!r}, encounter={self.encounter!r})"


@dataclass(frozen=True)
class EhrPatient:
    """The Patient as the EHR gives it: FHIR id, display name, NHI (identifier system
    https://standards.digital.health.nz/ns/nhi-id) and full birth date, when present."""

    id: str
    name: str
    nhi: str | None
    birth_date: date | None


@dataclass(frozen=True)
class EhrEncounter:
    """The Encounter as the EHR gives it: FHIR id, its subject's Patient id (None when it names none) and
    status."""

    id: str
    patient_id: str | None
    status: str


class SmartEhr(Protocol):
    """An EHR's SMART authorization server and FHIR API, as far as a launch needs them. Every call raises
    SmartFailure. `client_id` is consultcam's client id with the EHRs (CONSULTCAM_SMART_CLIENT_ID)."""

    client_id: str

    async def discover(self, iss: str) -> SmartServer:
        """GET `{iss}/.well-known/smart-configuration`."""
        ...

    async def exchange_code(
        self, server: SmartServer, code: str, verifier: str, redirect_uri: str
    ) -> TokenAnswer:
        """POST the authorization code to the token endpoint (RFC 6749 §4.1.3, RFC 7636 §4.5)."""
        ...

    async def id_token_claims(self, server: SmartServer, id_token: str) -> dict[str, Any]:
        """The id_token's claims once its signature (the server's JWKS), `iss` (server.issuer), `aud` (our
        client id) and `exp` check out (OIDC Core §3.1.3.7). The caller checks the nonce."""
        ...

    async def read_patient(self, fhir_base: str, patient_id: str, access_token: str) -> EhrPatient:
        """GET `{fhir_base}/Patient/{id}` with the launch's access token."""
        ...

    async def read_encounter(self, fhir_base: str, encounter_id: str, access_token: str) -> EhrEncounter:
        """GET `{fhir_base}/Encounter/{id}` with the launch's access token."""
        ...

    async def close(self) -> None:
        """Release the HTTP connections (at shutdown)."""
        ...
