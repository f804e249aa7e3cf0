"""Sign-in attacks against a running server (issue 10, "Access"): a copied clinician cookie after sign-out,
a weak clinician token, guessing at /login and /api/pair, and a phone quietly moving to another patient's
session. Real HTTP to uvicorn on SQLite and PostgreSQL, a real `consultcam serve` process, a real Chromium.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import async_playwright
from sqlalchemy import select, update

from consultcam.app import create_app
from consultcam.auth.principals import CLINICIAN_COOKIE
from consultcam.config import Settings
from consultcam.models import AuditEvent, SignInSession, utcnow
from consultcam.retention.sweeper import sweep
from tests.conftest import (
    CLINICIAN_TOKEN,
    PATIENT,
    CsrfToken,
    assert_error,
    next_event,
    serving,
    token_of,
)
from tests.e2e.harness import CHROMIUM, CHROMIUM_ARGS

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"

CONSULTCAM = Path(sys.executable).with_name("consultcam")
REDIS = "redis://127.0.0.1:6379/0"
SIGN_IN_PAGE = "Sign in to consultcam"


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[tuple[str, Any]]:
    """A web process for `settings` served by uvicorn on loopback: (its origin, the app)."""
    app = create_app(settings)
    async with app.router.lifespan_context(app), serving(app) as origin:
        yield origin, app


def browser(origin: str, **kwargs: Any) -> httpx.AsyncClient:
    """A client that keeps cookies and, as the pages' api.js does, the CSRF token each answer carries."""
    return httpx.AsyncClient(base_url=origin, timeout=20, event_hooks=CsrfToken().hooks(), **kwargs)


def clinician(origin: str) -> httpx.AsyncClient:
    return browser(origin, headers={"authorization": f"Bearer {CLINICIAN_TOKEN}"})


async def sign_in(client: httpx.AsyncClient) -> str:
    """Open the login link as a browser does; returns the sign-in cookie's value."""
    response = await client.get("/login", params={"token": CLINICIAN_TOKEN})
    assert response.status_code == 303, response.text
    return client.cookies[CLINICIAN_COOKIE]


async def create_session(client: httpx.AsyncClient, encounter: str = "enc-1") -> httpx.Response:
    """POST /api/sessions as a page would: after a GET that hands the page its CSRF token (a copied cookie
    gets one too, so what refuses it below is the sign-in, not the CSRF check)."""
    await client.get("/healthz")
    return await client.post("/api/sessions", json={"encounterId": encounter, "patient": PATIENT})


async def audit_rows(app: Any, action: str) -> list[AuditEvent]:
    async with app.state.runtime.sessionmaker() as db:
        return list((await db.execute(select(AuditEvent).where(AuditEvent.action == action))).scalars())


# --- sign-out ends the cookie on the server --------------------------------------------------------------


async def test_a_signed_out_cookie_replayed_is_refused_on_every_web_process(settings: Settings) -> None:
    async with running(settings) as (origin, app), running(settings) as (other_origin, _):
        async with browser(origin) as desktop:
            cookie = await sign_in(desktop)
            assert (await create_session(desktop)).status_code == 201
            assert (await desktop.get("/")).status_code == 200
            # An attacker copies the cookie while the clinician is signed in: it works, on either process.
            async with browser(other_origin, cookies={CLINICIAN_COOKIE: cookie}) as thief:
                assert (await create_session(thief, "enc-2")).status_code == 201

            signed_out = await desktop.post("/logout", headers={"accept": "application/json"})
            assert signed_out.status_code == 204
            assert CLINICIAN_COOKIE not in desktop.cookies  # the browser forgets it too

        for where in (origin, other_origin):
            async with browser(where, cookies={CLINICIAN_COOKIE: cookie}) as thief:
                assert_error(await create_session(thief, "enc-3"), 401, None, "sign in")
                assert_error(await thief.get("/api/sessions/whatever"), 401)
                page = await thief.get("/sessions/whatever")
                assert page.status_code == 401
                assert SIGN_IN_PAGE in page.text  # the pages send it to sign in
                # Signing out again with the dead cookie changes nothing and is no error.
                assert (await thief.post("/logout", follow_redirects=False)).status_code == 303

        # The server keeps only the cookie's SHA-256, and the audit trail names the sign-in, not the cookie.
        async with app.state.runtime.sessionmaker() as db:
            [row] = (await db.execute(select(SignInSession))).scalars().all()
        assert row.ended_at is not None
        assert row.end_reason == "signed-out"
        assert cookie not in repr(vars(row))
        [started] = await audit_rows(app, "signin.started")
        [ended] = await audit_rows(app, "signin.ended")
        assert started.detail["signin_id"] == ended.detail["signin_id"] == row.id
        assert cookie not in str(started.detail) + str(ended.detail)


async def test_the_page_sign_out_form_ends_the_sign_in_too(settings: Settings) -> None:
    """Without the page's script, the form posts to /logout and is sent back to the sign-in page."""
    async with running(settings) as (origin, _), browser(origin) as desktop:
        cookie = await sign_in(desktop)
        response = await desktop.post("/logout", follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"] == "/"
        async with browser(origin, cookies={CLINICIAN_COOKIE: cookie}) as thief:
            assert_error(await create_session(thief), 401)


async def test_signing_in_again_ends_the_browsers_previous_sign_in(settings: Settings) -> None:
    async with running(settings) as (origin, _), browser(origin) as desktop:
        first = await sign_in(desktop)
        second = await sign_in(desktop)
        assert first != second
        async with browser(origin, cookies={CLINICIAN_COOKIE: first}) as old:
            assert_error(await create_session(old), 401)
        assert (await create_session(desktop)).status_code == 201


async def test_a_new_clinician_token_signs_every_browser_out(settings: Settings) -> None:
    async with running(settings) as (origin, _), browser(origin) as desktop:
        cookie = await sign_in(desktop)
    changed = settings.model_copy(update={"clinician_token": f"{CLINICIAN_TOKEN}-rotated-Zq8"})
    async with running(changed) as (origin, _), browser(origin, cookies={CLINICIAN_COOKIE: cookie}) as old:
        assert_error(await create_session(old), 401)
        assert (await old.get("/")).status_code == 401


async def test_idle_and_expired_sign_ins_stop_working_and_are_swept(settings: Settings) -> None:
    async with running(settings) as (origin, app):
        runtime = app.state.runtime
        cookies = []
        for _ in range(4):
            async with browser(origin) as desktop:
                cookies.append(await sign_in(desktop))
        async with browser(origin, cookies={CLINICIAN_COOKIE: cookies[3]}) as desktop:
            await desktop.get("/healthz")  # the page's CSRF token
            assert (await desktop.post("/logout")).status_code == 303
        async with runtime.unit_of_work() as uow:
            query = select(SignInSession).order_by(SignInSession.created_at)
            idle, expired, live, _ = (await uow.session.execute(query)).scalars().all()
            past = utcnow() - timedelta(seconds=1)
            idle.idle_expires_at = past  # CONSULTCAM_SIGNIN_IDLE_MINUTES without a request
            expired.expires_at = past  # CONSULTCAM_SIGNIN_MAX_HOURS after signing in
            live_id = live.id
        for cookie, works in zip(cookies, (False, False, True, False), strict=True):
            async with browser(origin, cookies={CLINICIAN_COOKIE: cookie}) as desktop:
                assert (await desktop.get("/")).status_code == (200 if works else 401)

        report = await sweep(runtime.unit_of_work, runtime)
        assert report.expired_signins == 3
        async with runtime.sessionmaker() as db:
            assert (await db.execute(select(SignInSession.id))).scalars().all() == [live_id]


async def test_use_pushes_the_idle_expiry_on(settings: Settings) -> None:
    async with running(settings) as (origin, app), browser(origin) as desktop:
        await sign_in(desktop)
        async with app.state.runtime.unit_of_work() as uow:
            # Last seen long ago: the next request must record it, after answering.
            await uow.session.execute(
                update(SignInSession).values(
                    last_seen_at=utcnow() - timedelta(minutes=100),
                    idle_expires_at=utcnow() + timedelta(minutes=20),
                )
            )
        assert (await desktop.get("/")).status_code == 200
        idle = timedelta(minutes=settings.signin_idle_minutes)
        for _ in range(50):  # written just after the response went out
            async with app.state.runtime.sessionmaker() as db:
                row = (await db.execute(select(SignInSession))).scalar_one()
            if row.idle_expires_at > utcnow() + idle - timedelta(minutes=1):
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"the idle expiry stayed at {row.idle_expires_at}")
        assert row.idle_expires_at <= row.expires_at


# --- the embedded token's strength --------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(
    "token",
    [
        "hunter2-hunter2",  # short
        "a" * 48,  # no variety
        "0123456789abcdef0123456789abcdef",  # long, but counting up
    ],
)
def test_serve_refuses_to_start_with_a_weak_clinician_token(tmp_path: Path, token: str) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSULTCAM_")}
    env |= {"CONSULTCAM_DATA_DIR": str(tmp_path / "data"), "CONSULTCAM_CLINICIAN_TOKEN": token}
    result = subprocess.run(
        [str(CONSULTCAM), "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 2, output
    assert "CONSULTCAM_CLINICIAN_TOKEN" in output
    assert "too weak" in output
    assert "at least 32" in output
    assert token not in output  # the refused secret is not echoed to the console or its logs
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)


def test_a_strong_configured_token_and_the_generated_one_are_accepted() -> None:
    """The rule refuses what is guessable, not what a practice would generate."""
    for token in ("3f9c0e7a1b5d2c8e4f6a0b9d7c1e3a5f", "Kx7_pQ2-vN9wLm4RtY8zBc3HjF6sDg1A0eUo"):
        assert Settings(clinician_token=token).clinician_token == token


# --- rate limits ---------------------------------------------------------------------------------------


#: The product's defaults (CONSULTCAM_RATE_LIMIT_LOGIN, _PAIR), which these tests run with.
LOGIN_LIMIT, PAIR_LIMIT = "10/minute", "30/minute"


def count(rate: str) -> int:
    return int(rate.split("/")[0])


async def test_login_is_rate_limited_per_client_with_retry_after(settings: Settings) -> None:
    async with running(settings) as (origin, _), browser(origin) as guesser:
        for i in range(count(LOGIN_LIMIT)):
            wrong = await guesser.get("/login", params={"token": f"guess-{i}"})
            assert wrong.status_code == 401, wrong.text
        limited = await guesser.post("/login", data={"token": CLINICIAN_TOKEN})  # even the right one
        body = assert_error(limited, 429, "TooManyRequests", "sign-in attempts", "wait")
        retry_after = int(limited.headers["retry-after"])
        assert 1 <= retry_after <= 60
        assert f"{retry_after} second" in body["detail"]
        assert CLINICIAN_COOKIE not in guesser.cookies
        # A browser is shown the sign-in page saying so, with the same status and header.
        page = await guesser.get("/login", params={"token": "x"}, headers={"accept": "text/html"})
        assert page.status_code == 429
        assert "retry-after" in page.headers
        assert "Too many sign-in attempts" in page.text
        # Another computer (another client address) is not held up by this one.
        other = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
        async with browser(origin, transport=other) as clinic:
            assert (await clinic.get("/login", params={"token": CLINICIAN_TOKEN})).status_code == 303
    assert settings.rate_limit_login == Settings.model_fields["rate_limit_login"].default == LOGIN_LIMIT


async def test_pairing_is_rate_limited_per_client_with_retry_after(settings: Settings) -> None:
    async with running(settings) as (origin, _), clinician(origin) as desktop:
        session = (await create_session(desktop)).json()
        async with browser(origin) as attacker:
            for i in range(count(PAIR_LIMIT)):
                guess = await attacker.post("/api/pair", json={"token": f"guessed-code-{i:04d}"})
                assert guess.status_code == 404, guess.text
            limited = await attacker.post("/api/pair", json={"token": token_of(session["pairing"]["url"])})
            assert_error(limited, 429, "TooManyRequests", "wait")
            assert 1 <= int(limited.headers["retry-after"]) <= 60
        # The real phone, elsewhere on the network, still pairs with the code the attacker could not use.
        phone_transport = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
        async with browser(origin, transport=phone_transport) as phone:
            paired = await phone.post("/api/pair", json={"token": token_of(session["pairing"]["url"])})
            assert paired.status_code == 200, paired.text
    assert settings.rate_limit_pair == Settings.model_fields["rate_limit_pair"].default == PAIR_LIMIT


async def test_with_redis_the_limit_is_shared_by_every_web_process(settings: Settings) -> None:
    shared = {"redis_url": REDIS, "redis_prefix": f"cc-signin-{uuid.uuid4().hex[:8]}:"}
    settings = settings.model_copy(update=shared)
    async with running(settings) as (first, _), running(settings) as (second, _):
        for i in range(count(LOGIN_LIMIT)):
            async with browser((first, second)[i % 2]) as guesser:
                assert (await guesser.get("/login", params={"token": f"g{i}"})).status_code == 401
        for origin in (first, second):
            async with browser(origin) as guesser:
                limited = await guesser.get("/login", params={"token": "g"})
                assert_error(limited, 429, "TooManyRequests")
                assert "retry-after" in limited.headers


# --- a phone pairing a second session ------------------------------------------------------------------


async def test_pairing_a_second_session_tells_the_first_desktop_and_the_audit_trail(
    settings: Settings,
) -> None:
    async with running(settings) as (origin, app), clinician(origin) as desktop:
        first = (await create_session(desktop, "enc-a")).json()
        second = (await create_session(desktop, "enc-b")).json()
        async with browser(origin) as phone:
            paired = await phone.post("/api/pair", json={"token": token_of(first["pairing"]["url"])})
            assert paired.status_code == 200, paired.text
            old_credential = paired.json()["phoneToken"]
            phone_id = paired.json()["session"]["phone"]["id"]

            async with desktop.stream("GET", f"/api/sessions/{first['id']}/events") as stream:
                assert stream.status_code == 200
                lines = stream.aiter_lines()
                await asyncio.wait_for(next_event(lines, "phone.paired"), 10)
                moved = await phone.post("/api/pair", json={"token": token_of(second["pairing"]["url"])})
                assert moved.status_code == 200, moved.text
                revoked = await asyncio.wait_for(next_event(lines, "phone.revoked"), 10)
            assert revoked["data"]["data"] == {"phoneId": phone_id, "reason": "paired-elsewhere"}

            # The old credential no longer reaches the first session; the phone works on the second.
            async with browser(origin, headers={"authorization": f"Bearer {old_credential}"}) as stale:
                assert_error(await stale.get(f"/api/sessions/{first['id']}"), 401, "PhoneNotPaired")
            assert (await phone.get(f"/api/sessions/{second['id']}")).status_code == 200
            assert (await phone.get(f"/api/sessions/{first['id']}")).status_code == 404
        state = (await desktop.get(f"/api/sessions/{first['id']}")).json()
        assert state["phone"] is None

    [audited] = [e for e in await audit_rows(app, "phone.revoked") if e.session_id == first["id"]]
    assert (audited.actor_type, audited.actor_id) == ("phone", phone_id)
    assert audited.detail == {"phone_id": phone_id, "reason": "paired-elsewhere"}
    [arrived] = [e for e in await audit_rows(app, "phone.paired") if e.session_id == second["id"]]
    assert arrived.detail["previous_phone_id"] == phone_id


# --- in a real browser -----------------------------------------------------------------------------------


@asynccontextmanager
async def chromium_page(origin: str) -> AsyncIterator[Any]:
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_ARGS))
        try:
            context = await chromium.new_context(viewport={"width": 1280, "height": 800}, locale="en-NZ")
            context.set_default_timeout(15_000)
            page = await context.new_page()
            await page.goto(f"{origin}/login?token={CLINICIAN_TOKEN}")
            yield page
        finally:
            await chromium.close()


async def test_the_desktop_sign_out_button_ends_the_sign_in_on_the_server(settings: Settings) -> None:
    async with running(settings) as (origin, _), clinician(origin) as desktop:
        session = (await create_session(desktop)).json()
        async with chromium_page(origin) as page:
            await page.goto(f"{origin}/sessions/{session['id']}")
            await page.get_by_test_id("live-status").and_(page.locator("[data-state=live]")).wait_for()
            [cookie] = [c["value"] for c in await page.context.cookies() if c["name"] == CLINICIAN_COOKIE]
            await page.get_by_test_id("sign-out").click()
            await page.get_by_role("heading", name=SIGN_IN_PAGE).wait_for()
            assert not [c for c in await page.context.cookies() if c["name"] == CLINICIAN_COOKIE]
            await page.goto(f"{origin}/sessions/{session['id']}")
            await page.get_by_role("heading", name=SIGN_IN_PAGE).wait_for()
        async with browser(origin, cookies={CLINICIAN_COOKIE: cookie}) as thief:
            assert_error(await thief.get(f"/api/sessions/{session['id']}"), 401)


async def test_a_desktop_stays_live_when_the_browser_signs_in_again_in_another_tab(
    settings: Settings,
) -> None:
    """A new sign-in in the same browser (the EMR's icon clicked again, opening a second tab) ends the old
    sign-in and its streams; the first tab, which the new cookie still lets see its session, carries on
    live: it still hears that the session was cancelled."""
    async with running(settings) as (origin, _), clinician(origin) as desktop:
        session = (await create_session(desktop)).json()
        async with chromium_page(origin) as page:
            await page.goto(f"{origin}/sessions/{session['id']}")
            live = page.get_by_test_id("live-status").and_(page.locator("[data-state=live]"))
            await live.wait_for()
            [first_cookie] = [
                c["value"] for c in await page.context.cookies() if c["name"] == CLINICIAN_COOKIE
            ]

            second_tab = await page.context.new_page()
            await second_tab.goto(f"{origin}/login?token={CLINICIAN_TOKEN}&next=/sessions/{session['id']}")
            await (
                second_tab.get_by_test_id("live-status")
                .and_(second_tab.locator("[data-state=live]"))
                .wait_for()
            )
            [cookie] = [c["value"] for c in await page.context.cookies() if c["name"] == CLINICIAN_COOKIE]
            assert cookie != first_cookie  # the first sign-in ended, and its stream with it
            await page.wait_for_function(  # a new stream, opened with the new sign-in, is live
                "() => window.__consultcam.events !== window.firstStream"
                " && window.__consultcam.events.state === 'live'"
            )

            await desktop.get("/healthz")
            assert (await desktop.delete(f"/api/sessions/{session['id']}")).status_code in (200, 204)
            ended = page.locator("#ended-card")
            await ended.wait_for()
            assert "Session cancelled" in await ended.inner_text()


async def test_the_first_desktop_shows_plainly_that_its_phone_went_to_another_session(
    settings: Settings,
) -> None:
    """The phone's camera app opens the second code in a new tab: the first desktop and the first tab each
    say what happened, in words."""
    async with running(settings) as (origin, _), clinician(origin) as desktop:
        first = (await create_session(desktop, "enc-a")).json()
        second = (await create_session(desktop, "enc-b")).json()
        async with chromium_page(origin) as page:
            await page.goto(f"{origin}/sessions/{first['id']}")
            await page.get_by_test_id("qr").and_(page.locator("[data-state=active]")).wait_for()
            shown = await page.get_by_test_id("pairing-url").inner_text()  # the page made a fresh code
            phone = await page.context.browser.new_context(
                viewport={"width": 360, "height": 740}, is_mobile=True, has_touch=True, locale="en-NZ"
            )
            first_tab = await phone.new_page()
            await first_tab.goto(shown)
            await first_tab.get_by_test_id("consent-screen").wait_for()
            await page.get_by_test_id("phone-status").and_(page.locator("[data-state=connected]")).wait_for()

            second_tab = await phone.new_page()
            await second_tab.goto(second["pairing"]["url"])
            await second_tab.get_by_test_id("consent-screen").wait_for()

            notice = page.get_by_test_id("paired-elsewhere")
            await notice.wait_for()
            assert "paired with another session" in await notice.inner_text()
            assert "paired with another session" in await page.get_by_test_id("phone-status").inner_text()
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)  # for a person to look at the notice
            await page.screenshot(
                path=str(SCREENSHOTS / "desktop-paired-elsewhere.png"), animations="disabled"
            )
            final = first_tab.get_by_test_id("final-screen")
            await final.wait_for()
            assert "moved to another session" in await final.inner_text()
