"""The identity provider the sign-in tests use: `oidc-provider` (npm, OpenID Certified) run by
tests/idp/provider.mjs in a Node subprocess on a free loopback port, and a client that signs in at it the
way a person does (its development login form: any login and password; the login is the `sub`).

`make test` installs it (`npm ci --prefix tests/idp`); the test accounts are in provider.mjs ("dr-aroha"
has a name and fhirUser Practitioner/prac-42, "dr-ben" only a name).
"""

from __future__ import annotations

import asyncio
import html
import os
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

import httpx
import pytest

IDP_DIR = Path(__file__).resolve().parents[1] / "idp"
CLIENT_ID = "consultcam-test"
CLIENT_SECRET = "test-client-secret-0123456789abcdefABCDEF"
NODE = shutil.which("node") or "/usr/bin/node"


@dataclass
class Provider:
    """A running provider: its `issuer` (http://127.0.0.1:<port>) and process."""

    issuer: str
    process: subprocess.Popen[str]


@asynccontextmanager
async def identity_provider(
    app_origin: str,
    *,
    auth_method: str = "client_secret_basic",
    end_session: bool = True,
    port: int | None = None,
) -> AsyncIterator[Provider]:
    """Run the provider with consultcam at `app_origin` as its confidential client (redirect URI
    {app_origin}/auth/callback, post-logout URI {app_origin}/), on `port` (default: a free one). Each
    start makes new signing keys."""
    if not (IDP_DIR / "node_modules" / "oidc-provider").is_dir():
        pytest.fail(
            "the test identity provider is not installed: run `npm ci --prefix tests/idp` (make test does)"
        )
    from tests.e2e.harness import free_port

    port = port or free_port()
    env = {
        **os.environ,
        "IDP_PORT": str(port),
        "IDP_CLIENT_ID": CLIENT_ID,
        "IDP_CLIENT_SECRET": CLIENT_SECRET,
        "IDP_REDIRECT_URI": f"{app_origin}/auth/callback",
        "IDP_POST_LOGOUT_URI": f"{app_origin}/",
        "IDP_AUTH_METHOD": auth_method,
        "IDP_END_SESSION": "1" if end_session else "0",
    }
    process = subprocess.Popen(
        [NODE, str(IDP_DIR / "provider.mjs")],
        cwd=IDP_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), timeout=20)
        assert line.startswith("ready "), f"the identity provider did not start: {line!r}"
        yield Provider(issuer=line.split()[1], process=process)
    finally:
        stop(process)


def stop(process: subprocess.Popen[str]) -> None:
    """End the provider process (idempotent)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


_FORM = re.compile(r'<form[^>]*action="([^"]+)"[^>]*method="post"', re.I)
_CANCEL = re.compile(r'href="([^"]*/abort)"')


async def at_provider(
    client: httpx.AsyncClient, url: str, login: str = "dr-aroha", *, cancel: bool = False
) -> str:
    """Follow `url` (the provider's authorization URL) through its login form as `login` (or press its
    "Cancel" link), up to the redirect back to consultcam; returns that callback URL, not followed."""
    for _ in range(10):
        response = await client.get(url)
        if response.status_code in (302, 303):
            location = urljoin(url, response.headers["location"])
            if "/auth/callback" in location:
                return location
            url = location
            continue
        assert response.status_code == 200, response.text[:500]
        if cancel:
            found = _CANCEL.search(response.text)
            assert found, "the provider's page has no Cancel link"
            url = urljoin(url, html.unescape(found.group(1)))
            continue
        form = _FORM.search(response.text)
        assert form, f"the provider's page has no form: {response.text[:500]}"
        posted = await client.post(
            urljoin(url, html.unescape(form.group(1))),
            data={"prompt": "login", "login": login, "password": "any"},
        )
        assert posted.status_code in (302, 303), posted.text[:500]
        url = urljoin(url, posted.headers["location"])
    raise AssertionError("the provider never redirected back to consultcam")
