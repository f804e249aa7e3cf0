"""The SMART EHR double speaks SMART App Launch 2.x and FHIR R4 and checks what it receives (issue 13)."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest

from tests.smart.double import NHI_SYSTEM, EhrDouble

SCOPE = "launch openid fhirUser " + " ".join(
    f"patient/{t}" for t in ("Patient.rs", "Encounter.rs", "Media.c", "DocumentReference.c")
)
JPEG = base64.b64encode(b"\xff\xd8\xff\xe0 not really a jpeg").decode()


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30.0, trust_env=False) as client:
        yield client


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def authorize(ehr: EhrDouble, http: httpx.Client, challenge: str, **given: str | None) -> dict[str, str]:
    """GET /authorize, the usual parameters overridden by `given` (None drops one): the redirect's query."""
    config = http.get(f"{ehr.iss}/.well-known/smart-configuration").json()
    params = {
        "response_type": "code",
        "client_id": ehr.client_id,
        "redirect_uri": ehr.redirect_uri,
        "scope": SCOPE,
        "state": "s1",
        "aud": ehr.iss,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "nonce": "n1",
    } | given
    response = http.get(
        config["authorization_endpoint"], params={k: v for k, v in params.items() if v is not None}
    )
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(ehr.redirect_uri + "?")
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def exchange(ehr: EhrDouble, http: httpx.Client, code: str, verifier: str, **extra: Any) -> httpx.Response:
    config = http.get(f"{ehr.iss}/.well-known/smart-configuration").json()
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": ehr.redirect_uri}
    form |= {"code_verifier": verifier, "client_id": ehr.client_id} | extra
    return http.post(config["token_endpoint"], data=form)


@pytest.fixture
def context(ehr: EhrDouble) -> dict[str, str]:
    pid = ehr.add_patient(family="Smith", given="Jane", birth_date="1980-04-02", nhi="ZZZ0016")
    return {"patient": pid, "encounter": ehr.add_encounter(pid), "user": ehr.add_practitioner()}


def launched(ehr: EhrDouble, http: httpx.Client, context: dict[str, str]) -> dict[str, Any]:
    verifier, challenge = pkce()
    answer = authorize(ehr, http, challenge, launch=ehr.new_launch(**context))
    response = exchange(ehr, http, answer["code"], verifier)
    assert response.status_code == 200, response.text
    token: dict[str, Any] = response.json()
    return token


def test_discovery_lists_endpoints_capabilities_and_v2_scopes(ehr: EhrDouble, http: httpx.Client) -> None:
    config = http.get(f"{ehr.iss}/.well-known/smart-configuration").json()
    assert config["issuer"] == ehr.iss
    assert config["code_challenge_methods_supported"] == ["S256"]
    assert {"launch-ehr", "launch-standalone", "permission-v2"} <= set(config["capabilities"])
    assert "permission-v1" not in config["capabilities"]
    assert http.get(config["jwks_uri"]).json()["keys"][0]["alg"] == "RS256"
    metadata = http.get(f"{ehr.iss}/metadata").json()
    assert metadata["resourceType"] == "CapabilityStatement"


def test_ehr_launch_gives_context_and_a_signed_id_token(
    ehr: EhrDouble, http: httpx.Client, context: dict[str, str]
) -> None:
    token = launched(ehr, http, context)
    assert token["patient"] == context["patient"]
    assert token["encounter"] == context["encounter"]
    assert token["token_type"] == "Bearer"
    assert "refresh_token" not in token
    config = http.get(f"{ehr.iss}/.well-known/smart-configuration").json()
    key = jwt.PyJWK(http.get(config["jwks_uri"]).json()["keys"][0])
    claims = jwt.decode(token["id_token"], key, algorithms=["RS256"], audience="consultcam", issuer=ehr.iss)
    assert claims["nonce"] == "n1"
    assert claims["fhirUser"] == f"{ehr.iss}/{context['user']}"
    assert ehr.token_requests() == [
        {
            "grant_type": "authorization_code",
            "code_verifier_ok": True,
            "redirect_uri": ehr.redirect_uri,
            "client_auth": "none",
        }
    ]
    bearer = {"Authorization": f"Bearer {token['access_token']}"}
    patient = http.get(f"{ehr.iss}/Patient/{context['patient']}", headers=bearer).json()
    assert patient["identifier"] == [{"system": NHI_SYSTEM, "value": "ZZZ0016"}]
    encounter = http.get(f"{ehr.iss}/Encounter/{context['encounter']}", headers=bearer).json()
    assert encounter["subject"] == {"reference": f"Patient/{context['patient']}"}
    assert ehr.requests()[-1]["headers"]["authorization"] == "Bearer [redacted]"


def test_wrong_verifier_and_replayed_code_are_invalid_grant(
    ehr: EhrDouble, http: httpx.Client, context: dict[str, str]
) -> None:
    verifier, challenge = pkce()
    code = authorize(ehr, http, challenge, launch=ehr.new_launch(**context))["code"]
    wrong = exchange(ehr, http, code, pkce()[0])
    assert wrong.status_code == 400
    assert wrong.json()["error"] == "invalid_grant"
    assert exchange(ehr, http, code, verifier).json()["error"] == "invalid_grant"  # the code is used up
    assert [r["code_verifier_ok"] for r in ehr.token_requests()] == [False, True]


def test_authorize_checks_aud_pkce_launch_scope_and_denial(
    ehr: EhrDouble, http: httpx.Client, context: dict[str, str]
) -> None:
    _, challenge = pkce()
    launch = ehr.new_launch(**context)
    assert (
        authorize(ehr, http, challenge, launch=launch, aud="http://evil.example/fhir")["error"]
        == "invalid_request"
    )
    assert (
        authorize(ehr, http, challenge, launch=launch, code_challenge_method=None)["error"]
        == "invalid_request"
    )
    assert authorize(ehr, http, challenge, launch="forged")["error"] == "invalid_request"
    v1 = authorize(ehr, http, challenge, launch=launch, scope="launch openid patient/Patient.read")
    assert v1["error"] == "invalid_scope"
    ehr.deny_next()
    denied = authorize(ehr, http, challenge, launch=launch)
    assert denied == {"error": "access_denied", "error_description": "the user declined", "state": "s1"}
    assert "code" in authorize(ehr, http, challenge, launch=launch)
    bad = http.get(
        f"{ehr.root}/auth/authorize", params={"client_id": "consultcam", "redirect_uri": "http://x/cb"}
    )
    assert bad.status_code == 400
    assert "redirect_uri" in bad.text


def test_standalone_launch_picks_the_selected_patient(ehr: EhrDouble, http: httpx.Client) -> None:
    first = ehr.add_patient(nhi=None)
    ehr.add_practitioner()
    verifier, challenge = pkce()
    code = authorize(ehr, http, challenge, scope=SCOPE.replace("launch ", "launch/patient "))["code"]
    token = exchange(ehr, http, code, verifier).json()
    assert token["patient"] == first
    assert "encounter" not in token


def test_v1_server_takes_read_write_names(http: httpx.Client) -> None:
    with EhrDouble(permission="v1", client_secret="s3cret") as ehr:
        config = http.get(f"{ehr.iss}/.well-known/smart-configuration").json()
        assert "permission-v2" not in config["capabilities"]
        assert "patient/*.read" in config["scopes_supported"]
        pid = ehr.add_patient()
        verifier, challenge = pkce()
        scope = "launch openid fhirUser offline_access patient/Patient.read patient/Media.write"
        code = authorize(ehr, http, challenge, launch=ehr.new_launch(patient=pid), scope=scope)["code"]
        assert authorize(ehr, http, challenge, launch=ehr.new_launch(patient=pid))["error"] == "invalid_scope"
        public = exchange(ehr, http, code, verifier)
        assert public.status_code == 401
        assert public.json()["error"] == "invalid_client"
        code = authorize(ehr, http, challenge, launch=ehr.new_launch(patient=pid), scope=scope)["code"]
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": ehr.redirect_uri}
        response = http.post(
            config["token_endpoint"], data=form | {"code_verifier": verifier}, auth=("consultcam", "s3cret")
        )
        assert response.status_code == 200
        assert "refresh_token" in response.json()
        assert ehr.token_requests()[-1]["client_auth"] == "client_secret_basic"
        refreshed = http.post(
            config["token_endpoint"],
            data={"grant_type": "refresh_token", "refresh_token": response.json()["refresh_token"]},
            auth=("consultcam", "s3cret"),
        )
        assert refreshed.status_code == 200
        assert refreshed.json()["access_token"] != response.json()["access_token"]


def media(patient: str, image: str = "img-1") -> dict[str, Any]:
    return {
        "resourceType": "Media",
        "status": "completed",
        "identifier": [{"system": "urn:consultcam:image", "value": image}],
        "subject": {"reference": f"Patient/{patient}"},
        "content": {"contentType": "image/jpeg", "data": JPEG},
    }


def test_writes_are_validated_scoped_and_conditional(
    ehr: EhrDouble, http: httpx.Client, context: dict[str, str]
) -> None:
    token = launched(ehr, http, context)
    headers = {"Authorization": f"Bearer {token['access_token']}", "Content-Type": "application/fhir+json"}
    condition = {"If-None-Exist": "identifier=urn:consultcam:image|img-1"}
    created = http.post(
        f"{ehr.iss}/Media", content=json.dumps(media(context["patient"])), headers=headers | condition
    )
    assert created.status_code == 201
    assert created.headers["location"].startswith(f"{ehr.iss}/Media/")
    again = http.post(
        f"{ehr.iss}/Media", content=json.dumps(media(context["patient"])), headers=headers | condition
    )
    assert again.status_code == 200
    assert len(ehr.resources("Media")) == 1
    invalid = http.post(
        f"{ehr.iss}/Media", content=json.dumps({**media(context["patient"]), "status": 7}), headers=headers
    )
    assert invalid.status_code == 422
    assert invalid.json()["resourceType"] == "OperationOutcome"
    other = ehr.add_patient(nhi="ZZZ0024")
    assert http.post(f"{ehr.iss}/Media", content=json.dumps(media(other)), headers=headers).status_code == 403
    assert http.get(f"{ehr.iss}/Patient/{other}", headers=headers).status_code == 403
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"urn:uuid:{secrets.token_hex(16)}",
                "resource": media(context["patient"], image),
                "request": {
                    "method": "POST",
                    "url": "Media",
                    "ifNoneExist": f"identifier=urn:consultcam:image|{image}",
                },
            }
            for image in ("img-1", "img-2")
        ],
    }
    answer = http.post(ehr.iss, content=json.dumps(bundle), headers=headers).json()
    assert [e["response"]["status"] for e in answer["entry"]] == ["200 OK", "201 Created"]
    bundle["entry"][1]["resource"]["subject"] = {"reference": f"Patient/{other}"}  # type: ignore[index]
    assert http.post(ehr.iss, content=json.dumps(bundle), headers=headers).status_code == 403
    assert len(ehr.resources("Media")) == 2  # all or nothing


def test_expired_tokens_answer_401_and_media_can_be_switched_off(
    ehr: EhrDouble, http: httpx.Client, context: dict[str, str]
) -> None:
    token = launched(ehr, http, context)
    headers = {"Authorization": f"Bearer {token['access_token']}", "Content-Type": "application/fhir+json"}
    ehr.set_media_supported(False)
    types = [r["type"] for r in http.get(f"{ehr.iss}/metadata").json()["rest"][0]["resource"]]
    assert "Media" not in types
    assert "DocumentReference" in types
    assert (
        http.post(
            f"{ehr.iss}/Media", content=json.dumps(media(context["patient"])), headers=headers
        ).status_code
        == 404
    )
    ehr.expire_tokens()
    expired = http.get(f"{ehr.iss}/Patient/{context['patient']}", headers=headers)
    assert expired.status_code == 401
    assert "invalid_token" in expired.headers["www-authenticate"]
    assert http.get(f"{ehr.iss}/Patient/{context['patient']}").status_code == 401


def test_next_id_token_can_be_spoiled(ehr: EhrDouble, http: httpx.Client, context: dict[str, str]) -> None:
    ehr.next_id_token(nonce="wrong", fhirUser=None)
    claims = jwt.decode(launched(ehr, http, context)["id_token"], options={"verify_signature": False})
    assert claims["nonce"] == "wrong"
    assert "fhirUser" not in claims
    assert (
        jwt.decode(launched(ehr, http, context)["id_token"], options={"verify_signature": False})["nonce"]
        == "n1"
    )


def test_stop_answering_keeps_what_was_seen(ehr: EhrDouble, http: httpx.Client) -> None:
    http.get(f"{ehr.iss}/metadata")
    ehr.fail(503, path_prefix="/fhir/.well-known")
    assert http.get(f"{ehr.iss}/.well-known/smart-configuration").status_code == 503
    ehr.stop_answering()
    assert [r["status"] for r in ehr.requests()] == [200, 503]
    with pytest.raises(httpx.ConnectError):
        http.get(f"{ehr.iss}/metadata")
