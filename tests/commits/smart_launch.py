"""A SMART EHR launch as consultcam's callback would complete it, for tests that write the grant themselves:
the EHR double's /authorize (PKCE S256) and /token, over the wire."""

from __future__ import annotations

import base64
import hashlib
import secrets
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from tests.smart.double import EhrDouble

CLIENT_ID = "consultcam"
CLIENT_SECRET = "smart-commit-secret-0123456789"
REDIRECT_URI = "http://127.0.0.1:9/launch/callback"
SCOPES = (
    "launch openid fhirUser patient/Patient.rs patient/Encounter.rs patient/Media.c "
    "patient/DocumentReference.c offline_access"
)


class Launched:
    """An EHR launch for one patient and encounter: the ids and the token response."""

    def __init__(self, ehr: EhrDouble, *, offline: bool = True) -> None:
        self.patient = ehr.add_patient(family="Tester", given="Mere", birth_date="1980-02-29", nhi="ZZZ0016")
        self.encounter = ehr.add_encounter(self.patient)
        self.user = ehr.add_practitioner()
        self.tokens = issue_tokens(ehr, self.patient, self.encounter, self.user, offline=offline)


def issue_tokens(ehr: EhrDouble, patient: str, encounter: str, user: str, *, offline: bool) -> dict[str, Any]:
    """The EHR's token response for a launch, obtained as consultcam's callback would (authorization code
    with PKCE S256, then the token endpoint)."""
    with httpx.Client(timeout=10) as http:
        config = http.get(f"{ehr.iss}/.well-known/smart-configuration").json()
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        state = secrets.token_urlsafe(16)
        scope = SCOPES if offline else SCOPES.replace(" offline_access", "")
        answer = http.get(
            config["authorization_endpoint"],
            params={
                "response_type": "code",
                "client_id": CLIENT_ID,
                "redirect_uri": REDIRECT_URI,
                "scope": scope,
                "state": state,
                "aud": ehr.iss,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
                "launch": ehr.new_launch(patient=patient, encounter=encounter, user=user),
            },
        )
        assert answer.status_code in (302, 303), answer.text
        query = parse_qs(urlsplit(answer.headers["location"]).query)
        assert query["state"] == [state], query
        form = {
            "grant_type": "authorization_code",
            "code": query["code"][0],
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
        }
        auth = (CLIENT_ID, ehr.client_secret) if ehr.client_secret else None
        if auth is None:
            form["client_id"] = CLIENT_ID
        token = http.post(config["token_endpoint"], data=form, auth=auth)
        assert token.status_code == 200, token.text
        body: dict[str, Any] = token.json()
        body["token_endpoint"] = config["token_endpoint"]
        return body
