"""SMART App Launch 2.x (issue 13; hl7.org/fhir/smart-app-launch/app-launch.html): the rules, no HTTP here.

An EHR opens `/launch?iss=…&launch=…` (EHR launch), or a user opens `/launch?iss=…` (standalone launch).

`start`: the `iss` must be one of CONSULTCAM_SMART_ISSUERS, exactly (trailing / dropped): an attacker must not
pick the EHR ("unknown-issuer"). Discovery (`{iss}/.well-known/smart-configuration`), then a pending
`AuthorizationRequest`: the SHA-256 of a fresh `state` (RFC 6749 §10.12) and, sealed with the server's key,
the PKCE code_verifier (RFC 7636, S256), the OpenID `nonce`, the `launch`, the endpoints and the scopes asked
for; `STATE_LIFETIME` (10 minutes). The browser goes to the authorize endpoint with response_type=code,
client_id, redirect_uri `{PUBLIC_URL}/launch/callback`, `scopes(...)`, state, aud=iss, code_challenge, nonce.

`claim` (the callback): the state is used once (UPDATE … WHERE used_at IS NULL, committed at once, before
anything else): unknown or tampered "bad-state", used "replayed", too old "expired". An `error` answer is
"denied" (access_denied) or "authorize-error". `check`: the code exchange (client_secret_basic for a
confidential client, else a public client), the id_token (signature by the server's JWKS, iss, aud = our
client id, exp, and our nonce: "id-token-invalid"), the token's `patient` ("no-patient" without one) and
`encounter`, the launching user (the id_token's `fhirUser`) a Practitioner, else "not-a-practitioner"
(a Patient, RelatedPerson or Person, or no fhirUser: consultcam is a clinician's tool, and an unknown user
cannot be bound to one provider), the Patient and Encounter read from the EHR with the access token
("patient-not-found"; an Encounter of another patient: "ehr-error").

What a checked launch opens and whom it signs in (`accept`) is `consultcam.launch.smart_accept`. A refusal
creates nothing; the caller records `launch.refused` (`record_refusal`) with the reason, never a code, token,
state or patient detail.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlencode

from consultcam import audit
from consultcam.auth import authorization_requests
from consultcam.db import Transactions
from consultcam.launch.smart_port import EhrEncounter, EhrPatient, SmartFailure, SmartServer, TokenAnswer
from consultcam.models import utcnow
from consultcam.runtime import Runtime
from consultcam.sessions.access import fhir_practitioner_id

__all__ = [
    "STATE_LIFETIME",
    "Checked",
    "Pending",
    "Reason",
    "SmartRefused",
    "check",
    "claim",
    "practitioner_of",
    "record_refusal",
    "scopes",
    "start",
    "user_of",
]

STATE_LIFETIME = authorization_requests.LIFETIME
#: What consultcam asks for (SMART 2.x scope syntax): read the patient and encounter, create photos.
RESOURCE_SCOPES = (
    "patient/Patient.rs",
    "patient/Encounter.rs",
    "patient/Media.c",
    "patient/DocumentReference.c",
)
_V1 = {".rs": ".read", ".c": ".write"}

#: Why a launch was refused (the audit's `reason`; the page says it in words).
Reason = Literal[
    "not-configured",
    "bad-request",
    "unknown-issuer",
    "denied",
    "authorize-error",
    "bad-state",
    "expired",
    "replayed",
    "no-patient",
    "not-a-practitioner",
    "encounter-held",
    "ehr-unreachable",
    "ehr-error",
    "token-refused",
    "id-token-invalid",
    "patient-not-found",
]
#: A state the callback could not use, as a refusal: never issued or tampered with, used, too old.
_STATE_REFUSALS: dict[authorization_requests.Refusal, Reason] = {
    "unknown": "bad-state",
    "used": "replayed",
    "expired": "expired",
}


class SmartRefused(Exception):
    """A launch that is not accepted; `reason` says why, `issuer` which EHR (when known)."""

    def __init__(self, reason: Reason, *, issuer: str | None = None) -> None:
        super().__init__(reason)
        self.reason: Reason = reason
        self.issuer = issuer


@dataclass(frozen=True)
class Pending:
    """A claimed authorization request: the EHR (`server`), what to send and check, what was asked for."""

    server: SmartServer
    verifier: str
    nonce: str
    launch: str | None
    scope: str
    redirect_uri: str


@dataclass(frozen=True)
class Checked:
    """A launch the EHR vouched for: its tokens, the id_token's claims, the patient and encounter."""

    pending: Pending
    token: TokenAnswer
    claims: dict[str, Any]
    patient: EhrPatient
    encounter: EhrEncounter | None


def uses_v1(server: SmartServer) -> bool:
    """Whether to ask with SMART v1 scope names (`.read`/`.write`): the server lists `permission-v1` and not
    `permission-v2`, or, listing neither, its resource scopes are all v1 names."""
    if "permission-v2" in server.capabilities:
        return False
    if "permission-v1" in server.capabilities:
        return True
    resource = [s for s in server.scopes_supported if "/" in s and "." in s]
    return bool(resource) and all(s.rsplit(".", 1)[1] in ("read", "write", "*") for s in resource)


def scopes(server: SmartServer, *, standalone: bool, offline: bool) -> str:
    """The scope parameter: `launch` (standalone: `launch/patient`), openid fhirUser, the resource scopes
    in v2 names or, for a v1-only server, v1 names, and offline_access when configured."""
    words = ["launch/patient" if standalone else "launch", "openid", "fhirUser"]
    for scope in RESOURCE_SCOPES:
        if uses_v1(server):
            name, dot, perm = scope.rpartition(".")
            scope = name + _V1[dot + perm]
        words.append(scope)
    if offline:
        words.append("offline_access")
    return " ".join(words)


async def start(
    rt: Runtime, iss: str, launch: str | None, redirect_uri: str, now: datetime | None = None
) -> str:
    """Check the issuer, discover, store the pending request; returns the authorize URL to send the
    browser to. Raises SmartRefused ("not-configured", "unknown-issuer", "ehr-…")."""
    now = now or utcnow()
    api = rt.smart_launch
    if api is None:
        raise SmartRefused("not-configured")
    iss = iss.strip().rstrip("/")
    if iss not in rt.settings.smart_issuers:
        raise SmartRefused("unknown-issuer", issuer=iss[:300])
    try:
        server = await api.discover(iss)
    except SmartFailure as failure:
        raise SmartRefused(failure.why, issuer=iss) from None
    if server.code_challenge_methods and "S256" not in server.code_challenge_methods:
        raise SmartRefused("ehr-error", issuer=iss)
    state, verifier, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(64), secrets.token_urlsafe(32)
    scope = scopes(server, standalone=launch is None, offline=rt.settings.smart_offline_access)
    secrets_ = {
        "verifier": verifier,
        "nonce": nonce,
        "launch": launch,
        "scope": scope,
        "redirect_uri": redirect_uri,
        "server": {
            "iss": iss,
            "authorize": server.authorization_endpoint,
            "token": server.token_endpoint,
            "issuer": server.issuer,
            "jwks": server.jwks_uri,
        },
    }
    async with rt.unit_of_work() as uow:
        await authorization_requests.add(
            uow.session, rt.settings.secret_key, "smart", state, iss, secrets_, now
        )
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    params = {
        "response_type": "code",
        "client_id": api.client_id,
        "redirect_uri": redirect_uri,
        "scope": scope,
        "state": state,
        "aud": iss,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "nonce": nonce,
    }
    if launch is not None:
        params["launch"] = launch
    separator = "&" if "?" in server.authorization_endpoint else "?"
    return f"{server.authorization_endpoint}{separator}{urlencode(params)}"


async def claim(rt: Runtime, state: str, error: str | None, now: datetime | None = None) -> Pending:
    """Use the callback's state once (committed at once) and open what was sealed with it. Raises
    SmartRefused "bad-state", "replayed", "expired", "unknown-issuer" (no longer configured), or, for an
    `error` callback with a good state, "denied" / "authorize-error"."""
    now = now or utcnow()
    async with rt.unit_of_work() as uow:
        claimed = await authorization_requests.claim(uow.session, rt.settings.secret_key, "smart", state, now)
    if not isinstance(claimed, authorization_requests.Claimed):
        raise SmartRefused(_STATE_REFUSALS[claimed])
    issuer = claimed.issuer
    if error is not None:
        raise SmartRefused("denied" if error == "access_denied" else "authorize-error", issuer=issuer)
    try:
        opened = claimed.secrets
        server = opened["server"]
        pending = Pending(
            server=SmartServer(
                iss=server["iss"],
                authorization_endpoint=server["authorize"],
                token_endpoint=server["token"],
                issuer=server["issuer"],
                jwks_uri=server["jwks"],
                scopes_supported=(),
                capabilities=(),
                code_challenge_methods=(),
            ),
            verifier=opened["verifier"],
            nonce=opened["nonce"],
            launch=opened.get("launch"),
            scope=opened["scope"],
            redirect_uri=opened["redirect_uri"],
        )
    except (KeyError, TypeError):
        raise SmartRefused("bad-state", issuer=issuer) from None
    if pending.server.iss not in rt.settings.smart_issuers:
        raise SmartRefused("unknown-issuer", issuer=issuer)
    return pending


async def check(rt: Runtime, pending: Pending, code: str) -> Checked:
    """Exchange the code, check the id_token, read the patient and encounter (outside any transaction: the
    EHR may take seconds). Raises SmartRefused (see the module docstring)."""
    api, iss = rt.smart_launch, pending.server.iss
    if api is None:
        raise SmartRefused("not-configured", issuer=iss)
    try:
        token = await api.exchange_code(pending.server, code, pending.verifier, pending.redirect_uri)
        if token.id_token is None:
            raise SmartRefused("id-token-invalid", issuer=iss)
        claims = await api.id_token_claims(pending.server, token.id_token)
        if not secrets.compare_digest(str(claims.get("nonce", "")), pending.nonce):
            raise SmartRefused("id-token-invalid", issuer=iss)
        if practitioner_of(claims, iss) is None:
            raise SmartRefused("not-a-practitioner", issuer=iss)
        if token.patient is None:
            raise SmartRefused("no-patient", issuer=iss)
        patient = await api.read_patient(iss, token.patient, token.access_token)
        encounter = None
        if token.encounter is not None:
            encounter = await api.read_encounter(iss, token.encounter, token.access_token)
            if encounter.patient_id not in (None, patient.id):
                raise SmartRefused("ehr-error", issuer=iss)
    except SmartFailure as failure:
        raise SmartRefused(failure.why, issuer=iss) from None
    return Checked(pending=pending, token=token, claims=claims, patient=patient, encounter=encounter)


def user_of(checked: Checked) -> str:
    """The launching user: `fhirUser` relative to the FHIR base when it is under it ("Practitioner/7"), as
    given otherwise; the id_token's `sub` when there is no fhirUser."""
    fhir_user = checked.claims.get("fhirUser")
    if isinstance(fhir_user, str) and fhir_user:
        return fhir_user.removeprefix(checked.pending.server.iss + "/")
    return str(checked.claims.get("sub", ""))


def practitioner_of(claims: dict[str, Any], iss: str) -> str | None:
    """The Practitioner id of the id_token's `fhirUser` ("Practitioner/7" relative to `iss`, or an absolute
    URL ending so; SMART App Launch 2.x "fhirUser"), None for any other user or none."""
    fhir_user = claims.get("fhirUser")
    if not isinstance(fhir_user, str):
        return None
    return fhir_practitioner_id(fhir_user.removeprefix(iss + "/"))


async def record_refusal(tx: Transactions, refused: SmartRefused, client: str) -> None:
    """Audit `launch.refused` {reason, client, issuer?} in a transaction of its own (the launch's, if any,
    was rolled back). Never the code, the state, a token or the patient."""
    detail = {"reason": refused.reason, "client": client}
    if refused.issuer:
        detail["issuer"] = refused.issuer
    async with tx() as uow:
        audit.record(uow.session, None, "launch.refused", system="smart-launch", **detail)
