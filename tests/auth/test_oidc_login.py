"""Clinician sign-in through the practice's identity provider (issue 13): the OIDC authorization code flow
with PKCE, state and nonce, against a real, independently written OpenID Provider (`oidc-provider`, run by
tests/auth/idp.py), over real HTTP to consultcam on each database backend."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import select, update

from consultcam.auth.principals import CLINICIAN_COOKIE
from consultcam.config import Settings
from consultcam.kit.sealing import unseal
from consultcam.models import AuditEvent, AuthorizationRequest, CaptureSession, SignInSession, utcnow
from consultcam.retention.sweeper import sweep
from tests.auth.conftest import Deployment, deployed
from tests.auth.flows import sign_in, signin_rows, to_provider
from tests.auth.idp import at_provider, identity_provider, stop
from tests.conftest import PATIENT, assert_error

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


async def test_a_provider_that_changed_its_signing_keys_is_followed(deployment: Deployment) -> None:
    """Key rotation: the provider restarts with new keys; the next sign-in fetches them (its `kid` is not
    among the cached ones) instead of refusing the clinician."""
    async with deployment.browser() as client:
        assert (await sign_in(deployment, client)).status_code == 303
    stop(deployment.provider.process)
    port = int(deployment.provider.issuer.rsplit(":", 1)[1])
    async with identity_provider(deployment.origin, port=port), deployment.browser() as client:
        landed = await sign_in(deployment, client, "/", "dr-ben")
        assert landed.status_code == 303, landed.text[:800]
    assert len(await signin_rows(deployment.app)) == 2


async def test_the_return_path_is_only_ever_a_path_on_this_server(deployment: Deployment) -> None:
    for outside in (
        "https://evil.example/phish",
        "//evil.example/x",
        "/\\evil.example",
        "javascript:alert(1)",
    ):
        async with deployment.browser() as client:
            start = await client.get(deployment.origin + "/auth/login", params={"next": outside})
            assert start.status_code == 303
            landed = await client.get(await at_provider(client, start.headers["location"]))
            assert landed.status_code == 303
            location = landed.headers["location"]
            assert location == "/" or (location.startswith("/") and not location.startswith(("//", "/\\"))), (
                location
            )


async def test_api_calls_without_a_sign_in_get_401_json_not_a_redirect(deployment: Deployment) -> None:
    async with deployment.browser() as client:
        assert_error(await client.get(deployment.origin + "/api/sessions/whatever"), 401)
        page_by_script = await client.get(deployment.origin + "/", headers={"accept": "application/json"})
        assert_error(page_by_script, 401, None, "sign in")
        assert not (await signin_rows(deployment.app))


async def test_a_sign_in_ends_when_idle_or_too_old_and_the_page_goes_to_the_provider_again(
    deployment: Deployment,
) -> None:
    async with deployment.browser() as client:
        assert (await sign_in(deployment, client)).status_code == 303
        assert (await client.get(deployment.origin + "/")).status_code == 200
        past = utcnow() - timedelta(seconds=1)
        for column in ("idle_expires_at", "expires_at"):
            async with deployment.app.state.runtime.unit_of_work() as uow:
                await uow.session.execute(update(SignInSession).values(**{column: past}))
            again = await client.get(deployment.origin + "/sessions/s1")
            assert again.status_code == 303
            assert again.headers["location"].startswith(deployment.provider.issuer + "/auth?")
            assert_error(await client.get(deployment.origin + "/api/sessions/s1"), 401)
            async with deployment.app.state.runtime.unit_of_work() as uow:
                await uow.session.execute(
                    update(SignInSession).values(
                        idle_expires_at=utcnow() + timedelta(hours=1),
                        expires_at=utcnow() + timedelta(hours=2),
                    )
                )
            assert (await client.get(deployment.origin + "/")).status_code == 200


async def test_logout_ends_the_sign_in_here_and_at_the_provider(deployment: Deployment) -> None:
    async with deployment.browser() as client:
        await sign_in(deployment, client)
        cookie = client.cookies[CLINICIAN_COOKIE]
        await client.get(deployment.origin + "/healthz")
        answer = await client.post(deployment.origin + "/logout", headers={"accept": "application/json"})
        assert answer.status_code == 200, answer.text
        redirect = answer.json()["redirect"]
        assert redirect.startswith(deployment.provider.issuer + "/session/end?")
        sent = parse_qs(urlsplit(redirect).query)
        assert sent["post_logout_redirect_uri"] == [deployment.origin + "/"]
        assert sent["client_id"] == ["consultcam-test"]
        assert sent["id_token_hint"][0].count(".") == 2
        # The provider accepts it: its sign-out confirmation page (RP-Initiated Logout 1.0 §2).
        at_provider_page = await client.get(redirect)
        assert at_provider_page.status_code == 200, at_provider_page.text[:500]
        assert "logout" in at_provider_page.text.lower()
    # The sign-in ended on the server: the cookie, replayed, signs nothing in.
    [row] = await signin_rows(deployment.app)
    assert row.end_reason == "signed-out"
    async with httpx.AsyncClient(cookies={CLINICIAN_COOKIE: cookie}) as thief:
        assert_error(await thief.get(deployment.origin + "/api/sessions/x"), 401)
        assert (await thief.get(deployment.origin + "/")).status_code == 303  # to the provider


async def test_the_sign_out_form_without_script_goes_to_the_provider_too(deployment: Deployment) -> None:
    async with deployment.browser() as client:
        await sign_in(deployment, client)
        await client.get(deployment.origin + "/healthz")
        answer = await client.post(deployment.origin + "/logout")
        assert answer.status_code == 303
        assert answer.headers["location"].startswith(deployment.provider.issuer + "/session/end?")
        # Browsers hold a form's redirects to the page's CSP form-action: the provider is allowed there.
        policy = answer.headers["content-security-policy"]
        assert f"form-action 'self' {deployment.provider.issuer};" in policy


async def test_logout_without_an_end_session_endpoint_is_the_plain_204(settings: Settings) -> None:
    async with deployed(settings, end_session=False) as deployment, deployment.browser() as client:
        await sign_in(deployment, client)
        await client.get(deployment.origin + "/healthz")
        answer = await client.post(deployment.origin + "/logout", headers={"accept": "application/json"})
        assert answer.status_code == 204
        assert_error(await client.get(deployment.origin + "/api/sessions/x"), 401)


async def test_a_provider_that_takes_only_client_secret_post_is_used_so(settings: Settings) -> None:
    async with (
        deployed(settings, auth_method="client_secret_post") as deployment,
        deployment.browser() as client,
    ):
        landed = await sign_in(deployment, client, "/", "dr-ben")
        assert landed.status_code == 303, landed.text
        [row] = await signin_rows(deployment.app)
        assert (row.subject, row.name, row.fhir_user) == ("oidc:dr-ben", "Dr Ben Carter", None)


async def test_the_query_string_launch_prefill_is_off_with_oidc(deployment: Deployment) -> None:
    async with deployment.browser() as client:
        await sign_in(deployment, client)
        page = await client.get(
            deployment.origin + "/", params={"patientName": "Wiremu Tane", "nhi": "ZZZ0024"}
        )
        assert page.status_code == 200
        assert "Wiremu" not in page.text
        assert "ZZZ0024" not in page.text


@pytest.mark.parametrize(
    ("overrides", "prefilled"),
    [({}, True), ({"smart_issuers": ("https://ehr.example.org/fhir",)}, False)],
    ids=["embedded", "smart"],
)
async def test_the_query_string_launch_prefill_is_for_embedded_mode_only(
    settings: Settings, overrides: dict[str, Any], prefilled: bool
) -> None:
    from consultcam.app import create_app
    from tests.conftest import CLINICIAN_TOKEN

    app = create_app(settings.model_copy(update=overrides))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client,
    ):
        page = await client.get(
            "/",
            params={"patientName": "Wiremu Tane", "encounterId": "enc-9"},
            headers={"authorization": f"Bearer {CLINICIAN_TOKEN}"},
        )
        assert page.status_code == 200
        assert ("Wiremu Tane" in page.text) is prefilled


async def test_the_sweeper_deletes_expired_authorization_requests(deployment: Deployment) -> None:
    async with deployment.browser() as client:
        await to_provider(deployment, client, "/")
        await to_provider(deployment, client, "/")
    rt = deployment.app.state.runtime
    async with rt.unit_of_work() as uow:
        [first, _] = (await uow.session.execute(select(AuthorizationRequest))).scalars().all()
        first.expires_at = utcnow() - timedelta(seconds=1)
    report = await sweep(rt.unit_of_work, rt)
    assert report.expired_authorization_requests == 1
    assert not report.errors
    async with rt.sessionmaker() as db:
        assert len((await db.execute(select(AuthorizationRequest))).scalars().all()) == 1
