"""Pairing over HTTP: a QR code's token is ≥128-bit, single use, short-lived and stored only as SHA-256;
redeeming it gives exactly one phone a revocable, HttpOnly credential bound to one capture session."""

from __future__ import annotations

import asyncio
import hashlib
import re
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import MetaData, select, update

from consultcam.models import PairingToken, PhoneCredential, utcnow
from tests.conftest import PATIENT, assert_error, start_session, token_of

URLSAFE = re.compile(r"^[A-Za-z0-9_-]+$")


async def redeem(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post("/api/pair", json={"token": token})


async def db_rows(runtime: Any) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table in the database (either backend), as the database reflects its tables:
    not through the models, so no column is missed."""
    async with runtime.engine.connect() as connection:
        tables = MetaData()
        await connection.run_sync(tables.reflect)
        return {
            name: [dict(row) for row in (await connection.execute(table.select())).mappings()]
            for name, table in tables.tables.items()
        }


async def test_qr_token_has_at_least_128_bits_and_is_new_every_time(clinician: httpx.AsyncClient) -> None:
    tokens = set()
    for _ in range(5):
        response = await clinician.post(f"/api/sessions/{(await start_session(clinician))['id']}/pairing")
        assert response.status_code == 201, response.text
        token = token_of(response.json()["url"])
        # 22 url-safe characters carry 132 bits; secrets.token_urlsafe(32) gives 43 (256 bits).
        assert len(token) >= 22, token
        assert URLSAFE.match(token), token
        tokens.add(token)
    assert len(tokens) == 5


async def test_pairing_returns_patient_banner_credential_and_capture_settings(
    clinician: httpx.AsyncClient, new_client: Any, settings: Any
) -> None:
    session = await start_session(clinician)
    phone = new_client(**{"user-agent": "Mozilla/5.0 (iPhone) TestPhone"})
    response = await redeem(phone, token_of(session["pairing"]["url"]))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["session"]["id"] == session["id"]
    assert body["session"]["patient"] == {
        "id": PATIENT["id"],
        "name": PATIENT["name"],
        "nhi": PATIENT["nhi"],
        "birthDate": PATIENT["birthDate"],
    }
    assert body["session"]["pairing"] is None  # the phone never sees a QR code it could pass on
    assert body["session"]["phone"]["userAgent"] == "Mozilla/5.0 (iPhone) TestPhone"
    assert len(body["phoneToken"]) >= 22
    assert URLSAFE.match(body["phoneToken"])
    assert body["captureSettings"]["maxEdgePx"] == settings.capture_max_edge_px == 2048
    assert body["captureSettings"]["maxBytes"] == settings.capture_max_bytes
    assert "image/heic" in body["captureSettings"]["acceptedTypes"]
    assert response.headers["cache-control"] == "no-store"

    # The desktop now sees the phone on the session.
    current = (await clinician.get(f"/api/sessions/{session['id']}")).json()
    assert current["phone"]["id"] == body["session"]["phone"]["id"]
    # The credential works as a Bearer token as well as a cookie.
    async with new_client(authorization=f"Bearer {body['phoneToken']}") as bearer_phone:
        assert (await bearer_phone.get(f"/api/sessions/{session['id']}")).status_code == 200


async def test_phone_cookie_is_httponly_samesite_strict_and_scoped(
    clinician: httpx.AsyncClient, new_client: Any
) -> None:
    session = await start_session(clinician)
    response = await redeem(new_client(), token_of(session["pairing"]["url"]))
    assert response.status_code == 200, response.text
    cookies = response.headers.get_list("set-cookie")
    assert len(cookies) == 1, cookies
    attributes = [part.strip().lower() for part in cookies[0].split(";")]
    assert attributes[0] == f"consultcam_phone={response.json()['phoneToken']}".lower()
    assert "httponly" in attributes
    assert "samesite=strict" in attributes
    assert "path=/" in attributes
    assert any(a.startswith("max-age=") and int(a.split("=")[1]) > 0 for a in attributes)
    assert "secure" not in attributes  # plain http here; `consultcam serve` on a LAN address uses https


async def test_unknown_token_is_404_with_what_to_do(anonymous: httpx.AsyncClient) -> None:
    response = await redeem(anonymous, "x" * 43)
    assert_error(response, 404, "PairingTokenNotFound", "new code")
    assert "set-cookie" not in response.headers


async def test_a_truncated_code_is_simply_not_recognised(anonymous: httpx.AsyncClient) -> None:
    """A QR code read or typed in part is, to the phone user, just a code that does not work."""
    assert_error(await redeem(anonymous, "short"), 404, "PairingTokenNotFound", "new code")
    assert_error(await anonymous.post("/api/pair", json={}), 422, "InvalidRequest", "token")


async def test_used_token_is_409_for_a_second_phone(
    clinician: httpx.AsyncClient, new_client: Any, runtime: Any
) -> None:
    session = await start_session(clinician)
    token = token_of(session["pairing"]["url"])
    assert (await redeem(new_client(), token)).status_code == 200
    second = new_client()
    response = await redeem(second, token)
    assert_error(response, 409, "PairingTokenUsed", "already been used")
    assert "set-cookie" not in response.headers
    assert (await second.get(f"/api/sessions/{session['id']}")).status_code == 401
    async with runtime.sessionmaker() as db:
        phones = (await db.execute(select(PhoneCredential))).scalars().all()
    assert len(phones) == 1


async def test_expired_token_is_410(clinician: httpx.AsyncClient, new_client: Any, runtime: Any) -> None:
    session = await start_session(clinician)
    async with runtime.sessionmaker() as db, db.begin():
        await db.execute(
            update(PairingToken)
            .where(PairingToken.session_id == session["id"])
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    phone = new_client()
    response = await redeem(phone, token_of(session["pairing"]["url"]))
    assert_error(response, 410, "PairingTokenExpired", "new code")
    async with runtime.sessionmaker() as db:
        assert (await db.execute(select(PhoneCredential))).scalars().all() == []
        token_row = (await db.execute(select(PairingToken))).scalar_one()
    assert token_row.redeemed_at is None


async def test_pairing_expires_after_the_configured_ttl(clinician: httpx.AsyncClient, settings: Any) -> None:
    session = await start_session(clinician)
    left = datetime.fromisoformat(session["pairing"]["expiresAt"]) - utcnow()
    ttl = timedelta(seconds=settings.pairing_ttl_seconds)
    assert ttl - timedelta(seconds=30) < left <= ttl


async def test_new_code_replaces_the_unredeemed_one(clinician: httpx.AsyncClient, new_client: Any) -> None:
    session = await start_session(clinician)
    old = token_of(session["pairing"]["url"])
    response = await clinician.post(f"/api/sessions/{session['id']}/pairing")
    assert response.status_code == 201, response.text
    new = response.json()
    assert new["qrSvg"].lstrip().startswith("<svg")
    assert token_of(new["url"]) != old
    assert_error(await redeem(new_client(), old), 410, "PairingTokenReplaced", "newer")
    assert (await redeem(new_client(), token_of(new["url"]))).status_code == 200


async def test_new_code_does_not_sign_out_the_paired_phone(
    clinician: httpx.AsyncClient, new_client: Any
) -> None:
    session = await start_session(clinician)
    phone = new_client()
    assert (await redeem(phone, token_of(session["pairing"]["url"]))).status_code == 200
    new = (await clinician.post(f"/api/sessions/{session['id']}/pairing")).json()
    second = new_client()
    assert (await redeem(second, token_of(new["url"]))).status_code == 200
    assert (await phone.get(f"/api/sessions/{session['id']}")).status_code == 200
    assert (await second.get(f"/api/sessions/{session['id']}")).status_code == 200


async def test_new_code_for_unknown_session_is_404(clinician: httpx.AsyncClient) -> None:
    assert_error(await clinician.post("/api/sessions/no-such-session/pairing"), 404, "SessionNotFound")


async def test_page_reload_by_the_same_phone_rotates_its_credential(
    clinician: httpx.AsyncClient, new_client: Any, runtime: Any
) -> None:
    session = await start_session(clinician)
    token = token_of(session["pairing"]["url"])
    phone = new_client()
    first = await redeem(phone, token)
    assert first.status_code == 200
    old_credential = first.json()["phoneToken"]

    again = await redeem(phone, token)  # the phone carries its cookie, as a reloaded page does
    assert again.status_code == 200, again.text
    new_credential = again.json()["phoneToken"]
    assert new_credential != old_credential
    assert again.json()["session"]["id"] == session["id"]

    assert (await phone.get(f"/api/sessions/{session['id']}")).status_code == 200  # new cookie was set
    async with new_client(authorization=f"Bearer {old_credential}") as stale:
        assert_error(await stale.get(f"/api/sessions/{session['id']}"), 401, "PhoneNotPaired", "QR code")
    async with new_client(authorization=f"Bearer {new_credential}") as fresh:
        assert (await fresh.get(f"/api/sessions/{session['id']}")).status_code == 200
    async with runtime.sessionmaker() as db:
        phones = (await db.execute(select(PhoneCredential))).scalars().all()
    assert sorted(p.revoked_at is None for p in phones) == [False, True]


async def test_every_reload_rotates_and_only_the_newest_credential_works(
    clinician: httpx.AsyncClient, new_client: Any
) -> None:
    session = await start_session(clinician)
    token = token_of(session["pairing"]["url"])
    phone = new_client()
    credentials = []
    for _ in range(3):
        response = await redeem(phone, token)
        assert response.status_code == 200, response.text
        credentials.append(response.json()["phoneToken"])
    assert len(set(credentials)) == 3
    for credential, works in zip(credentials, (False, False, True), strict=True):
        async with new_client(authorization=f"Bearer {credential}") as client:
            status = (await client.get(f"/api/sessions/{session['id']}")).status_code
        assert status == (200 if works else 401)
    # A new phone still cannot use the code.
    assert_error(await redeem(new_client(), token), 409, "PairingTokenUsed")


async def test_reload_needs_the_cookie_of_that_very_token(
    clinician: httpx.AsyncClient, new_client: Any
) -> None:
    """A phone paired by another code of the same session, or a stolen old credential as Bearer, cannot
    re-use a redeemed code."""
    session = await start_session(clinician)
    token = token_of(session["pairing"]["url"])
    first = await redeem(new_client(), token)
    second_code = (await clinician.post(f"/api/sessions/{session['id']}/pairing")).json()
    other = new_client()
    assert (await redeem(other, token_of(second_code["url"]))).status_code == 200
    assert_error(await redeem(other, token), 409, "PairingTokenUsed")
    async with new_client(authorization=f"Bearer {first.json()['phoneToken']}") as bearer:
        assert_error(await redeem(bearer, token), 409, "PairingTokenUsed")


async def test_revoked_phone_cannot_pair_again_with_its_old_code(
    clinician: httpx.AsyncClient, new_client: Any
) -> None:
    session = await start_session(clinician)
    token = token_of(session["pairing"]["url"])
    phone = new_client()
    assert (await redeem(phone, token)).status_code == 200
    assert (await clinician.delete(f"/api/sessions/{session['id']}/phone")).status_code == 204
    assert_error(await redeem(phone, token), 409, "PairingTokenUsed")
    assert (await phone.get(f"/api/sessions/{session['id']}")).status_code == 401


async def test_code_of_a_cancelled_session_does_not_pair(
    clinician: httpx.AsyncClient, new_client: Any
) -> None:
    session = await start_session(clinician)
    assert (await clinician.delete(f"/api/sessions/{session['id']}")).status_code == 204
    phone = new_client()
    response = await redeem(phone, token_of(session["pairing"]["url"]))
    assert_error(response, 409, "SessionClosed", "cancelled", "new session")
    assert "set-cookie" not in response.headers


async def test_tokens_are_stored_only_as_sha256(
    clinician: httpx.AsyncClient, new_client: Any, runtime: Any
) -> None:
    session = await start_session(clinician)
    pairing_token = token_of(session["pairing"]["url"])
    paired = await redeem(new_client(**{"user-agent": "TestPhone"}), pairing_token)
    phone_token = paired.json()["phoneToken"]
    # Some activity, so the audit trail has rows too.
    await clinician.get(f"/api/sessions/{session['id']}")
    await clinician.delete(f"/api/sessions/{session['id']}/phone")

    rows = await db_rows(runtime)
    assert rows["pairing_tokens"]
    assert rows["phone_credentials"]
    assert rows["audit_events"]
    dump = repr(rows)
    for secret in (pairing_token, phone_token):
        assert secret not in dump
        assert secret[:16] not in dump  # not even a prefix
    stored_pairing = [row["token_hash"] for row in rows["pairing_tokens"]]
    stored_phone = [row["token_hash"] for row in rows["phone_credentials"]]
    assert stored_pairing == [hashlib.sha256(pairing_token.encode()).hexdigest()]
    assert stored_phone == [hashlib.sha256(phone_token.encode()).hexdigest()]


async def test_concurrent_redemptions_of_one_code_pair_exactly_one_phone(
    clinician: httpx.AsyncClient, new_client: Any, runtime: Any
) -> None:
    session = await start_session(clinician)
    token = token_of(session["pairing"]["url"])
    phones = [new_client() for _ in range(30)]
    responses = await asyncio.gather(*(redeem(phone, token) for phone in phones))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [409] * 29, statuses
    assert {r.json()["error"] for r in responses if r.status_code == 409} == {"PairingTokenUsed"}
    winners = [phone for phone, r in zip(phones, responses, strict=True) if r.status_code == 200]
    assert (await winners[0].get(f"/api/sessions/{session['id']}")).status_code == 200
    async with runtime.sessionmaker() as db:
        assert len((await db.execute(select(PhoneCredential))).scalars().all()) == 1


async def test_pairing_is_audited_without_secrets(
    clinician: httpx.AsyncClient, new_client: Any, runtime: Any
) -> None:
    session = await start_session(clinician)
    await redeem(new_client(), token_of(session["pairing"]["url"]))
    actions = [row["action"] for row in (await db_rows(runtime))["audit_events"]]
    assert "session.created" in actions
    assert "pairing.issued" in actions
    assert "phone.paired" in actions
