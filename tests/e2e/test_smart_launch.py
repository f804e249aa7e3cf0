"""Issue 13 in real Chromium: SMART App Launch 2.x from a FHIR EHR, and the photos back into that EHR.

The EHR test double (tests/smart/, its own process speaking SMART App Launch 2.x, OAuth 2.0 with PKCE and
FHIR R4 over real HTTP) plays the EHR: it opens `/launch?iss=…&launch=…` in the GP's browser, authorizes
without asking anyone, answers the token request with the patient, encounter and an id_token naming the
user, serves Patient and Encounter, and validates every write with fhir.resources (422 otherwise) against
the token's scopes and patient (403 otherwise). A real `consultcam serve` is configured only with the
double's `ehr.env()` (CONSULTCAM_SMART_ISSUERS, _CLIENT_ID, _CLIENT_SECRET) and its PUBLIC_URL.

- EHR launch: the desktop lands on `/sessions/{id}` for the EHR's patient; a phone pairs by the QR link and
  sends a camera photo; the GP commits; one Media lands in the EHR for that patient and encounter, written
  with the launch's access token (Bearer).
- Standalone launch (`/launch?iss=…`): the desktop opens for the patient the EHR selected.
- A FHIR server not in CONSULTCAM_SMART_ISSUERS is refused without being contacted.
- A denied authorization shows its page and opens nothing.
- An expired token at commit (no refresh token): the page asks the GP to launch again, nothing is lost,
  and the commit after the new launch lands in the EHR.

Screenshots (test-artifacts/screenshots/): desktop-smart-launched, desktop-smart-committed,
launch-smart-unknown-issuer, launch-smart-denied, desktop-smart-launch-again.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.e2e.conftest import shot
from tests.e2e.flows import pair, pairing_url
from tests.e2e.harness import Server, free_port, start_server
from tests.e2e.test_phone_capture import describe_photo

pytestmark = pytest.mark.e2e

double = pytest.importorskip(
    "tests.smart.double",
    reason="the SMART EHR test double is not in this tree yet (tests/smart/, branch `smartlaunch`)",
)

CLIENT_ID = "consultcam"
#: Only for the confidential-client case; the double is the only party that knows it.
CLIENT_SECRET = "confidential-client-secret-for-the-ehr-double"
#: The patient as the EHR holds it; no launch URL carries any of it.
GIVEN, FAMILY, NHI, BIRTH_DATE, BIRTH_WORDS = "Tama", "Rangihuna", "ZZZ0024", "1980-04-02", "2 Apr 1980"
IMAGE_ID_SYSTEM = "urn:consultcam:image-id"
#: How the double logs a request's Authorization header: the scheme, the credential redacted.
BEARER = "Bearer [redacted]"
#: What the desktop says when the EHR's sign-in has expired and cannot be renewed (409 LaunchExpired).
LAUNCH_AGAIN = (
    "The EHR's sign-in for this session has expired. Launch consultcam again from the EHR for this "
    "patient; your photos are kept."
)
#: What consultcam asks for (issue 13; SMART App Launch 2.x scopes-and-launch-context, v2 names, as the
#: double lists permission-v2), with no offline_access since CONSULTCAM_SMART_OFFLINE_ACCESS is off.
SCOPES_V2 = {
    "launch",
    "openid",
    "fhirUser",
    "patient/Patient.rs",
    "patient/Encounter.rs",
    "patient/Media.c",
    "patient/DocumentReference.c",
}

Launchable = Callable[..., tuple[Any, Server]]


@pytest.fixture
def launchable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launchable]:
    """Make an EHR double and a `consultcam serve` registered with it: the double knows consultcam's redirect
    URI ({PUBLIC_URL}/launch/callback) before consultcam starts, so the port is chosen first."""
    with contextlib.ExitStack() as stack:

        def make(*, client_secret: str | None = None, **env: str) -> tuple[Any, Server]:
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            ehr = stack.enter_context(
                double.EhrDouble(
                    client_id=CLIENT_ID, client_secret=client_secret, redirect_uri=f"{url}/launch/callback"
                )
            )
            server = start_server(
                tmp_path_factory.mktemp("consultcam-smart"), port=port, **{**ehr.env(), **env}
            )
            stack.callback(server.stop)
            assert server.url == url
            return ehr, server

        yield make


def gp_browser(browser: Browser, contexts: list[BrowserContext]) -> Page:
    """The GP's desktop browser as the EHR opens it: 1280×800, New Zealand, not signed in to consultcam."""
    context = browser.new_context(
        viewport={"width": 1280, "height": 800}, locale="en-NZ", timezone_id="Pacific/Auckland"
    )
    context.set_default_timeout(15_000)
    contexts.append(context)
    return context.new_page()


def ehr_launch_url(ehr: Any, server: Server, launch: str) -> str:
    """What the EHR opens for an EHR launch: consultcam's launch URL with `iss` and `launch`."""
    return f"{server.url}/launch?{urlencode({'iss': ehr.iss, 'launch': launch})}"


def fhir_requests(ehr: Any, since: int = 0) -> list[dict[str, Any]]:
    """The FHIR API calls the double received (under the `iss` path), after its first `since` requests."""
    base = urlsplit(ehr.iss).path
    return [r for r in ehr.requests()[since:] if r["path"] == base or r["path"].startswith(f"{base}/")]


def fhir_writes(ehr: Any, since: int = 0) -> list[dict[str, Any]]:
    return [r for r in fhir_requests(ehr, since) if r["method"] in ("POST", "PUT")]


def landed_session(desktop: Page, *secrets: str) -> str:
    """The desktop is on `/sessions/{id}` with nothing else in the URL; returns the id."""
    landed = urlsplit(desktop.url)
    assert re.fullmatch(r"/sessions/[A-Za-z0-9_-]+", landed.path), desktop.url
    assert not landed.query, desktop.url
    assert not landed.fragment, desktop.url
    for secret in secrets:
        assert secret not in desktop.url, secret
    return landed.path.rsplit("/", 1)[1]


def expect_patient(page: Page) -> None:
    banner = page.get_by_test_id("patient-banner")
    expect(banner).to_contain_text(GIVEN)
    expect(banner).to_contain_text(FAMILY)
    expect(banner).to_contain_text(NHI)


def send_one_photo(phone: Page, desktop: Page) -> str:
    """Pair the phone by the desktop's QR link, check the patient, send one camera photo with its body site;
    returns the image id the desktop's gallery shows."""
    pair(phone, pairing_url(desktop))
    expect_patient(phone)
    expect(phone.get_by_test_id("patient-banner")).to_contain_text(BIRTH_WORDS)
    phone.get_by_test_id("camera-capture").click()
    expect(phone.get_by_test_id("photo-count")).to_have_text("1 photo")
    phone.locator("#review-btn").click()
    expect(phone.locator(".photo-card").first).to_have_attribute("data-status", "ready", timeout=20_000)
    describe_photo(phone, 1, label="Fundus, left eye", side="Left", site="Eye region", view="Close-up")
    phone.get_by_test_id("upload-all").click()
    expect(phone.get_by_test_id("upload-done")).to_contain_text("1 photo sent", timeout=30_000)
    items = desktop.get_by_test_id("gallery").locator("figure[data-image-id]")
    expect(items).to_have_count(1)
    expect(items.first).to_have_attribute("data-loaded", "true")
    expect(desktop.get_by_test_id("commit-readiness")).to_have_text("Every photo has its body site.")
    image_id = items.first.get_attribute("data-image-id") or ""
    assert image_id
    return image_id


def start_commit(desktop: Page) -> None:
    desktop.get_by_test_id("commit").click()
    dialog = desktop.get_by_test_id("commit-confirm")
    expect(dialog).to_contain_text(FAMILY)
    dialog.get_by_role("button", name=re.compile(r"^(Commit 1 photo|Try again)$")).click()


def expect_committed(desktop: Page, phone: Page) -> None:
    result = desktop.get_by_test_id("commit-result")
    expect(result).to_be_visible(timeout=60_000)
    expect(result.locator(".result-item.is-ok")).to_have_count(1)
    expect(result).to_contain_text("1 photo saved to")
    expect(desktop.locator("#session-status")).to_have_text("Committed")
    expect(phone.get_by_test_id("final-screen")).to_contain_text("Saved to the record")


def our_image_ids(resource: dict[str, Any]) -> list[str]:
    return [i["value"] for i in resource.get("identifier", []) if i.get("system") == IMAGE_ID_SYSTEM]


def expect_media_in_ehr(
    ehr: Any, image_id: str, patient_id: str, encounter_id: str, user: str, *, since: int = 0
) -> None:
    """One Media in the EHR, for that photo, patient and encounter, by the launching user; every FHIR write
    the double received after its first `since` requests carried a Bearer token and was accepted (2xx:
    validated with fhir.resources, within the token's scopes and patient)."""
    media = ehr.resources("Media")
    assert len(media) == 1, media
    resource = media[0]
    assert our_image_ids(resource) == [image_id]
    assert resource["status"] == "completed"
    assert resource["subject"]["reference"] == f"Patient/{patient_id}"
    assert resource["encounter"]["reference"] == f"Encounter/{encounter_id}"
    assert resource["operator"]["reference"] == user
    assert resource["content"]["contentType"] == "image/jpeg"
    assert ehr.resources("DocumentReference") == []
    writes = fhir_writes(ehr, since)
    assert writes, ehr.requests()
    for write in writes:
        assert write["headers"].get("authorization") == BEARER, write
        assert 200 <= write["status"] < 300, write


def test_ehr_launch_commits_into_the_ehr_with_the_users_token(
    launchable: Launchable, browser: Browser, contexts: list[BrowserContext], phone_factory: Any
) -> None:
    ehr, server = launchable(client_secret=CLIENT_SECRET)
    patient_id = ehr.add_patient(family=FAMILY, given=GIVEN, birth_date=BIRTH_DATE, nhi=NHI)
    encounter_id = ehr.add_encounter(patient_id)
    user = ehr.add_practitioner(family="Moana", given="Aria")
    assert user.startswith("Practitioner/")
    launch = ehr.new_launch(patient=patient_id, encounter=encounter_id, user=user)

    # -- the launch: the EHR opens consultcam; consultcam authorizes at the EHR and lands on the session ---
    desktop = gp_browser(browser, contexts)
    response = desktop.goto(ehr_launch_url(ehr, server, launch))
    assert response is not None
    assert response.status == 200, response.status
    session_id = landed_session(desktop, patient_id, encounter_id, NHI, GIVEN, FAMILY, launch)
    expect_patient(desktop)
    expect(desktop.get_by_test_id("patient-banner")).to_contain_text(encounter_id)  # the EHR's own encounter
    expect(desktop.get_by_role("img", name="QR code for pairing the phone").locator("svg")).to_be_visible()
    expect(desktop.get_by_test_id("live-status")).to_have_text("Live")
    shot(desktop, "desktop-smart-launched")

    # What the EHR received: one authorization request for this launch, audience and PKCE, the scopes
    # consultcam needs; one code exchange with the verifier, the same redirect URI and the client's secret.
    [authorize] = ehr.authorize_requests()
    assert authorize["client_id"] == CLIENT_ID
    assert authorize["launch"] == launch
    assert authorize["aud"] == ehr.iss
    assert authorize["redirect_uri"] == f"{server.url}/launch/callback"
    assert authorize["code_challenge_method"] == "S256"
    assert set(authorize["scope"].split()) == SCOPES_V2
    [exchange] = ehr.token_requests()
    assert exchange["grant_type"] == "authorization_code"
    assert exchange["code_verifier_ok"] is True
    assert exchange["redirect_uri"] == f"{server.url}/launch/callback"
    assert exchange["client_auth"] == "client_secret_basic"
    reads = [
        r for r in fhir_requests(ehr) if r["method"] == "GET" and r["path"].endswith(f"/Patient/{patient_id}")
    ]
    assert reads, fhir_requests(ehr)
    assert all(r["headers"].get("authorization") == BEARER and r["status"] == 200 for r in reads), reads

    # -- the phone pairs and sends a photo; the GP commits ---------------------------------------------------
    phone = phone_factory()
    image_id = send_one_photo(phone, desktop)
    start_commit(desktop)
    expect_committed(desktop, phone)
    shot(desktop, "desktop-smart-committed")

    # -- in the EHR: the Media, for the EHR's patient and encounter, written with the user's token ----------
    expect_media_in_ehr(ehr, image_id, patient_id, encounter_id, user)
    assert all(r["status"] not in (401, 403) for r in fhir_requests(ehr)), fhir_requests(ehr)
    assert server.outbox() == []  # nothing went to the embedded export connector instead
    assert session_id


def test_standalone_launch_opens_the_patient_the_ehr_selected(
    launchable: Launchable, browser: Browser, contexts: list[BrowserContext]
) -> None:
    ehr, server = launchable()  # a public client: PKCE, no secret
    other = ehr.add_patient(family="Other", given="Not", birth_date="1990-01-01", nhi="ZZZ0016")
    patient_id = ehr.add_patient(family=FAMILY, given=GIVEN, birth_date=BIRTH_DATE, nhi=NHI)
    user = ehr.add_practitioner(family="Moana", given="Aria")
    ehr.select_patient(patient_id, user)
    assert other != patient_id

    desktop = gp_browser(browser, contexts)
    response = desktop.goto(f"{server.url}/launch?{urlencode({'iss': ehr.iss})}")
    assert response is not None
    assert response.status == 200, response.status
    landed_session(desktop, patient_id, NHI, GIVEN, FAMILY)
    expect_patient(desktop)
    expect(desktop.get_by_test_id("patient-banner")).not_to_contain_text("ZZZ0016")
    expect(desktop.get_by_test_id("patient-banner")).to_contain_text("Today's consultation")  # no encounter
    expect(desktop.get_by_role("img", name="QR code for pairing the phone").locator("svg")).to_be_visible()
    shot(desktop, "desktop-smart-standalone")

    [authorize] = ehr.authorize_requests()
    assert "launch" not in authorize
    assert authorize["aud"] == ehr.iss
    assert authorize["code_challenge_method"] == "S256"
    # Outside the EHR the patient is chosen at the EHR: SMART's launch/patient scope, not `launch`.
    scopes = set(authorize["scope"].split())
    assert "launch/patient" in scopes
    assert SCOPES_V2 - {"launch"} <= scopes
    [exchange] = ehr.token_requests()
    assert exchange["code_verifier_ok"] is True
    assert exchange["client_auth"] == "none"


def test_a_fhir_server_not_in_the_list_is_refused_and_never_contacted(
    launchable: Launchable, browser: Browser, contexts: list[BrowserContext]
) -> None:
    _listed, server = launchable()
    with double.EhrDouble(
        client_id=CLIENT_ID, client_secret=None, redirect_uri=f"{server.url}/launch/callback"
    ) as stranger:
        patient_id = stranger.add_patient(family=FAMILY, given=GIVEN, birth_date=BIRTH_DATE, nhi=NHI)
        launch = stranger.new_launch(patient=patient_id, encounter=stranger.add_encounter(patient_id))
        assert stranger.iss not in server.env["CONSULTCAM_SMART_ISSUERS"].split(",")

        desktop = gp_browser(browser, contexts)
        response = desktop.goto(ehr_launch_url(stranger, server, launch))
        assert response is not None
        assert response.status == 403, response.status
        assert urlsplit(desktop.url).path == "/launch"
        problem = desktop.get_by_test_id("launch-problem")
        expect(problem).to_be_visible()
        expect(problem).to_have_attribute("data-reason", "unknown-issuer")
        expect(problem).to_contain_text("consultcam does not know this patient record system")
        expect(problem).to_contain_text("Nothing was opened.")
        expect(desktop.locator("body")).not_to_contain_text("Medtech")  # any EHR, not Medtech's words
        shot(desktop, "launch-smart-unknown-issuer")
        # consultcam asked the stranger nothing (no discovery, no redirect to its authorize endpoint).
        assert stranger.requests() == []


def test_a_denied_authorization_shows_its_page_and_opens_nothing(
    launchable: Launchable, browser: Browser, contexts: list[BrowserContext]
) -> None:
    ehr, server = launchable()
    patient_id = ehr.add_patient(family=FAMILY, given=GIVEN, birth_date=BIRTH_DATE, nhi=NHI)
    launch = ehr.new_launch(patient=patient_id, encounter=ehr.add_encounter(patient_id))
    ehr.deny_next()

    desktop = gp_browser(browser, contexts)
    response = desktop.goto(ehr_launch_url(ehr, server, launch))
    assert response is not None
    assert response.status == 403, response.status
    assert urlsplit(desktop.url).path == "/launch/callback"
    problem = desktop.get_by_test_id("launch-problem")
    expect(problem).to_be_visible()
    expect(problem).to_have_attribute("data-reason", "denied")
    expect(problem).to_contain_text("Access was not allowed")
    expect(problem).to_contain_text("Nothing was opened.")
    expect(desktop.get_by_test_id("patient-banner")).to_have_count(0)
    expect(desktop.locator("body")).not_to_contain_text("Medtech")
    shot(desktop, "launch-smart-denied")
    assert ehr.token_requests() == []  # no code to exchange
    assert not any(r["path"].endswith(f"/Patient/{patient_id}") for r in ehr.requests())


def test_an_expired_token_at_commit_asks_to_launch_again_and_loses_nothing(
    launchable: Launchable, browser: Browser, contexts: list[BrowserContext], phone_factory: Any
) -> None:
    ehr, server = launchable()  # no offline_access: no refresh token is granted
    patient_id = ehr.add_patient(family=FAMILY, given=GIVEN, birth_date=BIRTH_DATE, nhi=NHI)
    encounter_id = ehr.add_encounter(patient_id)
    user = ehr.add_practitioner(family="Moana", given="Aria")
    desktop = gp_browser(browser, contexts)
    desktop.goto(
        ehr_launch_url(ehr, server, ehr.new_launch(patient=patient_id, encounter=encounter_id, user=user))
    )
    session_id = landed_session(desktop)
    expect_patient(desktop)
    phone = phone_factory()
    image_id = send_one_photo(phone, desktop)

    ehr.expire_tokens()
    expired_from = len(ehr.requests())
    start_commit(desktop)
    error = desktop.locator("#commit-error")
    expect(error).to_be_visible(timeout=60_000)
    expect(error).to_have_text(LAUNCH_AGAIN)
    expect(desktop.locator("#commit-dialog-title")).to_have_text("Launch consultcam again from the EHR")
    expect(desktop.get_by_test_id("commit-confirm-button")).to_be_hidden()  # no "Try again": it cannot help
    expect(desktop.locator("#session-status")).to_have_attribute("data-status", "open")
    shot(desktop, "desktop-smart-launch-again")
    assert ehr.resources("Media") == []
    assert ehr.resources("DocumentReference") == []
    assert [t["grant_type"] for t in ehr.token_requests()] == ["authorization_code"]  # nothing to refresh
    refused = [r for r in fhir_requests(ehr, expired_from) if r["status"] == 401]
    assert refused, fhir_requests(ehr, expired_from)  # consultcam tried with the launch's token: refused
    assert all(r["headers"].get("authorization") == BEARER for r in refused), refused
    expect(desktop.get_by_test_id("gallery").locator(f'figure[data-image-id="{image_id}"]')).to_have_count(1)

    # The GP launches again from the EHR: the same session, the photo still there, and the commit lands.
    again = desktop.context.new_page()
    again.goto(
        ehr_launch_url(ehr, server, ehr.new_launch(patient=patient_id, encounter=encounter_id, user=user))
    )
    assert landed_session(again) == session_id
    items = again.get_by_test_id("gallery").locator("figure[data-image-id]")
    expect(items).to_have_count(1)
    expect(items.first).to_have_attribute("data-image-id", image_id)
    desktop.close()
    relaunched_from = len(ehr.requests())
    start_commit(again)
    expect_committed(again, phone)
    expect_media_in_ehr(ehr, image_id, patient_id, encounter_id, user, since=relaunched_from)
    assert [t["grant_type"] for t in ehr.token_requests()] == ["authorization_code", "authorization_code"]
