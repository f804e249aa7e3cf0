"""The Medtech ALEX double answers like ALEX (issue 12): what it accepts, the refusals consultcam must meet.

Real HTTP with httpx against the double's own process (the `alex` fixture, tests/medtech/conftest.py).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tests.medtech.double import NHI_SYSTEM, AlexDouble
from tests.medtech.wire import DECODE, FACILITY, NHI, diagnostics, document, image, media, post, token

# -- token ---------------------------------------------------------------------------------------------------


def test_token_by_form_and_by_basic(alex: AlexDouble, http: httpx.Client) -> None:
    form = {"grant_type": "client_credentials", "scope": alex.scope}
    by_form = http.post(
        alex.token_url, data={**form, "client_id": alex.client_id, "client_secret": alex.client_secret}
    )
    by_basic = http.post(alex.token_url, data=form, auth=(alex.client_id, alex.client_secret))
    for answer in (by_form, by_basic):
        assert answer.status_code == 200
        assert answer.json()["token_type"] == "Bearer"
        assert answer.json()["expires_in"] == 3599
        assert answer.headers["content-type"].startswith("application/json")
        assert answer.headers["cache-control"] == "no-store"
    assert by_form.json()["access_token"] != by_basic.json()["access_token"]


def test_token_refuses_a_bad_client_secret_grant_or_scope(alex: AlexDouble, http: httpx.Client) -> None:
    good = {
        "grant_type": "client_credentials",
        "client_id": alex.client_id,
        "client_secret": alex.client_secret,
        "scope": alex.scope,
    }
    wrong_secret = http.post(alex.token_url, data={**good, "client_secret": alex.client_secret + "x"})
    assert wrong_secret.status_code == 401
    assert wrong_secret.json()["error"] == "invalid_client"
    assert "access_token" not in wrong_secret.json()
    assert http.post(alex.token_url, data=good, auth=(alex.client_id, "nope")).status_code == 401
    assert http.post(alex.token_url, data={**good, "client_id": "someone-else"}).status_code == 401
    grant = http.post(alex.token_url, data={**good, "grant_type": "password"})
    assert (grant.status_code, grant.json()["error"]) == (400, "unsupported_grant_type")
    scope = http.post(alex.token_url, data={**good, "scope": "api://other/.default"})
    assert (scope.status_code, scope.json()["error"]) == (400, "invalid_scope")


@pytest.mark.parametrize("given", [None, "Bearer not-a-token", "Basic abc", "Bearer"])
def test_alex_calls_without_a_valid_bearer_are_refused(
    alex: AlexDouble, http: httpx.Client, patient: str, given: str | None
) -> None:
    context, signature = alex.launch(patient)
    headers = {"mt-facilityid": FACILITY} | ({"Authorization": given} if given is not None else {})
    read = http.get(f"{alex.fhir_url}/Patient/{patient}", headers=headers)
    assert read.status_code == 401
    assert read.headers["www-authenticate"].startswith("Bearer")
    assert "bearer token" in diagnostics(read)
    decode = http.get(f"{alex.root}{DECODE}/{context}/{signature}", headers=headers)
    assert (decode.status_code, decode.json()["error"]) == (401, "invalid_token")
    assert alex.decode_count() == 0


def test_revoked_tokens_are_refused(alex: AlexDouble, http: httpx.Client, auth: dict[str, str]) -> None:
    assert http.get(f"{alex.fhir_url}/metadata", headers=auth).status_code == 200
    alex.revoke_tokens()
    assert http.get(f"{alex.fhir_url}/metadata", headers=auth).status_code == 401
    fresh = {**auth, "Authorization": f"Bearer {token(alex, http)}"}
    assert http.get(f"{alex.fhir_url}/metadata", headers=fresh).status_code == 200


# -- launch --------------------------------------------------------------------------------------------------


def test_decode_answers_the_launch_with_the_new_zealand_offset(
    alex: AlexDouble, http: httpx.Client, patient: str
) -> None:
    bearer = {"Authorization": f"Bearer {token(alex, http)}"}  # no mt-facilityid: the decode needs none
    summer = alex.launch(patient, provider_id="PRV123", created=datetime(2026, 12, 3, 2, 4, 5, tzinfo=UTC))
    winter = alex.launch(None, facility_code="F9Z999-A", created=datetime(2026, 7, 1, 0, 0, tzinfo=UTC))
    answer = http.get(f"{alex.root}{DECODE}/{summer[0]}/{summer[1]}", headers=bearer)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.json() == {
        "patientId": patient,
        "facilityCode": FACILITY,
        "providerId": "PRV123",
        "createdTime": "2026-12-03T15:04:05+13:00",
    }
    no_patient = http.get(f"{alex.root}{DECODE}/{winter[0]}/{winter[1]}", headers=bearer).json()
    assert no_patient["patientId"] is None
    assert (no_patient["facilityCode"], no_patient["createdTime"]) == (
        "F9Z999-A",
        "2026-07-01T12:00:00+12:00",
    )
    again = http.get(f"{alex.root}{DECODE}/{summer[0]}/{summer[1]}", headers=bearer)
    assert again.status_code == 200  # refusing a reused context is consultcam's job, not ALEX's
    assert alex.decode_count() == 3
    assert "mt-facilityid" not in alex.requests()[-1]["headers"]


def test_decode_refuses_a_bad_signature(alex: AlexDouble, http: httpx.Client, patient: str) -> None:
    bearer = {"Authorization": f"Bearer {token(alex, http)}"}
    context, signature = alex.launch(patient)
    other_context, other_signature = alex.launch(patient)
    # The signature is the base64url HMAC-SHA256 of the context under the double's key.
    digest = hmac.new(alex.signing_key, context.encode(), hashlib.sha256).digest()
    assert signature == base64.urlsafe_b64encode(digest).decode().rstrip("=")
    forged_key = hmac.new(os.urandom(32), context.encode(), hashlib.sha256).digest()
    unknown = "bm90LWEtbGF1bmNoLWNvbnRleHQ"
    unknown_signature = base64.urlsafe_b64encode(
        hmac.new(alex.signing_key, unknown.encode(), hashlib.sha256).digest()
    ).decode()
    bad = [
        (context, other_signature),  # another launch's signature
        (other_context, signature),
        (context, signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")),  # tampered
        (context, base64.urlsafe_b64encode(forged_key).decode().rstrip("=")),  # right shape, wrong key
        (context + "x", signature),  # tampered context
        (unknown, unknown_signature.rstrip("=")),  # properly signed, but Medtech never made it
    ]
    for pair in bad:
        answer = http.get(f"{alex.root}{DECODE}/{pair[0]}/{pair[1]}", headers=bearer)
        assert answer.status_code == 400, pair
        assert answer.json()["error"] == "invalid_signature"
        assert "patientId" not in answer.json()
    assert http.get(f"{alex.root}{DECODE}/{context}", headers=bearer).status_code == 404
    assert alex.decode_count() == 0
    assert http.get(f"{alex.root}{DECODE}/{context}/{signature}", headers=bearer).status_code == 200


def test_launch_query_is_url_encoded(alex: AlexDouble) -> None:
    query = alex.launch_query(None)
    assert query.startswith("context=")
    assert "&signature=" in query
    with pytest.raises(ValueError, match="aware"):
        alex.launch(None, created=datetime(2026, 12, 3, 15, 4, 5))  # naive on purpose


# -- FHIR reads and searches ---------------------------------------------------------------------------------


def test_fhir_calls_need_mt_facilityid(alex: AlexDouble, http: httpx.Client, patient: str) -> None:
    bearer = {"Authorization": f"Bearer {token(alex, http)}"}
    for url in (f"{alex.fhir_url}/metadata", f"{alex.fhir_url}/Patient/{patient}"):
        answer = http.get(url, headers=bearer)
        assert answer.status_code == 400
        assert "mt-facilityid header is required" in diagnostics(answer)
    created = post(http, alex, bearer, document(patient, image("TIFF")))
    assert created.status_code == 400
    assert alex.resources("DocumentReference") == []
    empty = http.get(f"{alex.fhir_url}/Patient/{patient}", headers={**bearer, "mt-facilityid": ""})
    assert empty.status_code == 400


def test_patient_read_and_capability_statement(
    alex: AlexDouble, http: httpx.Client, auth: dict[str, str], patient: str
) -> None:
    answer = http.get(f"{alex.fhir_url}/Patient/{patient}", headers=auth)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/fhir+json")
    body = answer.json()
    assert (body["resourceType"], body["id"], body["birthDate"]) == ("Patient", patient, "1980-04-02")
    assert body["identifier"] == [{"system": NHI_SYSTEM, "value": NHI}]
    assert body["name"] == [{"family": "Smith", "given": ["Jane"]}]
    missing = http.get(f"{alex.fhir_url}/Patient/0123abcd", headers=auth)
    assert missing.status_code == 404
    assert "not known" in diagnostics(missing)
    metadata = http.get(f"{alex.fhir_url}/metadata", headers=auth).json()
    assert metadata["resourceType"] == "CapabilityStatement"
    assert "interaction" not in metadata["rest"][0]  # no transaction (nor batch)


@pytest.mark.parametrize(
    "search",
    [
        "DocumentReference?identifier=urn:consultcam:image|img-1",
        "Media?identifier=urn:consultcam:image|img-1",
        "Media?patient={pid}",
        "Media?subject=Patient/{pid}",
        "DocumentReference?subject=Patient/{pid}",
        "DocumentReference?patient.identifier={nhi_system}|ZZZ0016&_count=50",
        "DocumentReference?patient.identifier=ZZZ0016",
        "DocumentReference",
        "Patient?name=Smith",
        "Patient?patient.identifier={nhi_system}|ZZZ0016",
    ],
)
def test_other_search_shapes_are_forbidden(
    alex: AlexDouble, http: httpx.Client, auth: dict[str, str], patient: str, search: str
) -> None:
    url = f"{alex.fhir_url}/" + search.format(pid=patient, nhi_system=NHI_SYSTEM)
    answer = http.get(url, headers=auth)
    assert answer.status_code == 403
    assert "not permitted" in diagnostics(answer)


def test_the_two_search_shapes_alex_answers(
    alex: AlexDouble, http: httpx.Client, auth: dict[str, str], patient: str
) -> None:
    other = alex.add_patient(nhi="ZZZ0024", family="Other", given=["A", "B"], birth_date="1990-01-01")
    mine = post(http, alex, auth, document(patient, image("TIFF"))).json()
    post(http, alex, auth, document(other, image("TIFF")))
    found = http.get(f"{alex.fhir_url}/Patient", params={"identifier": f"{NHI_SYSTEM}|{NHI}"}, headers=auth)
    assert found.status_code == 200
    assert [e["resource"]["id"] for e in found.json()["entry"]] == [patient]
    documents = http.get(
        f"{alex.fhir_url}/DocumentReference",
        params={"patient.identifier": f"{NHI_SYSTEM}|{NHI}"},
        headers=auth,
    )
    assert documents.status_code == 200
    bundle = documents.json()
    assert (bundle["type"], bundle["total"]) == ("searchset", 1)
    assert bundle["entry"][0]["resource"] == mine
    assert bundle["entry"][0]["fullUrl"] == f"{alex.fhir_url}/DocumentReference/{mine['id']}"
    media = http.get(
        f"{alex.fhir_url}/Media", params={"patient.identifier": f"{NHI_SYSTEM}|{NHI}"}, headers=auth
    )
    assert media.json()["total"] == 0


# -- deletes and controls ------------------------------------------------------------------------------------


def test_delete_and_refuse_deletes(
    alex: AlexDouble, http: httpx.Client, auth: dict[str, str], patient: str
) -> None:
    first = post(http, alex, auth, document(patient, image("TIFF"))).json()
    second = post(http, alex, auth, media(patient)).json()
    alex.refuse_deletes(True)
    refused = http.delete(f"{alex.fhir_url}/DocumentReference/{first['id']}", headers=auth)
    assert refused.status_code == 403
    assert "not permitted to delete" in diagnostics(refused)
    assert alex.resources("DocumentReference") == [first]
    alex.refuse_deletes(False)
    for kind, rid in (("DocumentReference", first["id"]), ("Media", second["id"])):
        assert http.delete(f"{alex.fhir_url}/{kind}/{rid}", headers=auth).status_code == 204
        assert http.get(f"{alex.fhir_url}/{kind}/{rid}", headers=auth).status_code == 410
        assert http.delete(f"{alex.fhir_url}/{kind}/{rid}", headers=auth).status_code == 204  # already gone
    assert alex.resources("DocumentReference") == alex.resources("Media") == []
    assert http.delete(f"{alex.fhir_url}/DocumentReference/0123abcd", headers=auth).status_code == 404
    assert http.delete(f"{alex.fhir_url}/Patient/{patient}", headers=auth).status_code == 405


def test_fail_answers_the_next_matching_calls_and_does_nothing(
    alex: AlexDouble, http: httpx.Client, auth: dict[str, str], patient: str
) -> None:
    alex.fail(status=503, times=2, retry_after=7)
    for _ in range(2):
        failed = post(http, alex, auth, document(patient, image("TIFF")))
        assert failed.status_code == 503
        assert failed.headers["retry-after"] == "7"
        assert (
            http.get(f"{alex.fhir_url}/Patient/{patient}", headers=auth).status_code == 200
        )  # GET: unmatched
    assert alex.resources("DocumentReference") == []
    assert post(http, alex, auth, document(patient, image("TIFF"))).status_code == 201
    alex.fail(status=500, times=1, method=None, path_prefix="/FHIR/Patient")
    unavailable = http.get(f"{alex.fhir_url}/Patient/{patient}", headers=auth)
    assert (unavailable.status_code, "retry-after" in unavailable.headers) == (500, False)
    alex.fail(status=429, method="POST", path_prefix="/oauth2/")
    throttled = http.post(alex.token_url, data={"grant_type": "client_credentials"})
    assert throttled.status_code == 429
    token(alex, http)  # once only


def test_requests_records_every_alex_call_without_secrets(
    alex: AlexDouble, http: httpx.Client, patient: str
) -> None:
    access = token(alex, http)
    headers = {"Authorization": f"Bearer {access}", "mt-facilityid": FACILITY, "mt-correlationid": "c-1"}
    http.get(
        f"{alex.fhir_url}/DocumentReference",
        params={"patient.identifier": f"{NHI_SYSTEM}|{NHI}"},
        headers=headers,
    )
    http.get(f"{alex.fhir_url}/Media", params={"patient": patient}, headers=headers)
    http.get(f"{alex.fhir_url}/metadata")
    alex.resources("Patient")  # controls are not recorded
    calls = alex.requests()
    assert [(c["method"], c["path"], c["status"]) for c in calls] == [
        ("POST", "/oauth2/v2.0/token", 200),
        ("GET", "/FHIR/DocumentReference", 200),
        ("GET", "/FHIR/Media", 403),
        ("GET", "/FHIR/metadata", 401),
    ]
    assert calls[1]["query"] == f"patient.identifier={NHI_SYSTEM}|{NHI}"
    assert calls[1]["headers"]["mt-facilityid"] == FACILITY
    assert calls[1]["headers"]["mt-correlationid"] == "c-1"
    assert calls[1]["headers"]["authorization"] == "Bearer [redacted]"
    assert "authorization" not in calls[3]["headers"]
    assert access not in json.dumps(calls)
    assert alex.client_secret not in json.dumps(calls)
    assert alex.client_secret not in repr(alex)


def test_stop_answering_refuses_connections_and_keeps_the_record(
    alex: AlexDouble, http: httpx.Client, auth: dict[str, str], patient: str
) -> None:
    stored = post(http, alex, auth, document(patient, image("TIFF"))).json()
    alex.stop_answering()
    with pytest.raises(httpx.ConnectError):
        http.get(f"{alex.fhir_url}/Patient/{patient}", headers=auth)
    with pytest.raises(httpx.ConnectError):
        http.post(alex.token_url, data={"grant_type": "client_credentials"})
    assert alex.resources("DocumentReference") == [stored]
    assert [c["path"] for c in alex.requests()] == ["/oauth2/v2.0/token", "/FHIR/DocumentReference"]
    assert alex.decode_count() == 0


def test_the_double_is_its_own_process_group_and_dies_with_the_handle() -> None:
    with AlexDouble() as alex:
        process = alex._process
        assert process is not None
        assert os.getpgid(process.pid) == process.pid != os.getpgid(0)
        assert alex.emr_url == f"alex+http://127.0.0.1:{alex.root.rsplit(':', 1)[1]}/FHIR"
        assert alex.env()["CONSULTCAM_ALEX_CLIENT_SECRET"] == alex.client_secret
        fhir_url = alex.fhir_url
    assert process.poll() is not None
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{fhir_url}/metadata")


def test_the_double_exits_when_its_starter_dies_without_cleaning_up() -> None:
    script = (
        "import os\nfrom tests.medtech.double import AlexDouble\n"
        "alex = AlexDouble()\nalex.start()\nprint(alex.fhir_url, flush=True)\nos._exit(0)\n"
    )
    root = Path(__file__).resolve().parents[2]
    started = subprocess.run(
        [sys.executable, "-c", script],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        stdout=subprocess.PIPE,  # not stderr: the double inherits it, and run() would wait for the double
        stderr=subprocess.DEVNULL,
        text=True,
        timeout=60,
        check=True,
    )
    fhir_url = started.stdout.strip()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{fhir_url}/metadata", timeout=1)
        except httpx.ConnectError:
            return
        time.sleep(0.1)
    pytest.fail(f"the double at {fhir_url} still answers after its starter died")
