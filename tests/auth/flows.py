"""What a browser does in the sign-in tests: go to the provider, sign in, come back; and what a refused
sign-in looks like."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
from sqlalchemy import select

from consultcam.auth.principals import CLINICIAN_COOKIE
from consultcam.models import SignInSession
from tests.auth.conftest import Deployment
from tests.auth.idp import at_provider


async def to_provider(deployment: Deployment, client: httpx.AsyncClient, path: str) -> str:
    """Open `path` on consultcam without a sign-in: the redirect to the provider's authorization URL."""
    response = await client.get(deployment.origin + path)
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    assert location.startswith(deployment.provider.issuer + "/auth?"), location
    return location


async def sign_in(
    deployment: Deployment, client: httpx.AsyncClient, path: str = "/", login: str = "dr-aroha"
) -> httpx.Response:
    """The whole round trip from `path`; returns consultcam's answer to the callback."""
    callback = await at_provider(client, await to_provider(deployment, client, path), login)
    return await client.get(callback)


async def signin_rows(app: Any) -> list[SignInSession]:
    async with app.state.runtime.sessionmaker() as db:
        return list((await db.execute(select(SignInSession))).scalars())


def problem(response: httpx.Response, status: int, reason: str) -> None:
    """A sign-in problem page: its status, its reason, plain words, and no sign-in cookie."""
    assert response.status_code == status, response.text[:800]
    assert f'data-reason="{reason}"' in response.text, response.text[:1500]
    assert "Sign-in did not complete" in response.text
    assert CLINICIAN_COOKIE not in response.headers.get("set-cookie", "")


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    return urlunsplit(parts._replace(query=urlencode({**query, **changes})))
