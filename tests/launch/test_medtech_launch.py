"""`GET /launch/medtech` (issue 12, "Launch") against the Medtech ALEX test double (its own process, real
HTTP), on SQLite and PostgreSQL: what the GP's browser gets, what the database holds afterwards, what ALEX
was asked, and the audit trail of every refusal."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select

from consultcam.app import create_app
from consultcam.auth.principals import CLINICIAN_COOKIE
from consultcam.config import Settings
from consultcam.launch import medtech
from consultcam.launch.alex_api import AlexLaunchApi
from consultcam.models import AuditEvent, CaptureSession, LaunchContextUse, SignInSession, utcnow
from consultcam.retention.sweeper import sweep
from tests.launch.helpers import assert_refusal_page, audit, browser, count
from tests.medtech.double import AlexDouble

NO_PATIENT_WORDS = "Open a patient in Medtech"


@asynccontextmanager
async def app_for(settings: Settings, **changes: Any) -> AsyncIterator[Any]:
    """An app for `settings` with `changes` (e.g. another EMR URL), its lifespan running."""
    application = create_app(settings.model_copy(update=changes))
    async with application.router.lifespan_context(application):
        yield application


async def sessions(app: Any) -> list[CaptureSession]:
    async with app.state.runtime.sessionmaker() as db:
        return list((await db.execute(select(CaptureSession).order_by(CaptureSession.created_at))).scalars())


def jane(alex: AlexDouble) -> str:
    return alex.add_patient(nhi="ZZZ0016", family="Smith", given="Jane", birth_date="1980-04-02")


async def launch(client: httpx.AsyncClient, query: str) -> httpx.Response:
    return await client.get(f"/launch/medtech?{query}")


async def assert_refused(
    app: Any, response: httpx.Response, status: int, reason: str, *words: str
) -> AuditEvent:
    """The page for a refused launch: its status and words, never cached nor referred, no cookie, and
    nothing made (no session, sign-in or used context); returns the one `launch.refused` audit row."""
    return await assert_refusal_page(app, response, status, reason, words, made=[LaunchContextUse])


# --- accepted ----------------------------------------------------------------------------------------------


async def test_a_launch_signs_the_gp_in_and_opens_the_patient_alex_names(
    app: Any, alex: AlexDouble, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    patient = jane(alex)
    context, signature = alex.launch(patient_id=patient, provider_id="PRV123", facility_code="F2N060-E")
    async with browser(app) as gp:
        response = await gp.get("/launch/medtech", params={"context": context, "signature": signature})
        assert response.status_code == 303, response.text
        location = response.headers["location"]
        assert location.startswith("/sessions/")
        assert "?" not in location
        session_id = location.removeprefix("/sessions/")
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["referrer-policy"] == "no-referrer"
        cookie = response.headers["set-cookie"]
        assert cookie.startswith(f"{CLINICIAN_COOKIE}=")
        assert "HttpOnly" in cookie
        assert "SameSite=lax" in cookie

        # The cookie signs the browser in: the desktop opens, and the session is the patient ALEX names.
        assert (await gp.get(location)).status_code == 200
        shown = await gp.get(f"/api/sessions/{session_id}")
        assert shown.status_code == 200, shown.text
        body = shown.json()
    assert body["patient"] == {
        "id": patient,
        "name": "Jane Smith",
        "nhi": "ZZZ0016",
        "birthDate": "1980-04-02",
    }
    assert (body["practitionerId"], body["facilityId"]) == ("PRV123", "F2N060-E")
    today = utcnow().astimezone(medtech.PRACTICE_TIMEZONE).strftime("%Y%m%d")
    assert body["encounterId"].startswith(f"mt-{today}-")
    assert len(body["encounterId"]) == 32

    async with app.state.runtime.sessionmaker() as db:
        [signin] = (await db.execute(select(SignInSession))).scalars().all()
        [used] = (await db.execute(select(LaunchContextUse))).scalars().all()
    assert (signin.method, signin.subject) == ("medtech", "medtech:F2N060-E:PRV123")
    assert (signin.practitioner_id, signin.facility_id) == ("PRV123", "F2N060-E")
    assert used.context_hash == medtech.context_hash(context, signature)
    assert used.expires_at > utcnow() + timedelta(minutes=5)
    [accepted] = await audit(app, "launch.accepted")
    assert accepted.session_id == session_id
    assert accepted.actor_id == "medtech:F2N060-E:PRV123"
    assert accepted.detail == {
        "resumed": False,
        "facility_id": "F2N060-E",
        "practitioner_id": "PRV123",
    }

    # What ALEX was asked: the decode, then the patient at the launch's facility, each with a bearer token
    # and a correlation id of its own.
    calls = [r for r in alex.requests() if not r["path"].startswith("/oauth2/")]
    assert [c["path"].split("/")[1:4] for c in calls] == [
        ["vendorforms", "api", "getlaunchcontextstring"],
        ["FHIR", "Patient", patient],
    ]
    assert calls[1]["headers"]["mt-facilityid"] == "F2N060-E"
    assert all(c["headers"]["authorization"].startswith("Bearer ") for c in calls)
    correlations = [c["headers"]["mt-correlationid"] for c in calls]
    assert len(set(correlations)) == 2
    assert all(len(c) == 36 for c in correlations)

    # Nothing secret in the server's logs (this test's own client logs the URL it asked for) or the audit
    # trail.
    token = app.state.runtime.medtech_launch._tokens._token  # the cached access token (the double redacts it)
    assert token
    logged = "\n".join(r.getMessage() for r in caplog.records if "http://testserver/" not in r.getMessage())
    trail = str([e.detail for e in await audit(app, "launch.accepted")])
    for secret in (context, signature, token, alex.client_secret):
        assert secret not in logged
        assert secret not in trail


async def test_launching_again_the_same_day_resumes_the_same_session(app: Any, alex: AlexDouble) -> None:
    patient, other = (
        jane(alex),
        alex.add_patient(nhi="ZAC5361", family="Ngata", given="Aroha", birth_date="1984-03-09"),
    )
    async with browser(app) as gp:
        first = await launch(gp, alex.launch_query(patient_id=patient))
        again = await launch(gp, alex.launch_query(patient_id=patient))
        assert first.status_code == again.status_code == 303
        assert first.headers["location"] == again.headers["location"]
        # Another patient, or the same patient with another GP: a session of their own.
        for query in (
            alex.launch_query(patient_id=other),
            alex.launch_query(patient_id=patient, provider_id="PRV999"),
        ):
            response = await launch(gp, query)
            assert response.status_code == 303
            assert response.headers["location"] != first.headers["location"]
    assert len(await sessions(app)) == 3
    [resumed] = await audit(app, "session.resumed")
    assert f"/sessions/{resumed.session_id}" == first.headers["location"]
    assert [e.detail["resumed"] for e in await audit(app, "launch.accepted")] == [False, True, False, False]
    # Each launch is a new sign-in; the browser's previous one ended (never handed on).
    async with app.state.runtime.sessionmaker() as db:
        rows = (await db.execute(select(SignInSession).order_by(SignInSession.created_at))).scalars().all()
    assert [r.end_reason for r in rows] == ["replaced", "replaced", "replaced", None]


async def test_the_next_day_opens_a_new_encounter(app: Any, runtime: Any, alex: AlexDouble) -> None:
    """The clock is injected: the service's `now` is tomorrow, and so is the context ALEX hands out."""
    patient = jane(alex)
    async with browser(app) as gp:
        today = await launch(gp, alex.launch_query(patient_id=patient))
    tomorrow = utcnow() + timedelta(days=1)
    context, signature = alex.launch(patient_id=patient, created=tomorrow)
    checked = await medtech.check(runtime, context, signature, now=tomorrow)
    async with runtime.unit_of_work() as uow:
        accepted = await medtech.accept(uow, runtime, checked, now=tomorrow)
        next_day = accepted.session.id
    assert not accepted.resumed
    assert f"/sessions/{next_day}" != today.headers["location"]
    first, second = await sessions(app)
    day = tomorrow.astimezone(medtech.PRACTICE_TIMEZONE).strftime("%Y%m%d")
    assert second.encounter_id == f"mt-{day}-{first.encounter_id[12:]}" != first.encounter_id


def test_the_encounter_key_is_one_per_patient_gp_facility_and_new_zealand_day() -> None:
    before_midnight = datetime(2026, 12, 3, 10, 59, tzinfo=UTC)  # 23:59 NZDT on 3 December
    key = medtech.encounter_key("F2N060-E", "PRV123", "pat-1", before_midnight)
    assert key.startswith("mt-20261203-")
    assert len(key) == 32
    assert key == medtech.encounter_key("F2N060-E", "PRV123", "pat-1", before_midnight - timedelta(hours=10))
    assert medtech.encounter_key(
        "F2N060-E", "PRV123", "pat-1", before_midnight + timedelta(minutes=2)
    ).startswith("mt-20261204-")
    others = {
        medtech.encounter_key("F2N060-E", "PRV123", "pat-2", before_midnight),
        medtech.encounter_key("F2N060-E", "PRV124", "pat-1", before_midnight),
        medtech.encounter_key("F2N061-E", "PRV123", "pat-1", before_midnight),
    }
    assert len(others) == 3
    assert key not in others


# --- refused -----------------------------------------------------------------------------------------------


async def test_a_context_older_than_five_minutes_is_refused(app: Any, alex: AlexDouble) -> None:
    query = alex.launch_query(patient_id=jane(alex), created=datetime.now(UTC) - timedelta(minutes=6))
    async with browser(app) as gp:
        response = await launch(gp, query)
    refused = await assert_refused(app, response, 403, "expired", "This consultcam link has expired")
    assert refused.detail["facility_id"] == "F2N060-E"


async def test_a_context_from_the_future_is_refused_beyond_two_minutes_of_clock_skew(
    app: Any, alex: AlexDouble
) -> None:
    patient = jane(alex)
    async with browser(app) as gp:
        response = await launch(
            gp, alex.launch_query(patient_id=patient, created=datetime.now(UTC) + timedelta(minutes=3))
        )
        await assert_refused(app, response, 403, "future", "clock")
        # Within the allowed skew it is accepted.
        skewed = await launch(
            gp, alex.launch_query(patient_id=patient, created=datetime.now(UTC) + timedelta(seconds=90))
        )
        assert skewed.status_code == 303


async def test_the_same_launch_url_twice_is_refused_and_makes_nothing_more(
    app: Any, alex: AlexDouble
) -> None:
    query = alex.launch_query(patient_id=jane(alex))
    async with browser(app) as gp, browser(app) as other:
        assert (await launch(gp, query)).status_code == 303
        for client in (gp, other):  # the same browser reloading, or the URL copied elsewhere
            again = await launch(client, query)
            assert again.status_code == 403
            assert 'data-reason="replayed"' in again.text
            assert "already been used" in again.text
            assert "set-cookie" not in again.headers
    assert alex.decode_count() == 1  # the cheap look-up refused it before ALEX was asked
    assert await count(app, CaptureSession) == await count(app, SignInSession) == 1
    assert await count(app, LaunchContextUse) == 1
    assert [e.detail["reason"] for e in await audit(app, "launch.refused")] == ["replayed", "replayed"]


async def test_two_launches_of_one_url_at_once_open_one_session(app: Any, alex: AlexDouble) -> None:
    """Both pass the look-up; the used context's primary key lets one transaction through."""
    query = alex.launch_query(patient_id=jane(alex))
    async with browser(app) as gp, browser(app) as other:
        responses = await asyncio.gather(launch(gp, query), launch(other, query))
    assert sorted(r.status_code for r in responses) == [303, 403]
    assert await count(app, CaptureSession) == await count(app, SignInSession) == 1
    assert await count(app, LaunchContextUse) == 1


async def test_a_bad_signature_is_refused(app: Any, alex: AlexDouble) -> None:
    context, signature = alex.launch(patient_id=jane(alex))
    forged = ("A" if signature[0] != "A" else "B") + signature[1:]
    async with browser(app) as gp:
        response = await gp.get("/launch/medtech", params={"context": context, "signature": forged})
    refused = await assert_refused(app, response, 403, "bad-signature", "Medtech could not confirm this link")
    assert "facility_id" not in refused.detail
    assert context not in str(refused.detail)
    assert forged not in str(refused.detail)


@pytest.mark.parametrize(
    "query",
    [
        "",
        "context=abc",
        "signature=abc",
        "context=&signature=abc",
        "context=a&context=b&signature=c",
        "context=" + "a" * 5000 + "&signature=abc",
        "context=ab%0Acd&signature=abc",
    ],
    ids=["none", "no-signature", "no-context", "empty", "repeated", "too-long", "control-character"],
)
async def test_missing_or_malformed_parameters_are_a_bad_request(
    app: Any, alex: AlexDouble, query: str
) -> None:
    async with browser(app) as gp:
        response = await launch(gp, query)
    await assert_refused(app, response, 400, "bad-request", "not a complete Medtech link")
    assert alex.decode_count() == 0


async def test_no_patient_open_asks_the_gp_to_open_one(app: Any, alex: AlexDouble) -> None:
    async with browser(app) as gp:
        response = await launch(gp, alex.launch_query(patient_id=None))
    await assert_refused(app, response, 200, "no-patient", NO_PATIENT_WORDS, "click the consultcam icon")
    assert not [r for r in alex.requests() if r["path"].startswith("/FHIR/")]


async def test_alex_down_is_a_bad_gateway_and_makes_nothing(app: Any, alex: AlexDouble) -> None:
    query = alex.launch_query(patient_id=jane(alex))
    alex.stop_answering()
    async with browser(app) as gp:
        response = await launch(gp, query)
    await assert_refused(app, response, 502, "alex-unreachable", "Medtech ALEX is not answering")


async def test_alex_refusing_our_credentials_is_a_bad_gateway(settings: Settings, alex: AlexDouble) -> None:
    query = alex.launch_query(patient_id=jane(alex))
    async with app_for(settings, alex_client_secret=SecretStr("not-the-secret")) as app, browser(app) as gp:
        response = await launch(gp, query)
        await assert_refused(app, response, 502, "alex-credentials", "Medtech ALEX refused consultcam")
    assert alex.decode_count() == 0


async def test_a_patient_alex_does_not_know_or_an_alex_failure_is_a_bad_gateway(
    app: Any, alex: AlexDouble
) -> None:
    async with browser(app) as gp:
        response = await launch(gp, alex.launch_query(patient_id="no-such-patient"))
        await assert_refused(app, response, 502, "patient-not-found", "cannot find this patient")
        alex.fail(status=503, times=5, method="GET", path_prefix="/FHIR/Patient")
        failing = await launch(gp, alex.launch_query(patient_id=jane(alex)))
    assert failing.status_code == 502
    assert 'data-reason="alex-error"' in failing.text
    assert await count(app, CaptureSession) == await count(app, LaunchContextUse) == 0


async def test_the_runtime_has_alex_for_launches_and_closes_it_at_shutdown(
    settings: Settings, alex: AlexDouble
) -> None:
    async with app_for(settings) as app:
        api = app.state.runtime.medtech_launch
        assert isinstance(api, AlexLaunchApi)
        assert (api.root, api.fhir_base) == (alex.root, alex.fhir_url)
        assert alex.client_secret not in repr(api)
    assert api._client.is_closed
    async with app_for(settings, alex_launch_url="https://alexapiuat.medtechglobal.com") as app:
        assert app.state.runtime.medtech_launch.root == "https://alexapiuat.medtechglobal.com"


async def test_a_server_without_medtech_alex_says_so(settings: Settings, alex: AlexDouble) -> None:
    query = alex.launch_query(patient_id=jane(alex))
    async with app_for(settings, emr_url="export://") as app, browser(app) as gp:
        assert app.state.runtime.medtech_launch is None
        response = await launch(gp, query)
        await assert_refused(app, response, 404, "not-configured", "not connected to Medtech")
    assert alex.requests() == []


async def test_launch_attempts_are_rate_limited_per_client(app: Any, alex: AlexDouble) -> None:
    async with browser(app) as gp:
        statuses = [(await launch(gp, "context=x")).status_code for _ in range(11)]
        assert statuses == [400] * 10 + [429]
        over = await launch(gp, alex.launch_query(patient_id=jane(alex)))
    assert over.status_code == 429
    assert int(over.headers["retry-after"]) >= 1
    assert "Too many launches" in over.text
    assert alex.decode_count() == 0


# --- the sweep ---------------------------------------------------------------------------------------------


async def test_the_sweeper_deletes_used_contexts_once_they_would_be_expired_anyway(
    app: Any, runtime: Any, alex: AlexDouble
) -> None:
    query = alex.launch_query(patient_id=jane(alex))
    async with browser(app) as gp:
        assert (await launch(gp, query)).status_code == 303
    report = await sweep(runtime.unit_of_work, runtime)
    assert report.expired_launch_contexts == 0
    assert not report.errors
    assert await count(app, LaunchContextUse) == 1
    report = await sweep(runtime.unit_of_work, runtime, utcnow() + timedelta(minutes=8))
    assert report.expired_launch_contexts == 1
    assert await count(app, LaunchContextUse) == 0
    # By then the URL is refused as expired, not accepted again.
    parsed = {k: v[0] for k, v in parse_qs(query).items()}
    with pytest.raises(medtech.LaunchRefused) as refused:
        await medtech.check(
            runtime, parsed["context"], parsed["signature"], now=utcnow() + timedelta(minutes=8)
        )
    assert refused.value.reason == "expired"


# --- how ALEX is asked ------------------------------------------------------------------------------------


async def test_a_token_alex_refuses_once_is_fetched_again_and_the_launch_goes_through(
    app: Any, alex: AlexDouble
) -> None:
    patient = jane(alex)
    async with browser(app) as gp:
        alex.fail(status=401, times=1, method="GET", path_prefix="/vendorforms/")
        assert (await launch(gp, alex.launch_query(patient_id=patient))).status_code == 303
        tokens = [r for r in alex.requests() if r["path"].startswith("/oauth2/")]
        assert len(tokens) == 2  # the refused token was replaced once
        # Refused again with the new token: ALEX does not accept our credentials.
        alex.fail(status=401, times=2, method="GET", path_prefix="/vendorforms/")
        refused = await launch(gp, alex.launch_query(patient_id=patient))
    assert refused.status_code == 502
    assert 'data-reason="alex-credentials"' in refused.text


async def test_a_retried_request_carries_a_correlation_id_of_its_own(app: Any, alex: AlexDouble) -> None:
    patient = jane(alex)
    alex.fail(status=503, times=1, method="GET", path_prefix="/FHIR/Patient")
    async with browser(app) as gp:
        assert (await launch(gp, alex.launch_query(patient_id=patient))).status_code == 303
    reads = [r for r in alex.requests() if r["path"].startswith("/FHIR/Patient/")]
    assert len(reads) == 2
    assert reads[0]["headers"]["mt-correlationid"] != reads[1]["headers"]["mt-correlationid"]
    assert {r["headers"]["mt-facilityid"] for r in reads} == {"F2N060-E"}
