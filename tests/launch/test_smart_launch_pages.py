"""SMART App Launch in a real Chromium against a running server (uvicorn, SQLite and PostgreSQL) and the SMART
EHR test double: from the EHR's launch URL to the desktop for the EHR's patient; an issuer not in the list
gets a page saying what to do. Screenshots go to test-artifacts/screenshots/smart-launch-*.png, to be
looked at."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlencode

import pytest
from playwright.async_api import Page, async_playwright

from consultcam.app import create_app
from consultcam.auth.principals import CLINICIAN_COOKIE
from consultcam.config import Settings
from tests.conftest import serving
from tests.e2e.harness import CHROMIUM, CHROMIUM_ARGS
from tests.launch.test_launch_pages import shot
from tests.smart.double import EhrDouble


@pytest.fixture
def ehr() -> Iterator[EhrDouble]:
    with EhrDouble() as double:
        yield double


@pytest.fixture
def settings_overrides(ehr: EhrDouble) -> dict[str, Any]:
    return {k.removeprefix("CONSULTCAM_").lower(): v for k, v in ehr.env().items()}


@asynccontextmanager
async def smart_browser(settings: Settings, ehr: EhrDouble) -> AsyncIterator[tuple[str, Page]]:
    """A web process on loopback (the EHR's registered redirect URI set to its callback) and a fresh
    1280×800 Chromium page with no sign-in: (origin, page)."""
    app = create_app(settings)
    async with app.router.lifespan_context(app), serving(app) as origin, async_playwright() as pw:
        ehr.set_redirect_uri(f"{origin}/launch/callback")
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_ARGS))
        try:
            context = await chromium.new_context(
                viewport={"width": 1280, "height": 800}, locale="en-NZ", timezone_id="Pacific/Auckland"
            )
            context.set_default_timeout(15_000)
            yield origin, await context.new_page()
        finally:
            await chromium.close()


async def test_an_ehr_launch_opens_the_desktop_for_the_ehrs_patient(
    settings: Settings, ehr: EhrDouble
) -> None:
    pid = ehr.add_patient(family="Smith", given="Jane", birth_date="1980-04-02", nhi="ZZZ0016")
    launch_url_context = {"patient": pid, "encounter": ehr.add_encounter(pid), "user": ehr.add_practitioner()}
    async with smart_browser(settings, ehr) as (origin, page):
        await page.goto(ehr.launch_url(origin, **launch_url_context))
        await page.wait_for_url(f"{origin}/sessions/*")
        assert "?" not in page.url
        banner = page.get_by_test_id("patient-banner")
        await banner.get_by_text("Jane Smith").wait_for()
        assert "ZZZ0016" in await banner.inner_text()
        await page.get_by_test_id("qr").and_(page.locator("[data-state=active]")).wait_for()
        assert [c for c in await page.context.cookies() if c["name"] == CLINICIAN_COOKIE]
        await shot(page, "smart-launch-desktop")
    [exchange] = ehr.token_requests()
    assert exchange["code_verifier_ok"] is True


async def test_an_unknown_issuer_gets_a_page_saying_what_to_do(settings: Settings, ehr: EhrDouble) -> None:
    async with smart_browser(settings, ehr) as (origin, page):
        query = urlencode({"iss": "https://ehr.example.org/fhir", "launch": "abc"})
        response = await page.goto(f"{origin}/launch?{query}")
        assert response is not None
        assert response.status == 403
        await page.get_by_role(
            "heading", name="consultcam does not know this patient record system"
        ).wait_for()
        await shot(page, "smart-launch-unknown-issuer")
    assert ehr.requests() == []


async def test_a_patient_signed_in_to_the_ehr_gets_a_page_saying_consultcam_is_for_clinicians(
    settings: Settings, ehr: EhrDouble
) -> None:
    pid = ehr.add_patient(family="Smith", given="Jane", birth_date="1980-04-02", nhi="ZZZ0016")
    ehr.next_id_token(fhirUser=f"{ehr.iss}/Patient/{pid}")
    async with smart_browser(settings, ehr) as (origin, page):
        response = await page.goto(ehr.launch_url(origin, patient=pid, encounter=ehr.add_encounter(pid)))
        assert response is not None
        assert response.status == 403
        await page.get_by_role("heading", name="consultcam opens only for clinicians").wait_for()
        assert await page.get_by_test_id("patient-banner").count() == 0
        assert not [c for c in await page.context.cookies() if c["name"] == CLINICIAN_COOKIE]
        await shot(page, "smart-launch-not-a-practitioner")
