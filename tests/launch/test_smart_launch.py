"""SMART App Launch 2.x (`/launch`, `/launch/callback`, issue 13) against the SMART EHR test double (its own
process, real HTTP, checking PKCE, aud, launch, state, redirect URI and scopes), on SQLite and PostgreSQL:
what the user's browser gets, what the database holds afterwards, what the EHR was asked, and the audit
trail of every refusal."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from sqlalchemy import select, update

from consultcam.app import create_app
from consultcam.auth.principals import CLINICIAN_COOKIE
from consultcam.config import Settings
from consultcam.kit.sealing import unseal
from consultcam.models import (
    AuditEvent,
    AuthorizationRequest,
    CaptureSession,
    SignInSession,
    SmartGrant,
    utcnow,
)
from tests.conftest import assert_error
from tests.launch.helpers import assert_refusal_page, audit, browser, count
from tests.smart.double import EhrDouble

V2_SCOPE = (
    "launch openid fhirUser patient/Patient.rs patient/Encounter.rs patient/Media.c "
    "patient/DocumentReference.c"
)
V1_SCOPE = (
    "launch openid fhirUser patient/Patient.read patient/Encounter.read patient/Media.write "
    "patient/DocumentReference.write"
)


@pytest.fixture
def ehr_options() -> dict[str, Any]:
    """EhrDouble's options: `@pytest.mark.parametrize("ehr_options", [{"permission": "v1"}])`."""
    return {}


@pytest.fixture
def ehr(ehr_options: dict[str, Any]) -> Iterator[EhrDouble]:
    """A fresh SMART EHR double registered with consultcam's redirect URI as the test client sees it."""
    with EhrDouble(redirect_uri="http://testserver/launch/callback", **ehr_options) as double:
        yield double


@pytest.fixture
def extra_settings() -> dict[str, Any]:
    return {}


@pytest.fixture
def settings_overrides(ehr: EhrDouble, extra_settings: dict[str, Any]) -> dict[str, Any]:
    """CONSULTCAM_SMART_ISSUERS and the client of the double (replaces the Medtech tests' ALEX set-up)."""
    return {k.removeprefix("CONSULTCAM_").lower(): v for k, v in ehr.env().items()} | extra_settings


@pytest.fixture
def jane(ehr: EhrDouble) -> dict[str, str]:
    """Jane Smith (NHI ZZZ0016), an encounter of hers, and Dr Aroha Ngata as the launching user."""
    pid = ehr.add_patient(family="Smith", given="Jane", birth_date="1980-04-02", nhi="ZZZ0016")
    return {"patient": pid, "encounter": ehr.add_encounter(pid), "user": ehr.add_practitioner()}


async def to_ehr(gp: httpx.AsyncClient, query: dict[str, str]) -> str:
    """GET /launch?{query}: must be a 302 to the EHR's authorize endpoint; returns that URL."""
    response = await gp.get(f"/launch?{urlencode(query)}")
    assert response.status_code == 302, response.text
    assert response.headers["cache-control"] == "no-store"
    return str(response.headers["location"])


async def authorize(url: str) -> str:
    """What the EHR's /authorize answers (no user interaction in the double): the callback path + query."""
    async with httpx.AsyncClient(trust_env=False) as http:
        response = await http.get(url)
    assert response.status_code == 302, response.text
    location = urlsplit(response.headers["location"])
    assert f"{location.scheme}://{location.netloc}" == "http://testserver"
    return f"{location.path}?{location.query}"


async def launch(gp: httpx.AsyncClient, ehr: EhrDouble, **context: str | None) -> httpx.Response:
    """A whole EHR launch (standalone without `patient`): /launch, the EHR's authorize, the callback."""
    query = {"iss": ehr.iss}
    if context:
        query["launch"] = ehr.new_launch(**context)
    return await gp.get(await authorize(await to_ehr(gp, query)))


async def rows(app: Any, model: Any) -> list[Any]:
    async with app.state.runtime.sessionmaker() as db:
        return list((await db.execute(select(model))).scalars())


async def assert_refused(app: Any, response: httpx.Response, status: int, reason: str, *words: str) -> None:
    """A refusal page: status, words, never cached, no cookie, nothing made (no session, sign-in or SMART
    grant); one `launch.refused` row, by the SMART launch."""
    refused = await assert_refusal_page(app, response, status, reason, words, made=[SmartGrant])
    assert refused.actor_id == "smart-launch"


# --- accepted ----------------------------------------------------------------------------------------------


async def test_an_ehr_launch_signs_the_user_in_and_opens_the_ehrs_patient_and_encounter(
    app: Any, ehr: EhrDouble, jane: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with browser(app) as gp:
        response = await launch(gp, ehr, **jane)
        assert response.status_code == 303, response.text
        location = response.headers["location"]
        assert location.startswith("/sessions/")
        assert "?" not in location
        cookie = response.headers["set-cookie"]
        assert cookie.startswith(f"{CLINICIAN_COOKIE}=")
        assert "HttpOnly" in cookie
        assert (await gp.get(location)).status_code == 200
        body = (await gp.get(f"/api{location}")).json()
    assert body["patient"] == {
        "id": jane["patient"],
        "name": "Jane Smith",
        "nhi": "ZZZ0016",
        "birthDate": "1980-04-02",
    }
    assert body["encounterId"] == jane["encounter"]
    practitioner = jane["user"].removeprefix("Practitioner/")
    assert body["practitionerId"] == practitioner

    # What the EHR was asked: authorize with everything SMART needs, then a PKCE-checked code exchange by a
    # public client, then the Patient and Encounter with the access token.
    [asked] = ehr.authorize_requests()
    assert asked["response_type"] == "code"
    assert asked["client_id"] == "consultcam"
    assert asked["redirect_uri"] == "http://testserver/launch/callback"
    assert asked["scope"] == V2_SCOPE
    assert asked["aud"] == ehr.iss
    assert asked["code_challenge_method"] == "S256"
    assert len(asked["state"]) >= 43
    assert len(asked["nonce"]) >= 43
    assert ehr.token_requests() == [
        {
            "grant_type": "authorization_code",
            "code_verifier_ok": True,
            "redirect_uri": "http://testserver/launch/callback",
            "client_auth": "none",
        }
    ]
    reads = [(r["method"], r["path"], r["headers"].get("authorization")) for r in ehr.requests()[-2:]]
    assert reads == [
        ("GET", f"/fhir/Patient/{jane['patient']}", "Bearer [redacted]"),
        ("GET", f"/fhir/Encounter/{jane['encounter']}", "Bearer [redacted]"),
    ]

    # The grant is kept for the session, its token sealed: it works at the EHR, and it is nowhere in the
    # database in the clear.
    [grant] = await rows(app, SmartGrant)
    assert grant.session_id == location.removeprefix("/sessions/")
    assert (grant.issuer, grant.fhir_base, grant.client_id) == (ehr.iss, ehr.iss, "consultcam")
    assert grant.token_endpoint == f"{ehr.root}/auth/token"
    assert grant.fhir_user == jane["user"]
    assert grant.scope == V2_SCOPE
    assert grant.access_expires_at is not None
    assert grant.access_expires_at > utcnow() + timedelta(minutes=55)
    tokens = unseal(app.state.runtime.settings.secret_key, "smart-grant", grant.sealed_tokens)
    assert set(tokens) == {"access_token"}
    async with httpx.AsyncClient(trust_env=False) as http:
        read = await http.get(
            f"{ehr.iss}/Patient/{jane['patient']}",
            headers={"Authorization": f"Bearer {tokens['access_token']}"},
        )
    assert read.status_code == 200
    stored = [
        str(vars(row))
        for model in (SmartGrant, AuthorizationRequest, AuditEvent, SignInSession)
        for row in await rows(app, model)
    ]
    assert tokens["access_token"] not in "\n".join(stored)
    # Nor in the server's logs (this test's own clients log the URLs they asked for: left out).
    logged = "\n".join(
        r.getMessage()
        for r in caplog.records
        if "http://testserver/" not in r.getMessage() and "/auth/authorize?" not in r.getMessage()
    )
    assert tokens["access_token"] not in logged
    assert asked["state"] not in logged

    [signin] = await rows(app, SignInSession)
    host = ehr.iss.split("/")[2]
    assert (signin.method, signin.subject) == ("smart", f"smart:{host}:{jane['user']}")
    assert signin.practitioner_id == practitioner
    [accepted] = await audit(app, "launch.accepted")
    assert accepted.detail == {"resumed": False, "method": "smart", "issuer": ehr.iss, "standalone": False}
    [pending] = await rows(app, AuthorizationRequest)
    assert pending.used_at is not None


@pytest.mark.parametrize(
    ("ehr_options", "extra_settings"),
    [({"client_secret": "s3cret-of-the-ehr", "permission": "v1"}, {"smart_offline_access": True})],
)
async def test_a_confidential_client_on_a_v1_server_asks_v1_scopes_and_keeps_the_refresh_token(
    app: Any, ehr: EhrDouble, jane: dict[str, str]
) -> None:
    async with browser(app) as gp:
        response = await launch(gp, ehr, **jane)
    assert response.status_code == 303, response.text
    [asked] = ehr.authorize_requests()
    assert asked["scope"] == V1_SCOPE + " offline_access"
    [exchange] = ehr.token_requests()
    assert exchange["client_auth"] == "client_secret_basic"
    assert exchange["code_verifier_ok"] is True
    [grant] = await rows(app, SmartGrant)
    tokens = unseal(app.state.runtime.settings.secret_key, "smart-grant", grant.sealed_tokens)
    assert set(tokens) == {"access_token", "refresh_token"}


async def test_a_standalone_launch_opens_the_selected_patient_once_a_day(
    app: Any, ehr: EhrDouble, jane: dict[str, str]
) -> None:
    async with browser(app) as gp:
        first = await launch(gp, ehr)
        again = await launch(gp, ehr)
        assert first.status_code == again.status_code == 303
        assert first.headers["location"] == again.headers["location"]
        body = (await gp.get(f"/api{first.headers['location']}")).json()
    assert body["patient"]["id"] == jane["patient"]
    assert body["encounterId"].startswith("sm-")
    assert len(body["encounterId"]) == 32
    asked = ehr.authorize_requests()
    assert [a["scope"].split()[0] for a in asked] == ["launch/patient", "launch/patient"]
    assert all("launch" not in a for a in asked)
    assert [e.detail["resumed"] for e in await audit(app, "launch.accepted")] == [False, True]
    assert await count(app, SmartGrant) == 1  # the second launch replaced the session's grant


# --- refused -----------------------------------------------------------------------------------------------


async def test_an_issuer_not_in_the_list_is_refused_before_anything_is_asked(
    app: Any, ehr: EhrDouble, jane: dict[str, str]
) -> None:
    async with browser(app) as gp:
        for iss in ("https://evil.example/fhir", ehr.iss + "x", ehr.iss.replace("127.0.0.1", "localhost")):
            response = await gp.get("/launch", params={"iss": iss, "launch": ehr.new_launch(**jane)})
            assert response.status_code == 403
            assert 'data-reason="unknown-issuer"' in response.text
    assert ehr.requests() == []
    assert await count(app, AuthorizationRequest) == 0
    assert [e.detail["reason"] for e in await audit(app, "launch.refused")] == ["unknown-issuer"] * 3


async def test_a_denied_authorization_opens_nothing(app: Any, ehr: EhrDouble, jane: dict[str, str]) -> None:
    ehr.deny_next()
    async with browser(app) as gp:
        response = await launch(gp, ehr, **jane)
    await assert_refused(app, response, 403, "denied", "Access was not allowed")
    assert ehr.token_requests() == []


async def test_a_tampered_state_is_refused_and_the_real_one_still_works(
    app: Any, ehr: EhrDouble, jane: dict[str, str]
) -> None:
    async with browser(app) as gp:
        callback = await authorize(await to_ehr(gp, {"iss": ehr.iss, "launch": ehr.new_launch(**jane)}))
        query = {k: v[0] for k, v in parse_qs(urlsplit(callback).query).items()}
        tampered = await gp.get("/launch/callback", params={**query, "state": query["state"][:-2] + "xy"})
        await assert_refused(app, tampered, 403, "bad-state")
        assert ehr.token_requests() == []
        assert (await gp.get(callback)).status_code == 303


async def test_a_replayed_callback_is_refused(app: Any, ehr: EhrDouble, jane: dict[str, str]) -> None:
    async with browser(app) as gp:
        callback = await authorize(await to_ehr(gp, {"iss": ehr.iss, "launch": ehr.new_launch(**jane)}))
        assert (await gp.get(callback)).status_code == 303
    async with browser(app) as attacker:
        replayed = await attacker.get(callback)
    assert replayed.status_code == 403
    assert 'data-reason="replayed"' in replayed.text
    assert "set-cookie" not in replayed.headers
    assert len(ehr.token_requests()) == 1  # the code was not sent again
    assert await count(app, SignInSession) == 1


async def test_an_expired_state_is_refused(app: Any, ehr: EhrDouble, jane: dict[str, str]) -> None:
    async with browser(app) as gp:
        callback = await authorize(await to_ehr(gp, {"iss": ehr.iss, "launch": ehr.new_launch(**jane)}))
        async with app.state.runtime.unit_of_work() as uow:
            await uow.session.execute(
                update(AuthorizationRequest).values(expires_at=utcnow() - timedelta(seconds=1))
            )
        response = await gp.get(callback)
    await assert_refused(app, response, 403, "expired", "within 10 minutes")
    assert ehr.token_requests() == []


@pytest.mark.parametrize(
    "spoiled",
    [
        {"nonce": "wrong"},
        {"nonce": None},
        {"aud": "someone-else"},
        {"iss": "http://evil.example"},
        {"exp": 1},
        {"foreign_key": True},
    ],
    ids=["wrong-nonce", "no-nonce", "aud", "iss", "expired", "foreign-key"],
)
async def test_an_id_token_that_fails_a_check_opens_nothing(
    app: Any, ehr: EhrDouble, jane: dict[str, str], spoiled: dict[str, Any]
) -> None:
    ehr.next_id_token(**spoiled)
    async with browser(app) as gp:
        response = await launch(gp, ehr, **jane)
    await assert_refused(app, response, 502, "id-token-invalid", "could not be confirmed")
    assert not [r for r in ehr.requests() if r["path"].startswith("/fhir/Patient")]


@pytest.mark.parametrize("user", ["Patient", "RelatedPerson/5", None], ids=["patient", "related", "none"])
async def test_a_user_who_is_not_a_practitioner_opens_nothing(
    app: Any, ehr: EhrDouble, jane: dict[str, str], user: str | None
) -> None:
    # A patient signed in to the EHR (or a user the EHR does not name) must not get a clinician's sign-in,
    # which would reach every capture session.
    if user == "Patient":
        user = f"Patient/{jane['patient']}"
    ehr.next_id_token(fhirUser=f"{ehr.iss}/{user}" if user else None)
    async with browser(app) as gp:
        response = await launch(gp, ehr, **jane)
    await assert_refused(app, response, 403, "not-a-practitioner", "only for clinicians", "fhirUser scope")
    assert not [r for r in ehr.requests() if r["path"].startswith("/fhir/Patient")]


async def test_a_launched_user_reaches_only_their_own_sessions(
    app: Any, ehr: EhrDouble, jane: dict[str, str], clinician: httpx.AsyncClient
) -> None:
    patient = {"id": "p-9", "name": "Aroha Ngata", "nhi": "ZAC5361", "birthDate": "1984-03-09"}
    theirs = {"patient": patient, "practitionerId": "someone-else"}
    others = await clinician.post("/api/sessions", json={"encounterId": "enc-other", **theirs})
    assert others.status_code == 201, others.text
    async with browser(app) as gp:
        own = (await launch(gp, ehr, **jane)).headers["location"].removeprefix("/sessions/")
        assert (await gp.get(f"/api/sessions/{own}")).status_code == 200
        assert_error(await gp.get(f"/api/sessions/{others.json()['id']}"), 404, "SessionNotFound")
        refused = await gp.post("/api/sessions", json={"encounterId": "enc-x", **theirs})
        assert_error(refused, 403, "PractitionerMismatch", "patient record system")
        opened = await gp.post("/api/sessions", json={"encounterId": "enc-x", "patient": patient})
        assert opened.status_code == 201, opened.text
        assert opened.json()["practitionerId"] == jane["user"].removeprefix("Practitioner/")


async def test_the_ehr_down_at_launch_or_at_callback_opens_nothing(
    app: Any, ehr: EhrDouble, jane: dict[str, str]
) -> None:
    async with browser(app) as gp:
        callback = await authorize(await to_ehr(gp, {"iss": ehr.iss, "launch": ehr.new_launch(**jane)}))
        ehr.stop_answering()
        response = await gp.get(callback)
        await assert_refused(app, response, 502, "ehr-unreachable", "not answering")
        response = await gp.get("/launch", params={"iss": ehr.iss, "launch": "anything"})
        assert response.status_code == 502
        assert 'data-reason="ehr-unreachable"' in response.text


async def test_the_ehr_failing_the_patient_read_opens_nothing(
    app: Any, ehr: EhrDouble, jane: dict[str, str]
) -> None:
    ehr.fail(503, times=5, path_prefix="/fhir/Patient")
    async with browser(app) as gp:
        response = await launch(gp, ehr, **jane)
    await assert_refused(app, response, 502, "ehr-error")


async def test_an_encounter_of_another_patient_opens_nothing(
    app: Any, ehr: EhrDouble, jane: dict[str, str]
) -> None:
    other = ehr.add_patient(family="Ngata", given="Aroha", birth_date="1984-03-09", nhi="ZAC5361")
    async with browser(app) as gp:
        response = await launch(gp, ehr, **{**jane, "encounter": ehr.add_encounter(other)})
    await assert_refused(app, response, 502, "patient-not-found")


async def test_malformed_requests_are_400(app: Any, ehr: EhrDouble) -> None:
    async with browser(app) as gp:
        for path in (
            "/launch",
            "/launch?iss=",
            "/launch?iss=a&iss=b",
            "/launch/callback",
            "/launch/callback?state=x",
        ):
            response = await gp.get(path)
            assert response.status_code == 400, path
            assert 'data-reason="bad-request"' in response.text
    assert ehr.requests() == []


@asynccontextmanager
async def app_for(settings: Settings, **changes: Any) -> AsyncIterator[Any]:
    application = create_app(settings.model_copy(update=changes))
    async with application.router.lifespan_context(application):
        yield application


async def test_without_smart_settings_a_launch_is_404(settings: Settings, ehr: EhrDouble) -> None:
    async with app_for(settings, smart_issuers=(), smart_client_id="") as app, browser(app) as gp:
        response = await gp.get("/launch", params={"iss": ehr.iss, "launch": "x"})
        assert response.status_code == 404
        assert 'data-reason="not-configured"' in response.text


# --- two EHRs, one Practitioner id ----------------------------------------------------------------------


def same_people(double: EhrDouble) -> dict[str, str]:
    """In `double`: Practitioner/7 (Dr Aroha Ngata), patient `p-jane` and her encounter `enc-shared`, with
    the same ids as in any other double (the ids two unrelated EHRs may well share)."""
    double.add_resource({"resourceType": "Practitioner", "id": "7", "name": [{"family": "Ngata"}]})
    double.add_resource(
        {"resourceType": "Patient", "id": "p-jane", "name": [{"family": "Smith", "given": ["Jane"]}]}
    )
    double.add_resource(
        {
            "resourceType": "Encounter",
            "id": "enc-shared",
            "status": "in-progress",
            "class": {"code": "AMB"},
            "subject": {"reference": "Patient/p-jane"},
        }
    )
    return {"patient": "p-jane", "encounter": "enc-shared", "user": "Practitioner/7"}


async def test_the_same_practitioner_id_at_two_ehrs_reaches_only_its_own_ehrs_sessions(
    settings: Settings, ehr: EhrDouble
) -> None:
    """CONSULTCAM_SMART_ISSUERS lists EHRs A and B, and each has a Practitioner/7: two people. B's GP gets
    404 on A's GP's session and its event stream, cannot take over (launch or API) A's open session of an
    encounter whose id B shares, and opens their own sessions; A's GP keeps reaching theirs."""
    with EhrDouble(redirect_uri="http://testserver/launch/callback") as other:
        context = same_people(ehr)
        assert same_people(other) == context
        async with (
            app_for(settings, smart_issuers=(ehr.iss, other.iss)) as app,
            browser(app) as gp_a,
            browser(app) as gp_b,
        ):
            opened = await launch(gp_a, ehr, **context)
            assert opened.status_code == 303, opened.text
            a_session = opened.headers["location"].removeprefix("/sessions/")

            held = await launch(gp_b, other, **context)  # B's launch for the encounter id A holds
            assert held.status_code == 409, held.text
            assert 'data-reason="encounter-held"' in held.text
            assert "set-cookie" not in held.headers
            refused = (await audit(app, "launch.refused"))[-1].detail
            assert (refused["reason"], refused["issuer"]) == ("encounter-held", other.iss)

            b_context = context | {"encounter": other.add_encounter("p-jane")}
            own = await launch(gp_b, other, **b_context)
            assert own.status_code == 303, own.text
            b_session = own.headers["location"].removeprefix("/sessions/")
            assert b_session != a_session
            assert (await gp_b.get(f"/api/sessions/{b_session}")).json()["practitionerId"] == "7"

            assert_error(await gp_b.get(f"/api/sessions/{a_session}"), 404, "SessionNotFound")
            stream = await asyncio.wait_for(gp_b.get(f"/api/sessions/{a_session}/events"), 30)
            assert_error(stream, 404, "SessionNotFound")
            patient = {"id": "p-jane", "name": "Jane Smith"}
            taken = await gp_b.post("/api/sessions", json={"encounterId": "enc-shared", "patient": patient})
            assert_error(taken, 409, "EncounterHeldElsewhere")
            assert_error(await gp_b.delete(f"/api/sessions/{a_session}"), 404, "SessionNotFound")

            assert (await gp_a.get(f"/api/sessions/{a_session}")).status_code == 200
            assert_error(await gp_a.get(f"/api/sessions/{b_session}"), 404, "SessionNotFound")
            again = await gp_a.post("/api/sessions", json={"encounterId": "enc-shared", "patient": patient})
            assert again.status_code == 200, again.text  # A's GP resumes their own
            assert again.json()["id"] == a_session

            by_id = {s.id: s for s in await rows(app, CaptureSession)}
            assert (by_id[a_session].launch_issuer, by_id[b_session].launch_issuer) == (ehr.iss, other.iss)
            assert {(s.practitioner_id, s.launch_issuer) for s in await rows(app, SignInSession)} == {
                ("7", ehr.iss),
                ("7", other.iss),
            }
