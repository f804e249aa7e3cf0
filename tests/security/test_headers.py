"""Framing, HSTS and proxies (issue 10, "Access"): no other origin may frame the pages (unless configured for
an EMR that embeds consultcam), HTTPS is pinned with HSTS, and `X-Forwarded-Proto` / `Forwarded` count only
from the proxies the practice trusts, so a client cannot pose as having come over HTTPS (or from another
address) and the cookies stay `Secure` behind the TLS proxy."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from consultcam.config import Settings
from tests.conftest import serving
from tests.e2e.harness import Server
from tests.security.attacker_site import AttackerSite, chromium, consultcam_serve


def csp(response: httpx.Response) -> dict[str, str]:
    """The Content-Security-Policy's directives by name."""
    directives = (
        part.strip().split(" ", 1) for part in response.headers["content-security-policy"].split(";")
    )
    return {d[0]: d[1] if len(d) > 1 else "" for d in directives if d[0]}


# -- framing ------------------------------------------------------------------------------------------------


@pytest.mark.backends("sqlite")
async def test_no_page_can_be_framed_by_default(app: Any) -> None:
    async with serving(app) as origin, httpx.AsyncClient(base_url=origin) as client:
        for path in ("/", "/m/sometoken", "/api/terminology/body-sites", "/static/js/api.js"):
            response = await client.get(path)
            assert csp(response)["frame-ancestors"] == "'none'", path
            assert response.headers["x-frame-options"] == "DENY", path


@pytest.mark.backends("sqlite")
@pytest.mark.parametrize(
    ("settings_overrides", "ancestors", "xfo"),
    [
        ({"frame_ancestors": "self"}, "'self'", "SAMEORIGIN"),
        (
            {"frame_ancestors": "https://emr.example.org, https://*.medtech.example:8443"},
            "https://emr.example.org https://*.medtech.example:8443",
            None,
        ),
        ({"frame_ancestors": "self,https://emr.example.org"}, "'self' https://emr.example.org", None),
    ],
    ids=["self", "emr-origins", "self-and-emr"],
)
async def test_an_emr_may_be_allowed_to_frame_the_pages(app: Any, ancestors: str, xfo: str | None) -> None:
    """X-Frame-Options cannot name origins: it is left out when the CSP allows some (RFC 7034, CSP 3)."""
    async with serving(app) as origin, httpx.AsyncClient(base_url=origin) as client:
        response = await client.get("/")
    assert csp(response)["frame-ancestors"] == ancestors
    assert response.headers.get("x-frame-options") == xfo


@pytest.mark.parametrize(
    "value",
    [
        "https://emr.example.org/path",
        "javascript:alert(1)",
        "https://a.example; script-src *",
        "*",
        "ftp://x.org",
        "none,https://emr.example.org",
    ],
)
def test_a_frame_ancestor_that_is_not_an_origin_is_refused(tmp_path: Path, value: str) -> None:
    with pytest.raises(ValueError, match="CONSULTCAM_FRAME_ANCESTORS"):
        Settings(data_dir=tmp_path, frame_ancestors=value)


FRAMING_PAGE = """<!doctype html><html><body>
<iframe id="victim" src="{url}" width="1200" height="800"></iframe>
</body></html>"""


async def framed_desktop_visible(server: Server, site: AttackerSite) -> bool:
    """Sign in to `server` in a real Chromium, open the attacker's page that frames the desktop, and say
    whether the desktop rendered inside the frame."""
    site.pages["/frame"] = FRAMING_PAGE.format(url=f"{server.url}/")
    async with chromium() as browser:
        context = await browser.new_context()
        page = await context.new_page()
        await page.goto(f"{server.url}/login?token={server.token}")
        await page.goto(f"{site.url}/frame")
        await page.wait_for_load_state("load")
        frame = await (await page.query_selector("#victim")).content_frame()  # type: ignore[union-attr]
        assert frame is not None
        try:
            await frame.wait_for_selector("#start-form", state="attached", timeout=5_000)
            return True
        except Exception:
            return False
        finally:
            await context.close()


async def test_a_real_browser_refuses_to_frame_the_desktop_for_another_origin(tmp_path: Path) -> None:
    with AttackerSite() as site:
        async with consultcam_serve(tmp_path / "default") as server:
            assert not await framed_desktop_visible(server, site)
        # The control: the same attack on a server that lets that origin frame it (an EMR) shows the desktop.
        async with consultcam_serve(tmp_path / "emr", CONSULTCAM_FRAME_ANCESTORS=site.url) as server:
            assert await framed_desktop_visible(server, site)


# -- HSTS and trusted proxies, against a real `consultcam serve` ---------------------------------------------

SPOOFED = (
    {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"},
    {"Forwarded": 'for="203.0.113.9";proto=https'},
)


def sign_in_from(server: Server, source: str, headers: dict[str, str]) -> httpx.Response:
    """GET the printed login link from local address `source` (127.0.0.x) with `headers`."""
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(transport=transport, timeout=20) as client:
        return client.get(f"{server.url}/login", params={"token": server.token}, headers=headers)


def secure_cookie(response: httpx.Response) -> bool:
    cookies = response.headers.get_list("set-cookie")
    assert cookies, response.text
    return all("secure" in [a.strip().lower() for a in c.split(";")] for c in cookies)


async def test_forwarded_headers_from_anyone_are_ignored(tmp_path: Path) -> None:
    async with consultcam_serve(tmp_path / "s") as server:
        for headers in SPOOFED:
            response = await asyncio.to_thread(sign_in_from, server, "127.0.0.1", headers)
            assert response.status_code == 303
            assert not secure_cookie(response)
            assert "strict-transport-security" not in response.headers


async def test_forwarded_headers_count_only_from_a_trusted_proxy(tmp_path: Path) -> None:
    """The TLS proxy of docs/deploy.md at 127.0.0.2: its word makes the cookies Secure and sends HSTS; the
    same headers from 127.0.0.1 (not listed) change nothing."""
    async with consultcam_serve(tmp_path / "s", CONSULTCAM_TRUSTED_PROXIES="127.0.0.2/32, ::1") as server:
        for headers in SPOOFED:
            spoofed = await asyncio.to_thread(sign_in_from, server, "127.0.0.1", headers)
            assert not secure_cookie(spoofed)
            assert "strict-transport-security" not in spoofed.headers
            proxied = await asyncio.to_thread(sign_in_from, server, "127.0.0.2", headers)
            assert proxied.status_code == 303
            assert secure_cookie(proxied)
            assert proxied.headers["strict-transport-security"] == "max-age=31536000"


def test_trusted_proxies_must_be_addresses(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="CONSULTCAM_TRUSTED_PROXIES"):
        Settings(data_dir=tmp_path, trusted_proxies="proxy.example.org")
    assert Settings(data_dir=tmp_path, trusted_proxies="10.0.0.0/8, 127.0.0.1").trusted_proxies == (
        "10.0.0.0/8",
        "127.0.0.1",
    )
