"""Signing phones out (issue 5): "Not this patient?" on the phone signs that phone out at once and tells the
desktop why; the clinician signs every phone out. A phone can reach no other phone, and no other session."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from consultcam.app import create_app
from consultcam.models import AuditEvent
from tests.conftest import (
    CLINICIAN_TOKEN,
    CsrfToken,
    assert_error,
    jpeg_bytes,
    next_event,
    pair_phone,
    record_consent,
    serving,
    start_session,
    token_of,
    upload,
)

WRONG_PATIENT = "wrong-patient"


async def revoked_events(runtime: Any, session_id: str) -> list[dict[str, Any]]:
    return [e.data for e in await runtime.bus.read(session_id, None, timeout=0) if e.type == "phone.revoked"]


async def revocations(runtime: Any) -> list[AuditEvent]:
    async with runtime.sessionmaker() as db:
        query = select(AuditEvent).where(AuditEvent.action == "phone.revoked").order_by(AuditEvent.id)
        return list((await db.execute(query)).scalars())


async def phone_id(phone: httpx.AsyncClient, session_id: str) -> str:
    """The id of the phone credential `phone` holds (the session shows the newest phone)."""
    return str((await phone.get(f"/api/sessions/{session_id}")).json()["phone"]["id"])


async def second_phone(clinician: httpx.AsyncClient, new_client: Any, session_id: str) -> httpx.AsyncClient:
    """Another phone paired to the same session with a new code (the first stays paired)."""
    code = (await clinician.post(f"/api/sessions/{session_id}/pairing")).json()
    phone = new_client()
    assert (await phone.post("/api/pair", json={"token": token_of(code["url"])})).status_code == 200
    return phone


async def test_not_this_patient_signs_the_phone_out_at_once(clinician, new_client, runtime):
    session = await start_session(clinician)
    phone = await pair_phone(new_client, session)
    mine = await phone_id(phone, session["id"])
    credential = phone.cookies["consultcam_phone"]

    response = await phone.delete(f"/api/sessions/{session['id']}/phone", params={"reason": WRONG_PATIENT})

    assert response.status_code == 204
    assert response.headers["cache-control"] == "no-store"
    cleared = response.headers["set-cookie"].lower()
    assert cleared.startswith('consultcam_phone=""') or cleared.startswith("consultcam_phone=;")
    assert "max-age=0" in cleared
    # Its next call is 401, cookie gone; and so is the credential itself, replayed as a bearer.
    assert_error(await phone.get(f"/api/sessions/{session['id']}"), 401, "NotAuthenticated", "QR code")
    replayed = await phone.get(
        f"/api/sessions/{session['id']}", headers={"authorization": f"Bearer {credential}"}
    )
    assert_error(replayed, 401, "PhoneNotPaired", "QR code")
    assert await revoked_events(runtime, session["id"]) == [{"phoneId": mine, "reason": WRONG_PATIENT}]
    [row] = await revocations(runtime)
    assert (row.actor_type, row.actor_id, row.session_id) == ("phone", mine, session["id"])
    assert row.detail == {"phone_id": mine, "reason": WRONG_PATIENT}
    # The desktop sees no phone; the session stays open for the right patient's phone.
    assert (await clinician.get(f"/api/sessions/{session['id']}")).json()["phone"] is None
    again = await second_phone(clinician, new_client, session["id"])
    assert (await upload(again, session["id"], jpeg_bytes())).status_code == 201


@pytest.mark.parametrize(
    "query", ["", "?reason=revoked", "?reason=done", "?reason=WRONG-PATIENT", "?reason="]
)
async def test_a_phone_gives_no_other_reason(clinician, new_client, runtime, query: str):
    session = await start_session(clinician)
    phone = await pair_phone(new_client, session)
    response = await phone.delete(f"/api/sessions/{session['id']}/phone{query}")
    assert_error(response, 422, "InvalidRevokeReason", "wrong-patient", "desktop")
    assert (await phone.get(f"/api/sessions/{session['id']}")).status_code == 200  # still paired
    assert await revoked_events(runtime, session["id"]) == []


async def test_an_overlong_reason_is_422(clinician, new_client):
    session = await start_session(clinician)
    phone = await pair_phone(new_client, session)
    response = await phone.delete(f"/api/sessions/{session['id']}/phone", params={"reason": "x" * 41})
    assert_error(response, 422, "InvalidRequest", "reason")


async def test_a_phone_signs_out_only_itself(clinician, new_client, runtime):
    session = await start_session(clinician)
    first = await pair_phone(new_client, session)
    first_id = await phone_id(first, session["id"])
    second = await second_phone(clinician, new_client, session["id"])

    response = await second.delete(f"/api/sessions/{session['id']}/phone?reason={WRONG_PATIENT}")

    assert response.status_code == 204
    assert (await second.get(f"/api/sessions/{session['id']}")).status_code == 401
    assert (await first.get(f"/api/sessions/{session['id']}")).status_code == 200
    assert (await upload(first, session["id"], jpeg_bytes())).status_code == 201
    [event] = await revoked_events(runtime, session["id"])
    assert event["phoneId"] != first_id
    assert (await clinician.get(f"/api/sessions/{session['id']}")).json()["phone"]["id"] == first_id


async def test_a_phone_cannot_sign_out_another_sessions_phone(clinician, new_client, runtime):
    mine = await start_session(clinician, "enc-a")
    other = await start_session(clinician, "enc-b")
    phone = await pair_phone(new_client, mine)
    others_phone = await pair_phone(new_client, other)

    response = await phone.delete(f"/api/sessions/{other['id']}/phone?reason={WRONG_PATIENT}")

    assert_error(response, 404, "SessionNotFound")
    assert (await others_phone.get(f"/api/sessions/{other['id']}")).status_code == 200
    assert (await phone.get(f"/api/sessions/{mine['id']}")).status_code == 200  # nor itself, by mistake
    assert await revoked_events(runtime, other["id"]) == []
    assert await revocations(runtime) == []


async def test_the_clinician_signs_every_phone_out(clinician, new_client, runtime):
    session = await start_session(clinician)
    first = await pair_phone(new_client, session)
    second = await second_phone(clinician, new_client, session["id"])

    response = await clinician.delete(f"/api/sessions/{session['id']}/phone")

    assert response.status_code == 204
    assert "set-cookie" not in response.headers  # the desktop's own sign-in is not touched
    for phone in (first, second):
        assert_error(await phone.get(f"/api/sessions/{session['id']}"), 401, "PhoneNotPaired")
    events = await revoked_events(runtime, session["id"])
    assert len(events) == 2
    assert {e["reason"] for e in events} == {"revoked"}
    assert {row.actor_type for row in await revocations(runtime)} == {"clinician"}
    assert (await clinician.get(f"/api/sessions/{session['id']}")).json()["status"] == "open"


async def test_the_clinician_may_say_revoked_and_nothing_else(clinician, new_client):
    session = await start_session(clinician)
    phone = await pair_phone(new_client, session)
    for reason in (WRONG_PATIENT, "expired", "cancelled"):
        response = await clinician.delete(f"/api/sessions/{session['id']}/phone", params={"reason": reason})
        assert_error(response, 422, "InvalidRevokeReason", "revoked")
    assert (await phone.get(f"/api/sessions/{session['id']}")).status_code == 200
    response = await clinician.delete(f"/api/sessions/{session['id']}/phone", params={"reason": "revoked"})
    assert response.status_code == 204
    assert (await phone.get(f"/api/sessions/{session['id']}")).status_code == 401


async def test_a_phone_may_leave_a_committed_session_too(clinician, new_client, runtime):
    session = await start_session(clinician)
    phone = await pair_phone(new_client, session)
    assert (await upload(phone, session["id"], jpeg_bytes())).status_code == 201
    assert (
        await clinician.post(f"/api/sessions/{session['id']}/commit", json={"all": True})
    ).status_code == 200
    response = await phone.delete(f"/api/sessions/{session['id']}/phone?reason={WRONG_PATIENT}")
    assert response.status_code == 204
    assert (await phone.get(f"/api/sessions/{session['id']}")).status_code == 401


# --- over real HTTP: the desktop's event stream ---------------------------------------------------------


async def test_the_desktop_stream_hears_wrong_patient(settings):
    async with (
        serving(create_app(settings)) as origin,
        httpx.AsyncClient(base_url=origin, headers={"authorization": f"Bearer {CLINICIAN_TOKEN}"}) as desktop,
        httpx.AsyncClient(base_url=origin, event_hooks=CsrfToken().hooks()) as phone,
    ):
        session = await start_session(desktop, consent=False)
        paired = await phone.post("/api/pair", json={"token": token_of(session["pairing"]["url"])})
        assert (await record_consent(phone, session["id"])).status_code == 200
        async with desktop.stream("GET", f"/api/sessions/{session['id']}/events") as stream:
            listening = asyncio.create_task(asyncio.wait_for(next_event(stream, "phone.revoked"), 10))
            signed_out = await phone.delete(
                f"/api/sessions/{session['id']}/phone", params={"reason": WRONG_PATIENT}
            )
            revoked = await listening
        assert signed_out.status_code == 204
        assert revoked["data"]["data"] == {
            "phoneId": paired.json()["session"]["phone"]["id"],
            "reason": WRONG_PATIENT,
        }
        # The page's next call, with the credential it held, is refused.
        bearer = {"authorization": f"Bearer {paired.json()['phoneToken']}"}
        assert (await phone.get(f"/api/sessions/{session['id']}", headers=bearer)).status_code == 401
