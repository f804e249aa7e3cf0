"""Issue 12: a Medtech launch signs the GP in "with a session cookie bound to that provider and facility"
(DESIGN.md, "Launch and sign-in"). What the bound GP would notice, over the real app:

- their own capture sessions work as usual, every call and their live updates;
- another provider's session, or one at another facility, answers 404 `SessionNotFound` on every route under
  `/api/sessions/{session_id}` (walked from the app's own route table, so a new endpoint is covered the day
  it is added), with the very body a phone gets for another session: nothing says it exists;
- their event stream is refused for another session, and an open one is re-checked before every batch;
- `POST /api/sessions` files under their provider and facility, refuses to name others (403), and never
  takes over another provider's open session of the same encounter (409);
- the cookie still needs the page's CSRF token;
- clinicians signed in otherwise (the embedded token here) still reach every session;
- a SMART sign-in is bound to (EHR, Practitioner): the same Practitioner id at another EHR of
  CONSULTCAM_SMART_ISSUERS reaches nothing of it, and a SMART sign-in that names no EHR does not count.

The bound sign-in is made as the launch makes it (`consultcam.auth.signin.start`, method "medtech"), without
the launch endpoint. Settings name an ALEX server (`alex+http://127.0.0.1:9/FHIR` and its four client
settings) so that Medtech sign-ins count; nothing here calls ALEX (the app contacts it only to commit and
for /readyz), so nothing listens there.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from sqlalchemy import select, update

from consultcam import deps
from consultcam.auth import signin
from consultcam.auth.principals import CLINICIAN_COOKIE, Clinician
from consultcam.models import AuditEvent, CaptureSession
from tests.conftest import (
    CLINICIAN_TOKEN,
    CONSENT,
    PATIENT,
    CsrfToken,
    assert_error,
    jpeg_bytes,
    next_event,
    pair_phone,
    record_consent,
    serving,
    start_session,
    upload,
)

ALEX = {
    "emr_url": "alex+http://127.0.0.1:9/FHIR",
    "alex_token_url": "http://127.0.0.1:9/oauth2/v2.0/token",
    "alex_client_id": "consultcam-test-client",
    "alex_client_secret": "test-client-secret",
    "alex_scope": "api://alex-test/.default",
}
GP = Clinician(id="medtech:F1:PRV1", practitioner_id="PRV1", facility_id="F1")
OTHER_PATIENT = {"id": "pat-b", "name": "Bea Other", "nhi": "ZZZ0024"}
SESSION_PATH = "/api/sessions/{session_id}"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return dict(ALEX)


async def bound_cookie(app: Any, clinician: Clinician = GP) -> str:
    """A Medtech sign-in for `clinician`, made as the launch makes it; returns the cookie's value."""
    rt = app.state.runtime
    async with rt.unit_of_work() as uow:
        cookie, _ = await signin.start(uow, rt.settings, clinician, "medtech", user_agent="test")
    return cookie


def cookie_client(app_or_origin: Any, cookie: str, *, csrf: bool = True) -> httpx.AsyncClient:
    """A browser with the sign-in cookie: in-process (an app) or over HTTP (an origin); `csrf` keeps and
    sends back the page's CSRF token as api.js does."""
    if isinstance(app_or_origin, str):
        kwargs: dict[str, Any] = {"base_url": app_or_origin, "timeout": httpx.Timeout(10.0, read=30.0)}
    else:
        kwargs = {"transport": httpx.ASGITransport(app=app_or_origin), "base_url": "http://testserver"}
    client = httpx.AsyncClient(**kwargs, event_hooks=CsrfToken().hooks() if csrf else {})
    client.cookies.set(CLINICIAN_COOKIE, cookie)
    return client


@pytest.fixture
async def gp(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The GP's browser after a Medtech launch (F1, PRV1), holding the page's CSRF token."""
    async with cookie_client(app, await bound_cookie(app)) as client:
        assert (await client.get("/healthz")).headers["x-csrf-token"]
        yield client


async def with_photo(client: httpx.AsyncClient, session: dict[str, Any]) -> str:
    registered = await upload(client, session["id"], jpeg_bytes("cat.jpg"))
    assert registered.status_code == 201, registered.text
    return str(registered.json()["id"])


@pytest.fixture
async def sessions(clinician: httpx.AsyncClient, gp: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    """The GP's own session and three out of their reach, each with consent and one photo (its id as
    `imageId`): another provider's at F1, the GP's provider id at another facility, and one opened with no
    provider or facility (embedded mode)."""
    own = await start_session(gp, "enc-own")
    made = {
        "own": own,
        "other-provider": await start_session(
            clinician, "enc-prv2", patient=OTHER_PATIENT, practitionerId="PRV2", facilityId="F1"
        ),
        "other-facility": await start_session(
            clinician, "enc-f2", patient=OTHER_PATIENT, practitionerId="PRV1", facilityId="F2"
        ),
        "unbound": await start_session(clinician, "enc-none", patient=OTHER_PATIENT),
    }
    for name, session in made.items():
        session["imageId"] = await with_photo(gp if name == "own" else clinician, session)
    return made


def api_routes(routes: Any, prefix: str = "") -> list[tuple[str, APIRoute]]:
    """(full path, route) of every FastAPI route among `routes`, looking into included routers (FastAPI
    0.165 keeps them as `_IncludedRouter`s with their `original_router`)."""
    found: list[tuple[str, APIRoute]] = []
    for route in routes:
        if isinstance(route, APIRoute):
            found.append((prefix + route.path, route))
        elif hasattr(route, "original_router"):
            found += api_routes(route.original_router.routes, prefix + route.include_context.prefix)
    return found


def session_routes(app: Any) -> list[tuple[str, str]]:
    """(method, path template) of every API route under /api/sessions/{session_id}, from the app itself."""
    found = []
    for path, route in api_routes(app.routes):
        if path.startswith(SESSION_PATH):
            found += [(method, path) for method in sorted(route.methods - {"HEAD"})]
    return found


def fill(path: str, session: dict[str, Any]) -> str:
    """The route's path for `session` (its photo for {image_id}); a new kind of path parameter fails here,
    asking for a value, rather than the walk quietly skipping its route."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        known = {"session_id": session["id"], "image_id": session.get("imageId", "no-such-image")}
        assert name in known, f"{path}: give the walk a value for {{{name}}}"
        return str(known[name])

    return re.sub(r"\{(\w+)(?::[^}]*)?\}", value, path)


async def call(client: httpx.AsyncClient, method: str, path: str) -> httpx.Response:
    """One call with a body of the right type where the method takes one (`{}`: the answer must come from
    authorisation, before the body is even looked at)."""
    return await client.request(method, path, json={} if method in ("POST", "PUT", "PATCH") else None)


# -- every route, automatically --------------------------------------------------------------------------


def test_every_session_route_takes_a_session_scoped_dependency(app: Any) -> None:
    """Each route under /api/sessions/{session_id} authorises its caller for that session through
    `consultcam.deps` (one of `SESSION_AUTHORISERS`); a bare `ClinicianDep` or `PrincipalDep` would let a
    bound sign-in reach any session."""

    def calls(dependant: Any) -> set[Any]:
        found = {sub.call for sub in dependant.dependencies}
        for sub in dependant.dependencies:
            found |= calls(sub)
        return found

    routes = [(path, r) for path, r in api_routes(app.routes) if path.startswith(SESSION_PATH)]
    unguarded = [path for path, r in routes if not calls(r.dependant) & set(deps.SESSION_AUTHORISERS)]
    assert not unguarded, f"routes without a session-scoped dependency: {unguarded}"
    # The walk sees every route the API document lists, and those DESIGN.md lists: it is not walking an
    # empty or partial table.
    walked = set(session_routes(app))
    documented = {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        if path.startswith(SESSION_PATH)
        for method in operations
    }
    assert documented <= walked
    assert {
        ("GET", SESSION_PATH),
        ("DELETE", SESSION_PATH),
        ("POST", SESSION_PATH + "/pairing"),
        ("DELETE", SESSION_PATH + "/phone"),
        ("PUT", SESSION_PATH + "/consent"),
        ("POST", SESSION_PATH + "/uploads"),
        ("POST", SESSION_PATH + "/images"),
        ("GET", SESSION_PATH + "/images"),
        ("GET", SESSION_PATH + "/images/{image_id}"),
        ("PATCH", SESSION_PATH + "/images/{image_id}"),
        ("DELETE", SESSION_PATH + "/images/{image_id}"),
        ("GET", SESSION_PATH + "/images/{image_id}/download"),
        ("GET", SESSION_PATH + "/download"),
        ("POST", SESSION_PATH + "/commit"),
        ("GET", SESSION_PATH + "/events"),
    } <= walked


@pytest.mark.parametrize("target", ["other-provider", "other-facility", "unbound", "missing"])
async def test_a_bound_gp_gets_404_on_every_route_of_a_session_not_theirs(
    app: Any,
    gp: httpx.AsyncClient,
    clinician: httpx.AsyncClient,
    new_client: Any,
    sessions: dict[str, dict[str, Any]],
    target: str,
) -> None:
    session = sessions.get(target) or {"id": "00000000-0000-0000-0000-000000000000"}
    before = (await clinician.get(f"/api/sessions/{session['id']}")).json()
    # What a phone paired with the GP's own session gets for this session: the answer to match.
    phone = await pair_phone(new_client, sessions["own"])
    expected = assert_error(await phone.get(f"/api/sessions/{session['id']}"), 404, "SessionNotFound")
    for method, template in session_routes(app):
        response = await call(gp, method, fill(template, session))
        body = assert_error(response, 404, "SessionNotFound")
        assert body == expected, (method, template)
        assert "Bea Other" not in response.text
        assert "pat-b" not in response.text
    if target != "missing":  # nothing happened to it: open, same photo, same consent, its phone page works
        after = (await clinician.get(f"/api/sessions/{session['id']}")).json()
        assert after["status"] == "open"
        assert [i["id"] for i in after["images"]] == [session["imageId"]]
        assert after["consent"] == before["consent"]
        assert [a for a, who in await audit_by(app, session["id"]) if who == GP.id] == []  # did nothing


async def test_the_bound_gp_reaches_every_route_of_their_own_session(
    app: Any, gp: httpx.AsyncClient, sessions: dict[str, dict[str, Any]]
) -> None:
    own = sessions["own"]
    assert (own["practitionerId"], own["facilityId"]) == ("PRV1", "F1")  # filed under the launch's GP
    answers: dict[tuple[str, str], int] = {}
    routes = [r for r in session_routes(app) if not r[1].endswith("/events")]  # the stream: below, over HTTP
    # Deleting the photo, then the session, last: every other call needs them.
    routes.sort(
        key=lambda r: 2 if r == ("DELETE", SESSION_PATH) else int(r[0] == "DELETE" and "{image_id}" in r[1])
    )
    for method, template in routes:
        response = await call(gp, method, fill(template, own))
        assert response.status_code != 404 or response.json()["error"] != "SessionNotFound", (
            method,
            template,
            response.text,
        )
        answers[(method, template)] = response.status_code
    assert answers[("GET", SESSION_PATH)] == 200
    assert answers[("GET", SESSION_PATH + "/images")] == 200
    assert answers[("GET", SESSION_PATH + "/images/{image_id}")] == 200
    assert answers[("PATCH", SESSION_PATH + "/images/{image_id}")] == 200
    assert answers[("GET", SESSION_PATH + "/images/{image_id}/download")] == 200
    assert answers[("GET", SESSION_PATH + "/download")] == 200
    assert answers[("POST", SESSION_PATH + "/pairing")] == 201
    assert answers[("DELETE", SESSION_PATH + "/images/{image_id}")] == 204
    assert answers[("DELETE", SESSION_PATH)] == 204


async def test_a_gp_bound_elsewhere_reaches_only_that_facilitys_session(
    app: Any, sessions: dict[str, dict[str, Any]]
) -> None:
    """The same provider id launched at F2 reaches the F2 session and not the F1 one."""
    f2 = Clinician(id="medtech:F2:PRV1", practitioner_id="PRV1", facility_id="F2")
    async with cookie_client(app, await bound_cookie(app, f2)) as browser:
        assert (await browser.get(f"/api/sessions/{sessions['other-facility']['id']}")).status_code == 200
        assert_error(await browser.get(f"/api/sessions/{sessions['own']['id']}"), 404, "SessionNotFound")


async def test_clinicians_not_bound_still_reach_every_session(
    clinician: httpx.AsyncClient, sessions: dict[str, dict[str, Any]]
) -> None:
    for session in sessions.values():
        response = await clinician.get(f"/api/sessions/{session['id']}")
        assert response.status_code == 200, response.text
        download = await clinician.get(f"/api/sessions/{session['id']}/images/{session['imageId']}/download")
        assert download.status_code == 200
    # ... and resume the GP's open session of an encounter, as before.
    resumed = await clinician.post("/api/sessions", json={"encounterId": "enc-own", "patient": PATIENT})
    assert resumed.status_code == 200
    assert resumed.json()["id"] == sessions["own"]["id"]


async def test_the_desktop_page_of_another_session_shows_nothing_of_it(
    gp: httpx.AsyncClient, sessions: dict[str, dict[str, Any]]
) -> None:
    """The page carries no patient data (its script fetches it through the API, which answers 404)."""
    other = sessions["other-provider"]
    page = await gp.get(f"/sessions/{other['id']}")
    missing = await gp.get("/sessions/00000000-0000-0000-0000-000000000000")
    assert page.status_code == missing.status_code == 200
    for secret in ("Bea Other", "pat-b", "ZZZ0024", "PRV2", other["imageId"]):
        assert secret not in page.text


# -- opening a session ---------------------------------------------------------------------------------


async def test_a_bound_gp_opens_sessions_under_their_provider_and_facility(
    app: Any, gp: httpx.AsyncClient
) -> None:
    body = {"encounterId": "enc-new", "patient": PATIENT}
    made = await gp.post("/api/sessions", json=body)
    assert made.status_code == 201, made.text
    assert (made.json()["practitionerId"], made.json()["facilityId"]) == ("PRV1", "F1")
    same = await gp.post("/api/sessions", json={**body, "practitionerId": "PRV1", "facilityId": "F1"})
    assert same.status_code == 200  # resumed, as before
    assert same.json()["id"] == made.json()["id"]
    for field, value, error in (
        ("facilityId", "F2", "FacilityMismatch"),
        ("practitionerId", "PRV2", "PractitionerMismatch"),
    ):
        refused = await gp.post("/api/sessions", json={**body, "encounterId": "enc-forced", field: value})
        assert_error(refused, 403, error, value)
    assert await session_ids(app, "enc-forced") == []


async def test_a_bound_gp_cannot_take_over_another_providers_open_session_of_the_encounter(
    app: Any, gp: httpx.AsyncClient, clinician: httpx.AsyncClient
) -> None:
    held = await start_session(clinician, "enc-held", practitionerId="PRV2", facilityId="F1")
    before = await clinician.get(f"/api/sessions/{held['id']}")
    for patient in (PATIENT, OTHER_PATIENT):  # the same patient or not: the answer says nothing of it
        refused = await gp.post("/api/sessions", json={"encounterId": "enc-held", "patient": patient})
        body = assert_error(refused, 409, "EncounterHeldElsewhere")
        assert held["id"] not in refused.text
        assert "Mere Tester" not in refused.text
        assert "pairing" not in body
    assert await session_ids(app, "enc-held") == [held["id"]]
    assert "session.resumed" not in [a for a, who in await audit_by(app, held["id"]) if who == GP.id]
    after = await clinician.get(f"/api/sessions/{held['id']}")
    assert after.json()["expiresAt"] == before.json()["expiresAt"]  # not even touched


# -- SMART: bound to (EHR, Practitioner) ------------------------------------------------------------------

#: Two EHRs in CONSULTCAM_SMART_ISSUERS (nothing listens: nothing here launches), each with a Practitioner/7.
EHR_A, EHR_B = "http://127.0.0.1:9/ehr-a/fhir", "http://127.0.0.1:9/ehr-b/fhir"
SMART = {"smart_issuers": (EHR_A, EHR_B), "smart_client_id": "consultcam-test"}
SMART_A = Clinician(id="smart:127.0.0.1:9:Practitioner/7", practitioner_id="7", launch_issuer=EHR_A)
SMART_B = Clinician(id="smart:127.0.0.1:9:Practitioner/7", practitioner_id="7", launch_issuer=EHR_B)
MEDTECH_7 = Clinician(id="medtech:F1:7", practitioner_id="7", facility_id="F1")


async def smart_cookie(app: Any, clinician: Clinician) -> str:
    """A sign-in for `clinician` made as a SMART launch makes it (method "smart"); returns the cookie's
    value."""
    rt = app.state.runtime
    async with rt.unit_of_work() as uow:
        cookie, _ = await signin.start(uow, rt.settings, clinician, "smart", user_agent="test")
    return cookie


@pytest.mark.parametrize("settings_overrides", [ALEX | SMART])
async def test_the_same_practitioner_id_at_another_smart_ehr_reaches_nothing_of_the_session(
    app: Any, clinician: httpx.AsyncClient
) -> None:
    """EHR B's Practitioner/7 gets, on every route of EHR A's Practitioner/7's session, the very 404 of a
    session that does not exist, cannot take its encounter over (409), and has sessions of their own that
    A's GP cannot reach; A's GP, and the embedded clinician, reach A's session as before."""
    async with (
        cookie_client(app, await smart_cookie(app, SMART_A)) as gp_a,
        cookie_client(app, await smart_cookie(app, SMART_B)) as gp_b,
        cookie_client(app, await bound_cookie(app, MEDTECH_7)) as medtech_7,
    ):
        for browser in (gp_a, gp_b):
            assert (await browser.get("/healthz")).headers["x-csrf-token"]
        own = await start_session(gp_a, "enc-a")
        assert (own["practitionerId"], own["facilityId"]) == ("7", None)
        own["imageId"] = await with_photo(gp_a, own)
        missing = assert_error(await gp_b.get("/api/sessions/00000000-0000-0000-0000-000000000000"), 404)
        for method, template in session_routes(app):
            response = await asyncio.wait_for(call(gp_b, method, fill(template, own)), 30)
            assert assert_error(response, 404, "SessionNotFound") == missing, (method, template)
            assert "Mere Tester" not in response.text
        assert_error(await medtech_7.get(f"/api/sessions/{own['id']}"), 404, "SessionNotFound")
        for patient in (PATIENT, OTHER_PATIENT):
            taken = await gp_b.post("/api/sessions", json={"encounterId": "enc-a", "patient": patient})
            assert_error(taken, 409, "EncounterHeldElsewhere")
        theirs = await start_session(gp_b, "enc-b", patient=OTHER_PATIENT)
        assert_error(await gp_a.get(f"/api/sessions/{theirs['id']}"), 404, "SessionNotFound")

        after = (await gp_a.get(f"/api/sessions/{own['id']}")).json()
        assert after["status"] == "open"
        assert [i["id"] for i in after["images"]] == [own["imageId"]]
        resumed = await gp_a.post("/api/sessions", json={"encounterId": "enc-a", "patient": PATIENT})
        assert resumed.status_code == 200, resumed.text
        for session in (own, theirs):
            assert (await clinician.get(f"/api/sessions/{session['id']}")).status_code == 200
        async with app.state.runtime.sessionmaker() as db:
            stamped = dict((await db.execute(select(CaptureSession.id, CaptureSession.launch_issuer))).all())
        assert (stamped[own["id"]], stamped[theirs["id"]]) == (EHR_A, EHR_B)


@pytest.mark.parametrize("settings_overrides", [ALEX | SMART])
async def test_a_smart_sign_in_without_its_ehr_no_longer_counts(
    app: Any, clinician: httpx.AsyncClient
) -> None:
    """A SMART sign-in made before migration 0008 has no issuer (bound to a Practitioner of no one EHR): its
    cookie is refused like none, on any session; a sign-in that names its EHR works."""
    held = await start_session(clinician, "enc-held")
    async with cookie_client(app, await smart_cookie(app, SMART_A), csrf=False) as gp:
        assert (await gp.get(f"/api/sessions/{held['id']}")).status_code == 404  # signed in, not theirs
    old = Clinician(id="smart:127.0.0.1:9:Practitioner/7", practitioner_id="7")
    cookie = await smart_cookie(app, old)
    async with cookie_client(app, cookie, csrf=False) as stale:
        assert_error(await stale.get(f"/api/sessions/{held['id']}"), 401)
        assert_error(await stale.get("/api/sessions/00000000-0000-0000-0000-000000000000"), 401)


# -- CSRF still applies to the bound cookie --------------------------------------------------------------


async def test_the_bound_cookie_still_needs_the_pages_csrf_token(app: Any, gp: httpx.AsyncClient) -> None:
    own = await start_session(gp, "enc-csrf")
    token = gp.headers.get("x-csrf-token") or (await gp.get("/healthz")).headers["x-csrf-token"]
    cookie = gp.cookies[CLINICIAN_COOKIE]
    async with cookie_client(app, cookie, csrf=False) as bare:
        body = {"encounterId": "enc-csrf-2", "patient": PATIENT}
        assert_error(await bare.post("/api/sessions", json=body), 403, "CsrfTokenMissing")
        assert_error(
            await bare.post("/api/sessions", json=body, headers={"X-CSRF-Token": "0" * 43}),
            403,
            "CsrfTokenInvalid",
        )
        assert_error(
            await bare.post(
                "/api/sessions", json=body, headers={"X-CSRF-Token": token, "Origin": "http://evil.example"}
            ),
            403,
            "CrossOriginRequest",
        )
        assert_error(await bare.delete(f"/api/sessions/{own['id']}"), 403, "CsrfTokenMissing")
        assert (await bare.get(f"/api/sessions/{own['id']}")).json()["status"] == "open"
        made = await bare.post("/api/sessions", json=body, headers={"X-CSRF-Token": token})
        assert made.status_code == 201, made.text


# -- the event stream, over real HTTP --------------------------------------------------------------------


@contextlib.asynccontextmanager
async def stream_of(client: httpx.AsyncClient, session_id: str) -> AsyncIterator[Any]:
    """An open event stream: yields (its response, an iterator of its lines for `next_event`)."""
    async with client.stream("GET", f"/api/sessions/{session_id}/events") as response:
        yield response, response.aiter_lines()


async def next_consent(lines: AsyncIterator[str], scope: str) -> dict[str, Any]:
    """The next `consent.recorded` event with this scope (the stream first replays the session's history)."""
    while True:
        event = await next_event(lines, "consent.recorded")
        if event["data"]["data"]["consent"]["scope"] == scope:
            return event


async def within(awaitable: Any, seconds: float = 10) -> Any:
    return await asyncio.wait_for(awaitable, seconds)


async def test_a_bound_stream_opens_only_for_the_gps_sessions_and_is_rechecked_per_batch(
    app: Any, sessions: dict[str, dict[str, Any]]
) -> None:
    own, other = sessions["own"]["id"], sessions["other-provider"]["id"]
    cookie = await bound_cookie(app)
    async with (
        serving(app) as origin,
        cookie_client(origin, cookie) as gp,
        httpx.AsyncClient(base_url=origin, headers={"authorization": f"Bearer {CLINICIAN_TOKEN}"}) as desk,
    ):
        refused = await gp.get(f"/api/sessions/{other}/events", timeout=5)  # an open stream: ReadTimeout
        assert_error(refused, 404, "SessionNotFound")
        async with stream_of(gp, own) as (response, lines):
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            # Batch after batch, each re-authorised with the bound cookie, the stream keeps delivering.
            for scope in ("teaching", "publication"):
                assert (await record_consent(desk, own, {**CONSENT, "scope": scope})).status_code == 200
                event = await within(next_consent(lines, scope))
                assert event["data"]["data"]["consent"]["scope"] == scope
            # Were the session no longer the GP's, the next batch is not sent: the stream ends.
            await move_session(app, own, practitioner_id="PRV9")
            assert (await record_consent(desk, own, {**CONSENT, "givenBy": "guardian"})).status_code == 200
            ended = await within(next_event(lines, "stream.end"))
            assert ended["data"]["reason"] == "credential-revoked"
        assert_error(await gp.get(f"/api/sessions/{own}/events", timeout=5), 404, "SessionNotFound")


# -- helpers reading the database ------------------------------------------------------------------------


async def session_ids(app: Any, encounter: str) -> list[str]:
    async with app.state.runtime.sessionmaker() as db:
        query = select(CaptureSession.id).where(CaptureSession.encounter_id == encounter)
        return list((await db.execute(query)).scalars())


async def audit(app: Any) -> list[AuditEvent]:
    async with app.state.runtime.sessionmaker() as db:
        return list((await db.execute(select(AuditEvent))).scalars())


async def audit_by(app: Any, session_id: str) -> list[tuple[str, str | None]]:
    """(action, actor) of the audit events about `session_id`."""
    return [(e.action, e.actor_id) for e in await audit(app) if e.session_id == session_id]


async def move_session(app: Any, session_id: str, **ids: str) -> None:
    async with app.state.runtime.sessionmaker() as db:
        await db.execute(update(CaptureSession).where(CaptureSession.id == session_id).values(**ids))
        await db.commit()
