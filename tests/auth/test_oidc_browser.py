"""The sign-in through the practice's identity provider in a real Chromium (issue 13): the desktop sends
the browser to the provider (`oidc-provider`'s own login page), the clinician signs in there and comes
back to the desktop signed in; "Sign out" ends the sign-in here and at the provider. Screenshots of the
provider's page and of the desktop go to test-artifacts/screenshots/ for a person to look at."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import async_playwright
from sqlalchemy import select

from consultcam.auth.principals import CLINICIAN_COOKIE
from consultcam.models import SignInSession
from tests.auth.conftest import Deployment
from tests.e2e.harness import CHROMIUM, CHROMIUM_ARGS

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


async def test_the_desktop_signs_in_at_the_provider_and_comes_back(deployment: Deployment) -> None:
    provider = deployment.provider.issuer
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_ARGS))
        try:
            context = await chromium.new_context(viewport={"width": 1280, "height": 800}, locale="en-NZ")
            context.set_default_timeout(15_000)
            # The provider's dev pages load a web font; the tests run offline.
            await context.route("https://fonts.googleapis.com/**", lambda route: route.abort())
            page = await context.new_page()

            await page.goto(deployment.origin + "/")
            assert page.url.startswith(provider + "/interaction/"), page.url
            await page.locator("input[name=login]").wait_for()
            await page.screenshot(path=str(SCREENSHOTS / "oidc-provider-sign-in.png"), animations="disabled")
            await page.locator("input[name=login]").fill("dr-aroha")
            await page.locator("input[name=password]").fill("any password")
            await page.locator("button[type=submit]").click()

            await page.get_by_test_id("start-session").wait_for()
            assert page.url == deployment.origin + "/"
            # The app bar names who is signed in: the provider's `name` claim.
            signed_in = await page.get_by_test_id("signed-in").inner_text()
            assert signed_in.split() == ["Signed", "in", "as", "Dr", "Aroha", "Ngata"], signed_in
            await page.screenshot(
                path=str(SCREENSHOTS / "desktop-after-oidc-sign-in.png"), animations="disabled"
            )
            [cookie] = [c for c in await context.cookies(deployment.origin) if c["name"] == CLINICIAN_COOKIE]
            assert cookie["httpOnly"]
            assert cookie["sameSite"] == "Lax"

            # "Sign out": ended here, then the provider's own sign-out page (RP-Initiated Logout). The page's
            # script answers the click (sign-out.js), once it has run.
            await page.wait_for_load_state("load")
            await page.get_by_test_id("sign-out").click()
            await page.wait_for_url(provider + "/session/end**", wait_until="commit", timeout=30_000)
            await page.get_by_role("button", name="Yes, sign me out").click()
            # Back at consultcam's post-logout URI, which, signed out everywhere, asks the provider again.
            await page.locator("input[name=login]").wait_for()
            assert page.url.startswith(provider + "/interaction/")
            assert not [c for c in await context.cookies(deployment.origin) if c["name"] == CLINICIAN_COOKIE]
        finally:
            await chromium.close()
    async with deployment.app.state.runtime.sessionmaker() as db:
        [row] = (await db.execute(select(SignInSession))).scalars().all()
    assert row.subject == "oidc:dr-aroha"
    assert row.end_reason == "signed-out"
