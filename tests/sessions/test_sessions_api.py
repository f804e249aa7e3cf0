"""Capture sessions over HTTP: creating (with a QR code), resuming, validating the patient, who may do
what (clinician, its phone, another session's phone, nobody), revoking the phone and cancelling."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from consultcam.config import PRACTICE_TIMEZONE
from consultcam.models import CaptureSession, ClinicalImage, PairingToken, utcnow
from tests.conftest import (
    CLINICIAN_TOKEN,
    PATIENT,
    assert_error,
    jpeg_bytes,
    pair_phone,
    record_consent,
    start_session,
    token_of,
    upload,
)


def create(
    clinician: httpx.AsyncClient,
    encounter: str = "enc-1",
    patient: dict[str, Any] | None = None,
    **extra: Any,
) -> Any:
    body = {"encounterId": encounter, "patient": patient or PATIENT, **extra}
    return clinician.post("/api/sessions", json=body)


def store_files(runtime: Any, session_id: str | None = None) -> list[Path]:
    root = Path(runtime.store.root) / "sessions"
    if session_id:
        root = root / session_id
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


async def count_rows(runtime: Any, model: Any, **where: Any) -> int:
    async with runtime.sessionmaker() as db:
        query = select(func.count()).select_from(model)
        for key, value in where.items():
            query = query.where(getattr(model, key) == value)
        return int((await db.execute(query)).scalar_one())


# --- creating and resuming ------------------------------------------------------------------------------


async def test_create_session_returns_201_with_a_qr_code(clinician: httpx.AsyncClient, settings: Any) -> None:
    response = await create(clinician, practitionerId="prac-7", facilityId="fac-3")
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["status"] == "open"
    assert body["encounterId"] == "enc-1"
    assert body["patient"] == PATIENT
    assert body["practitionerId"] == "prac-7"
    assert body["facilityId"] == "fac-3"
    assert body["maxImages"] == settings.max_images == 50
    assert body["imageCount"] == 0
    assert body["phone"] is None
    created = datetime.fromisoformat(body["createdAt"])
    expires = datetime.fromisoformat(body["expiresAt"])
    assert abs(created - utcnow()) < timedelta(seconds=30)
    idle = timedelta(minutes=settings.session_idle_minutes)
    assert idle <= expires - created < idle + timedelta(seconds=30)

    pairing = body["pairing"]
    assert pairing["url"].startswith("http://testserver/m/")  # no PUBLIC_URL: the address the desktop used
    token = token_of(pairing["url"])
    assert len(token) >= 22
    assert "/" not in token
    assert "?" not in token
    svg = ET.fromstring(pairing["qrSvg"])
    assert svg.tag.endswith("svg")
    assert any(el.tag.endswith("path") for el in svg.iter())
    assert token not in pairing["qrSvg"]  # the token is in the modules, not in readable text
    assert datetime.fromisoformat(pairing["expiresAt"]) > utcnow()


async def test_public_url_is_used_in_qr_codes(clinician: httpx.AsyncClient, settings: Any) -> None:
    settings.public_url = "https://gp-desk.example.nz:8443"
    body = (await create(clinician)).json()
    assert body["pairing"]["url"].startswith("https://gp-desk.example.nz:8443/m/")


async def test_same_encounter_again_resumes_the_session_with_a_fresh_code(
    clinician: httpx.AsyncClient, new_client: Any, runtime: Any
) -> None:
    first = await create(clinician)
    assert first.status_code == 201
    again = await create(clinician)
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["pairing"]["url"] != first.json()["pairing"]["url"]
    assert await count_rows(runtime, CaptureSession) == 1

    old = await new_client().post("/api/pair", json={"token": token_of(first.json()["pairing"]["url"])})
    assert_error(old, 410, "PairingTokenReplaced", "newer")
    fresh = await new_client().post("/api/pair", json={"token": token_of(again.json()["pairing"]["url"])})
    assert fresh.status_code == 200, fresh.text


async def test_resuming_keeps_the_paired_phone(clinician: httpx.AsyncClient, new_client: Any) -> None:
    session = await start_session(clinician)
    phone = await pair_phone(new_client, session)
    again = await create(clinician)
    assert again.status_code == 200
    assert again.json()["phone"] is not None
    assert (await phone.get(f"/api/sessions/{session['id']}")).status_code == 200


async def test_same_encounter_with_another_patient_is_409(clinician: httpx.AsyncClient, runtime: Any) -> None:
    first = await create(clinician)
    other = {"id": "pat-2", "name": "Other Person", "nhi": "ZZZ0024"}
    response = await create(clinician, patient=other)
    assert_error(response, 409, "EncounterPatientMismatch", "different patient")
    assert await count_rows(runtime, CaptureSession) == 1
    # The open session's code was not replaced by the refused call.
    assert await count_rows(runtime, PairingToken, session_id=first.json()["id"]) == 1


async def test_another_encounter_gets_another_session(clinician: httpx.AsyncClient) -> None:
    first = await create(clinician, "enc-1")
    second = await create(clinician, "enc-2")
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] != second.json()["id"]


async def test_encounter_of_a_cancelled_session_gets_a_new_session(clinician: httpx.AsyncClient) -> None:
    first = (await create(clinician)).json()
    assert (await clinician.delete(f"/api/sessions/{first['id']}")).status_code == 204
    second = await create(clinician)
    assert second.status_code == 201
    assert second.json()["id"] != first["id"]


# --- bad input -----------------------------------------------------------------------------------------


async def test_no_credentials_is_401_with_www_authenticate(anonymous: httpx.AsyncClient) -> None:
    response = await create(anonymous)
    body = assert_error(response, 401, "NotAuthenticated", "sign in")
    assert response.headers["www-authenticate"].lower().startswith("bearer")
    assert "clinician" in body["detail"].lower()
    for method, path in (
        ("GET", "/api/sessions/x"),
        ("DELETE", "/api/sessions/x"),
        ("POST", "/api/sessions/x/pairing"),
        ("POST", "/api/sessions/x/uploads"),
        ("GET", "/api/sessions/x/images"),
        ("POST", "/api/sessions/x/commit"),
        ("GET", "/api/sessions/x/events"),
        ("DELETE", "/api/sessions/x/phone"),
    ):
        answer = await anonymous.request(method, path, json={})
        assert answer.status_code == 401, (method, path, answer.text)
        assert "www-authenticate" in answer.headers


@pytest.mark.parametrize(
    "authorization",
    ["Bearer wrong-token-0123456789abcdef", "Basic Y2xpbmljaWFuOng=", f"Bearer {CLINICIAN_TOKEN}x"],
)
async def test_wrong_clinician_credentials_are_401(new_client: Any, authorization: str, runtime: Any) -> None:
    async with new_client(authorization=authorization) as client:
        response = await create(client)
    assert_error(response, 401, None, "sign in")
    assert "www-authenticate" in response.headers
    assert await count_rows(runtime, CaptureSession) == 0


async def test_forged_clinician_cookie_is_401(new_client: Any) -> None:
    async with new_client() as client:
        client.cookies.set("consultcam_clinician", f"{int(utcnow().timestamp()) + 3600}.{'0' * 64}")
        await client.get("/healthz")  # a page's first answer: its CSRF token, so the cookie itself is judged
        assert_error(await create(client), 401, "NotAuthenticated")


async def test_invalid_nhi_is_422_and_names_it(clinician: httpx.AsyncClient, runtime: Any) -> None:
    response = await create(clinician, patient={**PATIENT, "nhi": "ZZZ0017"})  # check digit should be 6
    body = assert_error(response, 422, "InvalidRequest", "ZZZ0017", "NHI", "check")
    assert "patient.nhi" in body["detail"]
    assert await count_rows(runtime, CaptureSession) == 0


@pytest.mark.parametrize("nhi", ["ZZZ00AB", "ABC123", "ZZZ00016", "ZZI0016", "123ABCD"])
async def test_malformed_nhis_are_422(clinician: httpx.AsyncClient, nhi: str) -> None:
    assert_error(await create(clinician, patient={**PATIENT, "nhi": nhi}), 422, "InvalidRequest", nhi)


@pytest.mark.parametrize(
    ("nhi", "stored"),
    [
        ("ZZZ0016", "ZZZ0016"),
        ("ZZZ0024", "ZZZ0024"),
        ("ZZZ00AC", "ZZZ00AC"),
        (" zzz0024 ", "ZZZ0024"),
        ("", None),
    ],
)
async def test_valid_nhis_pass_and_are_normalised(
    clinician: httpx.AsyncClient, nhi: str, stored: str | None
) -> None:
    response = await create(clinician, patient={**PATIENT, "nhi": nhi})
    assert response.status_code == 201, response.text
    assert response.json()["patient"]["nhi"] == stored


async def test_future_birth_date_is_422(clinician: httpx.AsyncClient, runtime: Any) -> None:
    # "Tomorrow" where the practice is: the server checks dates in Pacific/Auckland, ahead of UTC.
    tomorrow = (datetime.now(PRACTICE_TIMEZONE).date() + timedelta(days=1)).isoformat()
    assert_error(
        await create(clinician, patient={**PATIENT, "birthDate": tomorrow}),
        422,
        "InvalidRequest",
        "birth date",
        "future",
    )
    assert await count_rows(runtime, CaptureSession) == 0
    today = await create(clinician, "enc-2", patient={**PATIENT, "birthDate": date.today().isoformat()})
    assert today.status_code == 201, today.text


@pytest.mark.parametrize(
    "body",
    [
        {"patient": PATIENT},
        {"encounterId": "enc-1"},
        {"encounterId": "", "patient": PATIENT},
        {"encounterId": "enc 1<script>", "patient": PATIENT},
        {"encounterId": "enc-1", "patient": {**PATIENT, "name": "  "}},
        {"encounterId": "enc-1", "patient": {**PATIENT, "birthDate": "29/02/1980"}},
        {"encounterId": "enc-1", "patient": PATIENT, "unexpected": True},
    ],
)
async def test_malformed_session_requests_are_422(
    clinician: httpx.AsyncClient, body: dict[str, Any], runtime: Any
) -> None:
    assert_error(await clinician.post("/api/sessions", json=body), 422, "InvalidRequest")
    assert await count_rows(runtime, CaptureSession) == 0


async def test_unknown_session_is_404(clinician: httpx.AsyncClient) -> None:
    for method in ("GET", "DELETE"):
        assert_error(
            await clinician.request(method, "/api/sessions/00000000-0000-0000-0000-000000000000"),
            404,
            "SessionNotFound",
        )


# --- reading -------------------------------------------------------------------------------------------


async def test_get_session_shows_images_and_phone(clinician: httpx.AsyncClient, new_client: Any) -> None:
    session = await start_session(clinician)
    phone = await pair_phone(new_client, session)
    registered = await upload(phone, session["id"], jpeg_bytes("cat.jpg"))
    assert registered.status_code == 201, registered.text
    for client in (clinician, phone):
        response = await client.get(f"/api/sessions/{session['id']}")
        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "no-store"
        body = response.json()
        assert body["imageCount"] == 1
        assert [image["id"] for image in body["images"]] == [registered.json()["id"]]
        assert body["images"][0]["urls"]["full"]
        assert body["phone"] is not None
        assert body["pairing"] is None


# --- a phone's reach ------------------------------------------------------------------------------------


@pytest.fixture
async def two_sessions(clinician: httpx.AsyncClient, new_client: Any) -> dict[str, Any]:
    """Session A with a paired phone, session B (another encounter and patient) with a photo."""
    a = await start_session(clinician, "enc-a")
    other_patient = {"id": "pat-b", "name": "Bea Other", "nhi": "ZZZ0024"}
    b = (await create(clinician, "enc-b", patient=other_patient)).json()
    assert (await record_consent(clinician, b["id"])).status_code == 200
    phone = await pair_phone(new_client, a)
    image = await upload(clinician, b["id"], jpeg_bytes("cat.jpg"))
    assert image.status_code == 201, image.text
    return {"a": a, "b": b, "phone": phone, "b_image": image.json()["id"]}


async def test_phone_cannot_see_or_upload_to_another_session(
    two_sessions: dict[str, Any], runtime: Any
) -> None:
    phone, b, image_id = two_sessions["phone"], two_sessions["b"]["id"], two_sessions["b_image"]
    for method, path, body in (
        ("GET", f"/api/sessions/{b}", None),
        ("GET", f"/api/sessions/{b}/images", None),
        ("GET", f"/api/sessions/{b}/images/{image_id}", None),
        ("GET", f"/api/sessions/{b}/events", None),
        ("POST", f"/api/sessions/{b}/uploads", {"contentType": "image/jpeg", "sizeBytes": 1000}),
        ("POST", f"/api/sessions/{b}/images", {"imageId": image_id}),
        ("DELETE", f"/api/sessions/{b}/images/{image_id}", None),
    ):
        response = await phone.request(method, path, json=body)
        body_json = assert_error(response, 404, None)
        assert body_json["error"] == "SessionNotFound", (method, path, body_json)
        assert "Bea Other" not in response.text
        assert "pat-b" not in response.text
    # Nothing changed in B: its photo is still there, no upload slot was made.
    assert await count_rows(runtime, ClinicalImage, session_id=b) == 1
    assert len(store_files(runtime, b)) == 2  # the JPEG and its thumbnail


async def test_phone_can_never_act_as_the_clinician(two_sessions: dict[str, Any], runtime: Any) -> None:
    phone, a, b, image_id = (
        two_sessions["phone"],
        two_sessions["a"]["id"],
        two_sessions["b"]["id"],
        two_sessions["b_image"],
    )
    calls = [("POST", "/api/sessions", {"encounterId": "enc-x", "patient": PATIENT})]
    for session_id in (a, b):
        calls += [
            ("POST", f"/api/sessions/{session_id}/pairing", None),
            ("DELETE", f"/api/sessions/{session_id}", None),
            ("PATCH", f"/api/sessions/{session_id}/images/{image_id}", {"metadata": {"label": "mine now"}}),
            ("GET", f"/api/sessions/{session_id}/images/{image_id}/download", None),
            ("GET", f"/api/sessions/{session_id}/download", None),
        ]
    for method, path, body in calls:
        response = await phone.request(method, path, json=body)
        assert_error(response, 403, "ClinicianOnly", "clinician")
    # Commit and signing out are the phone's to do only in its own session, and only as the settings and
    # the reason allow (tests/commits/test_commit_checks.py, tests/sessions/test_phone_sign_out.py).
    assert_error(
        await phone.post(f"/api/sessions/{a}/commit", json={"all": True}), 403, "PhoneCannotCommit", "desktop"
    )
    assert_error(await phone.post(f"/api/sessions/{b}/commit", json={"all": True}), 404, "SessionNotFound")
    assert_error(await phone.delete(f"/api/sessions/{a}/phone"), 422, "InvalidRevokeReason", "wrong-patient")
    assert_error(await phone.delete(f"/api/sessions/{b}/phone?reason=wrong-patient"), 404, "SessionNotFound")
    assert await count_rows(runtime, CaptureSession, status="open") == 2
    async with runtime.sessionmaker() as db:
        image = await db.get(ClinicalImage, image_id)
    assert image is not None
    assert image.image_metadata == {}
    assert image.status == "ready"
    assert await count_rows(runtime, PairingToken) == 2  # no code was issued by the phone


async def test_revoked_phone_is_401_at_once(clinician: httpx.AsyncClient, new_client: Any) -> None:
    session = await start_session(clinician)
    phone = await pair_phone(new_client, session)
    assert (await phone.get(f"/api/sessions/{session['id']}")).status_code == 200
    response = await clinician.delete(f"/api/sessions/{session['id']}/phone")
    assert response.status_code == 204
    assert response.headers["cache-control"] == "no-store"
    for method, path, body in (
        ("GET", f"/api/sessions/{session['id']}", None),
        ("POST", f"/api/sessions/{session['id']}/uploads", {"contentType": "image/jpeg", "sizeBytes": 1000}),
        ("GET", f"/api/sessions/{session['id']}/images", None),
        ("GET", f"/api/sessions/{session['id']}/events", None),
    ):
        response = await phone.request(method, path, json=body)
        assert_error(response, 401, "PhoneNotPaired", "QR code")
        assert "www-authenticate" in response.headers
    assert (await clinician.get(f"/api/sessions/{session['id']}")).json()["phone"] is None
    # A signed-out phone is not "a phone" any more: clinician calls are 401 for it too, not 403.
    assert_error(await phone.post(f"/api/sessions/{session['id']}/pairing"), 401, "InvalidCredential")
    # The session stays open: a new code pairs a phone again.
    code = (await clinician.post(f"/api/sessions/{session['id']}/pairing")).json()
    assert (await new_client().post("/api/pair", json={"token": token_of(code["url"])})).status_code == 200


async def test_revoke_without_a_phone_is_harmless(clinician: httpx.AsyncClient) -> None:
    session = await start_session(clinician)
    assert (await clinician.delete(f"/api/sessions/{session['id']}/phone")).status_code == 204
    assert_error(await clinician.delete("/api/sessions/nope/phone"), 404, "SessionNotFound")


async def test_idle_session_takes_no_more_photos_before_the_sweeper_runs(
    clinician: httpx.AsyncClient, new_client: Any, runtime: Any, settings: Any
) -> None:
    session = await start_session(clinician)
    phone = await pair_phone(new_client, session)
    idle = timedelta(minutes=settings.session_idle_minutes + 1)
    async with runtime.sessionmaker() as db, db.begin():
        await db.execute(
            update(CaptureSession)
            .where(CaptureSession.id == session["id"])
            .values(last_activity_at=utcnow() - idle)
        )
    for client in (phone, clinician):
        refused = await client.post(
            f"/api/sessions/{session['id']}/uploads", json={"contentType": "image/jpeg", "sizeBytes": 1000}
        )
        assert_error(refused, 409, "SessionExpired", "new session")
    assert_error(await clinician.post(f"/api/sessions/{session['id']}/pairing"), 409, "SessionExpired")
    assert await count_rows(runtime, ClinicalImage) == 0
    # The encounter gets a fresh session rather than the expired one.
    again = await create(clinician)
    assert again.status_code == 201
    assert again.json()["id"] != session["id"]


# --- cancelling -----------------------------------------------------------------------------------------


async def test_cancel_deletes_photos_and_objects_and_signs_the_phone_out(
    clinician: httpx.AsyncClient, new_client: Any, runtime: Any
) -> None:
    session = await start_session(clinician)
    other = await start_session(clinician, "enc-other")
    phone = await pair_phone(new_client, session)
    for name in ("cat.jpg", "coffee.jpg"):
        assert (await upload(phone, session["id"], jpeg_bytes(name))).status_code == 201
    assert (await upload(clinician, other["id"], jpeg_bytes("rocket.jpg"))).status_code == 201
    pending = await phone.post(
        f"/api/sessions/{session['id']}/uploads", json={"contentType": "image/jpeg", "sizeBytes": 5000}
    )
    assert pending.status_code == 201
    assert len(store_files(runtime, session["id"])) == 4

    response = await clinician.delete(f"/api/sessions/{session['id']}")
    assert response.status_code == 204, response.text
    assert response.content == b""
    assert response.headers["cache-control"] == "no-store"

    assert store_files(runtime, session["id"]) == []
    assert await count_rows(runtime, ClinicalImage, session_id=session["id"]) == 0
    # The other session is untouched.
    assert len(store_files(runtime, other["id"])) == 2
    assert await count_rows(runtime, ClinicalImage, session_id=other["id"]) == 1

    state = (await clinician.get(f"/api/sessions/{session['id']}")).json()
    assert state["status"] == "cancelled"
    assert state["images"] == []
    assert state["imageCount"] == 0
    assert state["phone"] is None

    # The phone was signed out with the cancel.
    assert_error(await phone.get(f"/api/sessions/{session['id']}"), 401, "PhoneNotPaired")
    answer = await phone.post(
        f"/api/sessions/{session['id']}/uploads", json={"contentType": "image/jpeg", "sizeBytes": 1000}
    )
    assert_error(answer, 401, "PhoneNotPaired")
    refused = await clinician.post(
        f"/api/sessions/{session['id']}/uploads", json={"contentType": "image/jpeg", "sizeBytes": 1000}
    )
    assert_error(refused, 409, "SessionClosed", "cancelled")
    late = await clinician.post(
        f"/api/sessions/{session['id']}/images", json={"imageId": pending.json()["imageId"]}
    )
    assert_error(late, 404, "ImageNotFound")  # the upload slot went with the session's photos
    assert_error(await clinician.post(f"/api/sessions/{session['id']}/pairing"), 409, "SessionClosed")
    assert await count_rows(runtime, ClinicalImage, session_id=session["id"]) == 0


async def test_cancel_twice_is_harmless(clinician: httpx.AsyncClient) -> None:
    session = await start_session(clinician)
    assert (await clinician.delete(f"/api/sessions/{session['id']}")).status_code == 204
    assert (await clinician.delete(f"/api/sessions/{session['id']}")).status_code == 204
    assert (await clinician.get(f"/api/sessions/{session['id']}")).json()["status"] == "cancelled"


async def test_committed_session_cannot_be_cancelled(clinician: httpx.AsyncClient, runtime: Any) -> None:
    session = await start_session(clinician)
    assert (await upload(clinician, session["id"], jpeg_bytes("cat.jpg"))).status_code == 201
    commit = await clinician.post(f"/api/sessions/{session['id']}/commit", json={"all": True})
    assert commit.status_code == 200, commit.text
    assert_error(await clinician.delete(f"/api/sessions/{session['id']}"), 409, "SessionClosed", "committed")
    assert (await clinician.get(f"/api/sessions/{session['id']}")).json()["status"] == "committed"


async def test_cancel_is_audited(clinician: httpx.AsyncClient, runtime: Any) -> None:
    from consultcam.models import AuditEvent

    session = await start_session(clinician)
    await clinician.delete(f"/api/sessions/{session['id']}")
    async with runtime.sessionmaker() as db:
        query = select(AuditEvent).where(AuditEvent.session_id == session["id"])
        events = (await db.execute(query)).scalars().all()
    cancelled = [e for e in events if e.action == "session.cancelled"]
    assert len(cancelled) == 1
    assert cancelled[0].actor_type == "clinician"
    assert cancelled[0].detail["reason"] == "cancelled"
