"""The Medtech launch in a real Chromium against a running server (uvicorn, SQLite and PostgreSQL) and the
ALEX test double: a launch lands on the desktop for the patient ALEX names; the no-patient, expired and
ALEX-unreachable pages say what to do. Screenshots go to test-artifacts/screenshots/launch-*.png, to be
looked at."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from playwright.async_api import Page, async_playwright

from consultcam.app import create_app
from consultcam.auth.principals import CLINICIAN_COOKIE
from consultcam.config import Settings
from tests.conftest import serving
from tests.e2e.harness import CHROMIUM, CHROMIUM_ARGS
from tests.medtech.double import AlexDouble

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


@asynccontextmanager
async def medtech_browser(settings: Settings) -> AsyncIterator[tuple[str, Page]]:
    """A web process for `settings` on loopback and a fresh 1280×800 Chromium page (no sign-in), as a
    practice PC opens consultcam from Medtech: (origin, page)."""
    app = create_app(settings)
    async with app.router.lifespan_context(app), serving(app) as origin, async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_ARGS))
        try:
            context = await chromium.new_context(
                viewport={"width": 1280, "height": 800}, locale="en-NZ", timezone_id="Pacific/Auckland"
            )
            context.set_default_timeout(15_000)
            yield origin, await context.new_page()
        finally:
            await chromium.close()


async def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), animations="disabled", caret="hide")


async def clinician_cookies(page: Page) -> list[Any]:
    return [c for c in await page.context.cookies() if c["name"] == CLINICIAN_COOKIE]


async def test_a_launch_opens_the_desktop_for_the_patient_alex_names(
    settings: Settings, alex: AlexDouble
) -> None:
    patient = alex.add_patient(nhi="ZZZ0016", family="Smith", given="Jane", birth_date="1980-04-02")
    async with medtech_browser(settings) as (origin, page):
        await page.goto(f"{origin}/launch/medtech?{alex.launch_query(patient_id=patient)}")
        await page.wait_for_url(f"{origin}/sessions/*")
        assert "context" not in page.url
        banner = page.get_by_test_id("patient-banner")
        await banner.get_by_text("Jane Smith").wait_for()
        assert "ZZZ0016" in await banner.inner_text()
        await page.get_by_test_id("qr").and_(page.locator("[data-state=active]")).wait_for()
        assert await clinician_cookies(page)


async def test_the_no_patient_expired_and_alex_down_pages_say_what_to_do(
    settings: Settings, alex: AlexDouble
) -> None:
    async with medtech_browser(settings) as (origin, page):
        response = await page.goto(f"{origin}/launch/medtech?{alex.launch_query(patient_id=None)}")
        assert response is not None
        assert response.status == 200
        await page.get_by_role("heading", name="No patient is open in Medtech").wait_for()
        todo = await page.get_by_test_id("launch-todo").inner_text()
        assert "Open a patient in Medtech, then click the consultcam icon again." in todo
        await shot(page, "launch-no-patient")
        assert not await clinician_cookies(page)

        patient = alex.add_patient(nhi="ZZZ0016", family="Smith", given="Jane", birth_date="1980-04-02")
        old = alex.launch_query(patient_id=patient, created=datetime.now(UTC) - timedelta(minutes=6))
        response = await page.goto(f"{origin}/launch/medtech?{old}")
        assert response is not None
        assert response.status == 403
        await page.get_by_role("heading", name="This consultcam link has expired").wait_for()
        assert "click the consultcam icon again" in await page.get_by_test_id("launch-todo").inner_text()
        assert "Jane" not in await page.content()  # no patient detail on a refused launch
        await shot(page, "launch-expired")
        assert not await clinician_cookies(page)

        fresh = alex.launch_query(patient_id=patient)
        alex.stop_answering()
        response = await page.goto(f"{origin}/launch/medtech?{fresh}")
        assert response is not None
        assert response.status == 502
        await page.get_by_role("heading", name="Medtech ALEX is not answering").wait_for()
        await shot(page, "launch-alex-unreachable")
