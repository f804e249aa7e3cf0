"""What the sign-in refuses, each with its own page, status and plain words, no sign-in and no token shown
(issue 13): a changed or unknown state, a replayed callback, a replayed code, a nonce that is not the one
sent, an answer from another issuer, a callback in another browser, the provider's denial, and a provider
that cannot be reached. Against the real `oidc-provider` (tests/auth/idp.py)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select

from consultcam.app import create_app
from consultcam.config import Settings
from consultcam.models import SignInSession
from tests.auth.conftest import Deployment, deployed, oidc_settings
from tests.auth.flows import problem, signin_rows, to_provider, with_query
from tests.auth.idp import at_provider, identity_provider, stop
from tests.conftest import serving
from tests.e2e.harness import free_port


async def test_a_changed_state_is_refused(deployment: Deployment) -> None:
    async with deployment.browser() as client:
        callback = await at_provider(client, await to_provider(deployment, client, "/"))
        state = parse_qs(urlsplit(callback).query)["state"][0]
        changed = state[:-2] + ("AA" if not state.endswith("AA") else "BB")
        problem(await client.get(with_query(callback, state=changed)), 400, "unknown-state")
        problem(await client.get(with_query(callback, state="")), 400, "no-state")
        # The genuine answer still works afterwards: a forged one does not spend it.
        assert (await client.get(callback)).status_code == 303
    assert len(await signin_rows(deployment.app)) == 1


@pytest.mark.parametrize("database_backend", ["sqlite", "postgresql"], indirect=True)
async def test_a_replayed_callback_is_refused(deployment: Deployment) -> None:
    async with deployment.browser() as client:
        callback = await at_provider(client, await to_provider(deployment, client, "/"))
        first = await client.get(callback)
        assert first.status_code == 303
        again = await client.get(callback)
        problem(again, 409, "replayed")
        assert "used already" in again.text
        code = parse_qs(urlsplit(callback).query)["code"][0]
        assert code not in again.text
    async with deployment.browser() as other:  # from another browser, the same
        problem(await other.get(callback), 409, "replayed")
    assert len(await signin_rows(deployment.app)) == 1


async def test_a_replayed_code_with_a_fresh_state_is_refused_by_the_provider(deployment: Deployment) -> None:
    async with deployment.browser() as client:
        used = await at_provider(client, await to_provider(deployment, client, "/"))
        assert (await client.get(used)).status_code == 303
        # Signed in now, so the clinician asks to sign in again (the "Sign in again" link).
        again = await to_provider(deployment, client, "/auth/login?next=/")
        fresh = parse_qs(urlsplit(again).query)["state"][0]
        answer = await client.get(with_query(used, state=fresh))
        problem(answer, 400, "token-refused")
        assert "invalid_grant" in answer.text
    assert len(await signin_rows(deployment.app)) == 1


async def test_an_id_token_with_another_nonce_is_refused(deployment: Deployment) -> None:
    """The browser reaches the provider with another nonce than consultcam sent (a code minted for another
    sign-in request, injected into this one): PKCE and state pass, the ID Token's nonce does not."""
    async with deployment.browser() as client:
        authorize = await to_provider(deployment, client, "/")
        callback = await at_provider(
            client, with_query(authorize, nonce="a-nonce-consultcam-never-sent-0123456789")
        )
        answer = await client.get(callback)
        problem(answer, 401, "nonce-mismatch")
        assert "nonce" in answer.text
    assert not await signin_rows(deployment.app)


async def test_an_answer_naming_another_issuer_is_refused(deployment: Deployment) -> None:
    """RFC 9207: the provider says who answered (`iss`); another issuer's answer is a mix-up attack."""
    async with deployment.browser() as client:
        callback = await at_provider(client, await to_provider(deployment, client, "/"))
        assert parse_qs(urlsplit(callback).query)["iss"] == [deployment.provider.issuer]
        problem(await client.get(with_query(callback, iss="https://evil.example")), 400, "issuer-mismatch")
    assert not await signin_rows(deployment.app)


async def test_a_provider_calling_itself_another_issuer_is_not_used(settings: Settings) -> None:
    """CONSULTCAM_OIDC_ISSUER must be the provider's exact issuer (Discovery §4.3)."""
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    async with identity_provider(origin) as provider:
        wrong = provider.issuer.replace("127.0.0.1", "localhost")
        app = create_app(oidc_settings(settings, origin, wrong))
        async with app.router.lifespan_context(app), serving(app, port):
            deployment = Deployment(origin, app, app.state.runtime.settings, provider)
            async with deployment.browser() as client:
                answer = await client.get(origin + "/")
                problem(answer, 502, "issuer-mismatch")


async def test_a_callback_in_another_browser_signs_nobody_in(deployment: Deployment) -> None:
    """Login CSRF (RFC 6749 §10.12): an attacker signs in, and sends the victim the callback link."""
    async with deployment.browser() as attacker:
        callback = await at_provider(attacker, await to_provider(deployment, attacker, "/"), "dr-ben")
    async with deployment.browser() as victim:
        problem(await victim.get(callback), 400, "other-browser")
    assert not await signin_rows(deployment.app)


async def test_the_providers_denial_is_said_plainly(deployment: Deployment) -> None:
    async with deployment.browser() as client:
        callback = await at_provider(client, await to_provider(deployment, client, "/"), cancel=True)
        assert parse_qs(urlsplit(callback).query)["error"] == ["access_denied"]
        answer = await client.get(callback)
        problem(answer, 403, "access-denied")
        assert "did not let you sign in" in answer.text
        assert 'href="/auth/login?next=/"' in answer.text.replace("%2F", "/")


async def test_an_unreachable_provider_is_a_503_page_not_a_crash(settings: Settings) -> None:
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    nowhere = f"http://127.0.0.1:{free_port()}"
    app = create_app(oidc_settings(settings, origin, nowhere))
    async with app.router.lifespan_context(app), serving(app, port):
        deployment = Deployment(origin, app, app.state.runtime.settings, None)  # type: ignore[arg-type]
        async with deployment.browser() as client:
            answer = await client.get(origin + "/")
            problem(answer, 503, "unreachable")
            assert answer.headers["retry-after"] == "30"
            assert "could not be reached" in answer.text


async def test_a_provider_gone_before_the_code_exchange_is_a_503_page(settings: Settings) -> None:
    async with deployed(settings) as deployment, deployment.browser() as client:
        callback = await at_provider(client, await to_provider(deployment, client, "/"))
        stop(deployment.provider.process)
        answer = await client.get(callback)
        problem(answer, 503, "unreachable")
        async with deployment.app.state.runtime.sessionmaker() as db:
            assert not (await db.execute(select(SignInSession))).scalars().all()
