"""Issue 12 in real Chromium, from the Medtech launch URL to the patient's Inbox Scan.

Medtech Evolution opens `/launch/medtech?context=…&signature=…` in the GP's browser (ALEX Apps Configuration,
mode Web Browser: docs/medtech.md). Here the Medtech ALEX test double (tests/medtech/, a separate process
speaking ALEX's wire protocol) makes that link and plays ALEX; a real `consultcam serve` decodes it through
the double, signs the GP in and lands on the patient's session; a phone pairs by the QR link and sends a
camera photo and a photo from its files; the GP gives body site and side, rotates one photo, commits; and
what ALEX stored is read back: one DocumentReference per photo, each attachment a TIFF whose pixels are the
photo the desktop downloads (same size, SSIM ≥ 0.95 on luma), edits burned in.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Browser, BrowserContext, Page, expect
from skimage.metrics import structural_similarity

from tests.e2e.conftest import Server, shot
from tests.e2e.flows import pair, pairing_url, phone_photo
from tests.e2e.test_image_editor import open_viewer
from tests.e2e.test_phone_capture import describe_photo

pytestmark = pytest.mark.e2e

if importlib.util.find_spec("consultcam.launch.medtech") is None:
    pytest.skip(
        "GET /launch/medtech is not in this tree yet (consultcam/launch/medtech.py, branch `launch`)",
        allow_module_level=True,
    )
double = pytest.importorskip(
    "tests.medtech.double",
    reason="the Medtech ALEX test double is not in this tree yet (branch `alexdouble`)",
)

FACILITY = "F2N060-E"
PROVIDER = "PRV123"
#: The patient as ALEX holds it; the launch URL carries none of it.
GIVEN, FAMILY, NHI, BIRTH_DATE = "Hemi", "Walker", "ZZZ0032", "1971-11-23"
IMAGE_ID_SYSTEM = "urn:consultcam:image-id"
TIFF_MAGIC = (b"II*\x00", b"MM\x00*")
ALEX_IMAGE_LIMIT = 1_000_000  # bytes, each attachment (shared/DESIGN.md, "Medtech ALEX facts")
MIN_SSIM = 0.95


@pytest.fixture
def alex() -> Iterator[Any]:
    with double.AlexDouble() as running:
        yield running


@pytest.fixture
def alex_server(alex: Any, server_factory: Any) -> Server:
    """consultcam on the ALEX double: commits go to its FHIR base, launches are decoded at its root."""
    server: Server = server_factory(**alex.env())
    return server


def gp_browser(browser: Browser, contexts: list[BrowserContext]) -> Page:
    """The GP's desktop browser as Medtech Evolution opens it: 1280×800, New Zealand, not signed in."""
    context = browser.new_context(
        viewport={"width": 1280, "height": 800}, locale="en-NZ", timezone_id="Pacific/Auckland"
    )
    context.set_default_timeout(15_000)
    contexts.append(context)
    return context.new_page()


def fetch(page: Page, url: str) -> bytes:
    """GET `url` with the page's own cookies (the GP's launch sign-in), as the desktop's download does."""
    response = page.context.request.get(url)
    assert response.status == 200, f"{url}: {response.status} {response.text()[:300]}"
    return response.body()


def luma_ssim(a: Image.Image, b: Image.Image) -> float:
    """SSIM of two same-sized pictures on their luma (Wang et al. 2004; scikit-image's 7×7 window)."""
    assert a.size == b.size, (a.size, b.size)
    left = np.asarray(a.convert("L"), dtype=np.uint8)
    right = np.asarray(b.convert("L"), dtype=np.uint8)
    return float(structural_similarity(left, right, data_range=255))


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def our_image_id(resource: dict[str, Any]) -> str:
    values = [i["value"] for i in resource.get("identifier", []) if i.get("system") == IMAGE_ID_SYSTEM]
    assert len(values) == 1, resource.get("identifier")
    return str(values[0])


def test_launch_from_medtech_to_inbox_scan(
    alex: Any,
    alex_server: Server,
    browser: Browser,
    contexts: list[BrowserContext],
    phone_factory: Any,
    tmp_path: Path,
) -> None:
    server = alex_server
    patient_id = alex.add_patient(nhi=NHI, family=FAMILY, given=GIVEN, birth_date=BIRTH_DATE)

    # -- the launch: Medtech opens the icon's URL; the server decodes it at ALEX and redirects ------------
    desktop = gp_browser(browser, contexts)
    query = alex.launch_query(patient_id=patient_id, provider_id=PROVIDER, facility_code=FACILITY)
    response = desktop.goto(f"{server.url}/launch/medtech?{query}")
    assert response is not None
    assert response.status == 200, response.status
    redirect = response.request.redirected_from
    assert redirect is not None
    assert redirect.url.startswith(f"{server.url}/launch/medtech?")
    see_other = redirect.response()
    assert see_other is not None
    assert see_other.status == 303
    landed = urlsplit(desktop.url)
    assert re.fullmatch(r"/sessions/[A-Za-z0-9_-]+", landed.path), desktop.url
    assert not landed.query, desktop.url
    assert not landed.fragment, desktop.url
    for secret in (patient_id, NHI, GIVEN, FAMILY, PROVIDER, FACILITY):
        assert secret not in desktop.url
    session_id = landed.path.rsplit("/", 1)[1]

    banner = desktop.get_by_test_id("patient-banner")
    expect(banner).to_contain_text(GIVEN)
    expect(banner).to_contain_text(FAMILY)
    expect(banner).to_contain_text(NHI)
    # Medtech names no encounter: the banner says so in words, not with the made-up day key.
    expect(banner).to_contain_text("Today's consultation")
    expect(banner).not_to_contain_text(re.compile(r"mt-\d{8}-"))
    expect(desktop.get_by_role("img", name="QR code for pairing the phone").locator("svg")).to_be_visible()
    expect(desktop.get_by_test_id("live-status")).to_have_text("Live")
    shot(desktop, "desktop-medtech-launched")
    assert alex.decode_count() == 1

    # The same launch link again (a reload, the history) is a replay: refused, and nothing opened.
    again = desktop.context.new_page()
    replay = again.goto(f"{server.url}/launch/medtech?{query}")
    assert replay is not None
    assert replay.status == 403, replay.status
    assert urlsplit(again.url).path == "/launch/medtech"
    expect(again.get_by_test_id("launch-problem")).to_contain_text("This link has already been used")
    again.close()
    # A new click on the icon for the same patient, same GP, same day resumes the same session in a new tab
    # (its sign-in replaces the first tab's, whose live updates stop); the GP carries on there.
    resumed = desktop.context.new_page()
    fresh = alex.launch_query(patient_id=patient_id, provider_id=PROVIDER, facility_code=FACILITY)
    resumed.goto(f"{server.url}/launch/medtech?{fresh}")
    resumed.wait_for_url(re.compile(r"/sessions/[^/?#]+$"))
    assert urlsplit(resumed.url).path == f"/sessions/{session_id}"
    assert alex.decode_count() == 2  # the replay was refused without asking ALEX
    desktop.close()
    desktop = resumed
    expect(desktop.get_by_test_id("patient-banner")).to_contain_text(NHI)
    expect(desktop.get_by_test_id("live-status")).to_have_text("Live")

    # -- the phone: pairs by the QR link, shows ALEX's patient, sends a camera photo and a file ----------
    phone = phone_factory()
    pair(phone, pairing_url(desktop))
    phone_banner = phone.get_by_test_id("patient-banner")
    expect(phone_banner).to_contain_text(GIVEN)
    expect(phone_banner).to_contain_text(FAMILY)
    expect(phone_banner).to_contain_text(NHI)
    expect(phone_banner).to_contain_text("23 Nov 1971")
    phone.get_by_test_id("camera-capture").click()
    expect(phone.get_by_test_id("photo-count")).to_have_text("1 photo")
    picked = tmp_path / "IMG_0002.jpg"
    phone_photo(picked, "rocket.jpg", orientation=6)
    phone.get_by_test_id("file-input").set_input_files(str(picked))
    expect(phone.get_by_test_id("photo-count")).to_have_text("2 photos")
    cards = phone.locator(".photo-card")
    for index in range(2):
        expect(cards.nth(index)).to_have_attribute("data-status", "ready", timeout=20_000)
    describe_photo(phone, 1, label="Fundus, left eye", side="Left", site="Eye region", view="Close-up")
    phone.get_by_test_id("upload-all").click()
    expect(phone.get_by_test_id("upload-done")).to_contain_text("2 photos sent", timeout=30_000)

    # -- the desktop: photo 2 gets its body site and side from the GP, and is turned upright -------------
    items = desktop.get_by_test_id("gallery").locator("figure[data-image-id]")
    expect(items).to_have_count(2)
    for index in range(2):
        expect(items.nth(index)).to_have_attribute("data-loaded", "true")
    image_ids = [items.nth(i).get_attribute("data-image-id") or "" for i in range(2)]
    assert all(image_ids), image_ids
    expect(items.nth(1).locator(".badge-missing")).to_have_text("Needs body site")
    panel = desktop.get_by_test_id("metadata-panel")
    items.nth(1).get_by_role("button", name="Open photo 2 in the viewer").focus()
    expect(panel.get_by_test_id("metadata-subject")).to_have_text("Photo 2")
    panel.get_by_label("Search body sites").fill("forearm")
    panel.get_by_label("Search body sites").press("Enter")
    expect(panel.get_by_test_id("metadata-status")).to_have_text("Saved")
    panel.get_by_role("button", name="Right", exact=True).click()
    expect(panel.get_by_role("button", name="Right", exact=True)).to_have_attribute("aria-pressed", "true")
    expect(panel.get_by_test_id("metadata-status")).to_have_text("Saved")
    expect(desktop.get_by_test_id("commit-readiness")).to_have_text("Every photo has its body site.")

    viewer = open_viewer(desktop, session_id, 1)
    viewer.get_by_test_id("viewer-edit").click()
    editor = viewer.get_by_test_id("image-editor")
    editor.get_by_role("button", name="Rotate right").click()
    editor.get_by_test_id("editor-save").click()
    expect(editor).to_have_count(0)
    expect(viewer.locator(".vw-badges")).to_contain_text("Edited: rotated 90°")
    viewer.get_by_role("button", name="Close viewer").click()
    expect(viewer).to_have_count(0)

    # What the desktop downloads (edits burned in), and photo 2's untouched original.
    base = f"{server.url}/api/sessions/{session_id}/images"
    downloads = {image_id: decoded(fetch(desktop, f"{base}/{image_id}/download")) for image_id in image_ids}
    stored = json.loads(fetch(desktop, f"{base}/{image_ids[1]}"))
    full = stored["urls"]["full"]
    original = decoded(fetch(desktop, full if full.startswith("http") else server.url + full))
    assert stored["edits"]["rotation"] == 90
    assert downloads[image_ids[1]].size == (original.height, original.width)

    # -- commit into Inbox Scan ----------------------------------------------------------------------------
    desktop.get_by_test_id("commit").click()
    dialog = desktop.get_by_test_id("commit-confirm")
    expect(dialog).to_contain_text(FAMILY)
    expect(dialog).to_contain_text("Today's consultation")  # not the made-up encounter key
    shot(desktop, "desktop-medtech-commit-confirm")
    dialog.get_by_role("button", name="Commit 2 photos").click()
    result = desktop.get_by_test_id("commit-result")
    expect(result).to_be_visible(timeout=60_000)
    expect(result.locator(".result-item.is-ok")).to_have_count(2)
    expect(result).to_contain_text("2 photos saved to")
    expect(desktop.locator("#session-status")).to_have_text("Committed")
    # A launched GP's next patient comes from Medtech, not from consultcam's start form.
    expect(desktop.get_by_test_id("relaunch-hint")).to_be_visible()
    expect(desktop.get_by_role("link", name="Start a new session")).to_have_count(0)
    shot(desktop, "desktop-medtech-committed")
    expect(phone.get_by_test_id("final-screen")).to_contain_text("Saved to the record")

    # -- what ALEX holds: one DocumentReference per photo, each a TIFF of the photo ------------------------
    documents = alex.resources("DocumentReference")
    assert sorted(our_image_id(d) for d in documents) == sorted(image_ids)
    assert alex.resources("Media") == []
    for document in documents:
        image_id = our_image_id(document)
        assert document["status"] == "current"
        assert document["subject"]["reference"] == f"Patient/{patient_id}"
        assert document["subject"]["identifier"] == {"system": double.NHI_SYSTEM, "value": NHI}
        assert any(a.get("reference") == f"Practitioner/{PROVIDER}" for a in document.get("author", []))
        codings = document["type"]["coding"]
        assert {"system": "http://loinc.org", "code": "72170-4"}.items() <= codings[0].items()
        assert re.search(r"\+1[23]:00$", document["date"]), document["date"]  # Pacific/Auckland
        assert len(document["content"]) == 1
        attachment = document["content"][0]["attachment"]
        data = base64.b64decode(attachment["data"])
        assert attachment["contentType"] == "image/tiff"
        assert data[:4] in TIFF_MAGIC
        assert attachment["size"] == len(data) < ALEX_IMAGE_LIMIT
        assert base64.b64decode(attachment["hash"]) == hashlib.sha1(data).digest()  # FHIR R4: SHA-1
        assert attachment["title"].endswith(".tiff")
        tiff = decoded(data)
        assert tiff.format == "TIFF"
        expected = downloads[image_id]
        assert tiff.size == expected.size, (image_id, tiff.size, expected.size)
        similarity = luma_ssim(tiff, expected)
        assert similarity >= MIN_SSIM, f"{image_id}: SSIM {similarity:.3f} against the downloaded JPEG"

    by_id = {our_image_id(d): d for d in documents}
    first, second = by_id[image_ids[0]], by_id[image_ids[1]]
    # The description says what the GP gave, in words: label, side, body site.
    assert "Fundus, left eye" in first["description"]
    assert "left" in first["description"].lower()
    assert "eye" in first["description"].lower()
    assert "right" in second["description"].lower()
    assert "forearm" in second["description"].lower()
    assert "right" in second["content"][0]["attachment"]["title"]
    assert "close-up" in first["description"]
    for document in (first, second):
        assert "Consent to clinical photography given by the patient" in document["description"]
    # The edited photo: rotated a quarter turn clockwise, as the GP saw it, not as the phone sent it.
    rotated = decoded(base64.b64decode(second["content"][0]["attachment"]["data"]))
    upright = original.transpose(Image.Transpose.ROTATE_270)
    assert rotated.size == upright.size == (original.height, original.width)
    assert luma_ssim(rotated, upright) >= MIN_SSIM

    # Every FHIR call carried the launch's facility and its own correlation id; nothing searched otherwise.
    fhir_calls = [r for r in alex.requests() if r["path"].startswith("/FHIR/")]
    assert fhir_calls
    assert all(r["headers"].get("mt-facilityid") == FACILITY for r in fhir_calls), fhir_calls
    correlation = [r["headers"].get("mt-correlationid") for r in fhir_calls]
    assert all(correlation)
    assert len(set(correlation)) == len(correlation)
    assert all(r["status"] != 403 for r in fhir_calls), [r for r in fhir_calls if r["status"] == 403]
