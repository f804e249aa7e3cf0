"""Clinician sign-in through the practice's identity provider (issue 13): the OIDC authorization code flow
with PKCE, state and nonce, against a real, independently written OpenID Provider (`oidc-provider`, run by
tests/auth/idp.py), over real HTTP to consultcam on each database backend."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
from sqlalchemy import select

from consultcam.auth.principals import CLINICIAN_COOKIE
from consultcam.kit.sealing import unseal
from consultcam.models import AuditEvent, CaptureSession, SignInSession
from tests.auth.conftest import Deployment
from tests.auth.idp import at_provider
from tests.conftest import PATIENT


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


# --- the round trip -------------------------------------------------------------------------------------


async def test_signing_in_lands_on_the_page_the_clinician_was_on(deployment: Deployment) -> None:
    async with deployment.browser() as client:
        authorize = await to_provider(deployment, client, "/sessions/abc?tab=photos")
        sent = parse_qs(urlsplit(authorize).query)
        # What consultcam asked for: a code, PKCE S256, a state and a nonce, the registered redirect URI.
        assert sent["response_type"] == ["code"]
        assert sent["code_challenge_method"] == ["S256"]
        assert len(sent["code_challenge"][0]) == 43
        assert len(sent["state"][0]) >= 43
        assert len(sent["nonce"][0]) >= 43
        assert sent["redirect_uri"] == [deployment.origin + "/auth/callback"]
        assert sent["scope"] == ["openid profile fhirUser"]
        callback = await at_provider(client, authorize)
        landed = await client.get(callback)
        assert landed.status_code == 303, landed.text
        assert landed.headers["location"] == "/sessions/abc?tab=photos"
        cookie = client.cookies[CLINICIAN_COOKIE]
        assert "httponly" in landed.headers["set-cookie"].lower()
        assert "samesite=lax" in landed.headers["set-cookie"].lower()
        page = await client.get(deployment.origin + "/sessions/abc?tab=photos")
        assert page.status_code == 200
        assert 'id="page-data"' in page.text

        # The clinician is the provider's user; the sessions they open record them, and default to their
        # fhirUser's Practitioner.
        await client.get(deployment.origin + "/healthz")
        made = await client.post(
            deployment.origin + "/api/sessions", json={"encounterId": "enc-oidc", "patient": PATIENT}
        )
        assert made.status_code == 201, made.text
        assert made.json()["practitionerId"] == "prac-42"
        named = await client.post(
            deployment.origin + "/api/sessions",
            json={"encounterId": "enc-oidc-2", "patient": PATIENT, "practitionerId": "other-7"},
        )
        assert named.json()["practitionerId"] == "other-7"

    async with deployment.app.state.runtime.sessionmaker() as db:
        session = await db.get(CaptureSession, made.json()["id"])
        assert session is not None
        assert session.created_by == "oidc:dr-aroha"
        events = list((await db.execute(select(AuditEvent))).scalars())
    [row] = await signin_rows(deployment.app)
    assert (row.method, row.subject, row.name, row.fhir_user) == (
        "oidc",
        "oidc:dr-aroha",
        "Dr Aroha Ngata",
        "Practitioner/prac-42",
    )
    assert cookie not in repr(vars(row))
    # The ID Token is kept sealed only; it is a JWT that no page, row or audit entry shows in the clear.
    id_token = unseal(deployment.settings.secret_key, "oidc-id-token", row.sealed_id_token or "")["id_token"]
    assert id_token.count(".") == 2
    assert id_token not in repr(vars(row))
    started = [e for e in events if e.action == "signin.started"]
    assert [(e.actor_id, e.detail["method"]) for e in started] == [("oidc:dr-aroha", "oidc")]
    created = [e for e in events if e.action == "session.created"]
    assert {e.actor_id for e in created} == {"oidc:dr-aroha"}
    assert not any(id_token in str(e.detail) for e in events)

    # Bearer JWTs keep working for API clients: the provider's ID Token for this client is one.
    async with httpx.AsyncClient(
        base_url=deployment.origin, headers={"authorization": f"Bearer {id_token}"}
    ) as api:
        answer = await api.get(f"/api/sessions/{made.json()['id']}")
        assert answer.status_code == 200, answer.text
