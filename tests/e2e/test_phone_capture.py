"""The phone page of issue 5 in real Chromium: consent before the first photo (and without it when the
practice turns it off), the patient banner's "Not this patient?", switching camera and the torch, the quick
blur and darkness check, chips and "Apply to all", offline uploads, photos that survive a reload, and
"Commit now". Every screen is checked with axe and photographed at 360×740 and 430×932."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle
from PIL import Image, ImageFilter
from playwright.sync_api import Page, Route, expect

from tests.e2e.a11y import check_axe
from tests.e2e.conftest import PATIENT, PHOTOS, Server, shot
from tests.e2e.flows import pair, pairing_url, start_session

pytestmark = pytest.mark.e2e

SIZES = ((360, 740), (430, 932))
#: POST a JSON body with the page's own credentials (the phone cookie) and CSRF token (X-CSRF-Token, sent
#: with every answer, as api.js keeps it); resolves to the HTTP status.
POST_JSON = """async ([url, body]) => {
  const token = (await fetch("/healthz")).headers.get("X-CSRF-Token") || "";
  const headers = {"Content-Type": "application/json", "X-CSRF-Token": token};
  return (await fetch(url, {method: "POST", headers, body: JSON.stringify(body)})).status;
}"""
SNOMED_CT = "http://snomed.info/sct"
EYE_REGION = "371398005"  # SNOMED CT "Eye region structure", one of the 24 body sites


# -- helpers (also used by the other phone test modules) -----------------------------------------------


def shots(page: Page, name: str, *, axe: str | None = None) -> None:
    """Screenshots of the phone as it is at 360×740 and at 430×932 (`<name>-360.png`, `<name>-430.png`);
    with `axe`, axe-core runs at both sizes too."""
    original = page.viewport_size
    page.mouse.move(1, 1)  # no hover effects in the pictures (a phone has no pointer)
    for width, height in SIZES:
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(150)  # let the layout settle
        if axe:
            check_axe(page, f"{axe} at {width}×{height}")
        shot(page, f"{name}-{width}")
    if original:
        page.set_viewport_size(original)


def jpeg_file(path: Path, source: str = "cat.jpg", *, blur: float = 0, gain: float = 1.0) -> Path:
    """A 2048×1536 photo from tests/photos, optionally Gaussian-blurred (radius in px) or darkened."""
    with Image.open(PHOTOS / source) as src:
        image = src.convert("RGB").resize((2048, 1536), Image.Resampling.LANCZOS)
    if blur:
        image = image.filter(ImageFilter.GaussianBlur(blur))
    if gain != 1.0:
        image = image.point(lambda v: int(v * gain))
    image.save(path, "JPEG", quality=90)
    return path


def kept_records(phone: Page) -> int:
    """How many records the phone keeps in IndexedDB (photos + blobs); 0 when the database does not exist."""
    return phone.evaluate(
        """async () => {
          const names = (await indexedDB.databases()).map(d => d.name);
          if (!names.includes("consultcam-phone")) return 0;
          return new Promise((resolve) => {
            const open = indexedDB.open("consultcam-phone");
            open.onsuccess = () => {
              const db = open.result;
              if (!db.objectStoreNames.contains("photos")) { db.close(); resolve(0); return; }
              const tx = db.transaction(["photos", "blobs"]);
              const a = tx.objectStore("photos").count(), b = tx.objectStore("blobs").count();
              tx.oncomplete = () => { db.close(); resolve(a.result + b.result); };
            };
            open.onerror = () => resolve(-1);
          });
        }"""
    )


#: Whether IndexedDB holds a photo whose label is `arg` (the details are written as they change).
KEPT_LABELS = """label => new Promise((resolve) => {
  const open = indexedDB.open("consultcam-phone");
  open.onsuccess = () => {
    const request = open.result.transaction("photos").objectStore("photos").getAll();
    request.onsuccess = () => {
      open.result.close();
      resolve(request.result.some(r => r.metadata?.label === label));
    };
  };
  open.onerror = () => resolve(false);
})"""


def take_photos(phone: Page, n: int) -> None:
    shutter, count = phone.get_by_test_id("camera-capture"), phone.get_by_test_id("photo-count")
    before = len(phone.evaluate("window.__consultcam.state.photos"))
    for i in range(1, n + 1):
        if i > 1:
            expect(shutter).to_be_enabled()
        shutter.click()
        expect(count).to_have_text(re.compile(rf"^{before + i} photos?$"))


def wait_ready(phone: Page, n: int) -> None:
    cards = phone.locator(".photo-card")
    expect(cards).to_have_count(n)
    for index in range(n):
        expect(cards.nth(index)).to_have_attribute("data-status", "ready", timeout=20_000)


def describe_photo(
    phone: Page,
    n: int,
    *,
    label: str | None = None,
    side: str | None = None,
    site: str | None = None,
    view: str | None = None,
    apply_to_all: bool = False,
) -> None:
    """On the review screen: open photo `n`'s details, tap the chips given, type the label, optionally
    "Apply to all", and come back to the review screen."""
    phone.get_by_role("button", name=f"Details for photo {n}").click()
    details = phone.get_by_test_id("photo-details")
    expect(details.get_by_role("heading", name=re.compile(rf"^Photo {n}( of \d+)?$"))).to_be_visible()
    if side:
        details.get_by_role("group", name="Side").get_by_role("button", name=side, exact=True).click()
    if site:
        sites = details.get_by_role("group", name="Body site")
        if not sites.get_by_role("button", name=site, exact=True).is_visible():
            details.get_by_role("button", name=re.compile(r"^All \d+ sites$")).click()
        sites.get_by_role("button", name=site, exact=True).click()
    if view:
        details.get_by_role("group", name="View").get_by_role("button", name=view, exact=True).click()
    if label is not None:
        details.get_by_label("Label").fill(label)
    if apply_to_all:
        phone.get_by_test_id("apply-all").click()
        expect(details.locator("#apply-note")).to_contain_text("copied to")
    details.get_by_role("button", name="All photos").click()
    expect(phone.locator("#screen-review")).to_be_visible()


def images(server: Server, session_id: str) -> list[dict[str, Any]]:
    with server.api() as api:
        return api.get(f"/api/sessions/{session_id}/images").raise_for_status().json()["images"]


def gallery(desktop: Page):
    return desktop.get_by_test_id("gallery").locator("figure[data-image-id]")


def set_body_site(server: Server, session_id: str, image_id: str, code: str = EYE_REGION) -> None:
    with server.api() as api:
        sites = api.get("/api/terminology/body-sites").raise_for_status().json()["bodySites"]
        site = next({k: s[k] for k in ("system", "code", "display")} for s in sites if s["code"] == code)
        api.patch(
            f"/api/sessions/{session_id}/images/{image_id}", json={"metadata": {"bodySite": site}}
        ).raise_for_status()


# -- consent, chips, "Apply to all", the record ----------------------------------------------------------


def test_consent_chips_and_the_record(server: Server, desktop_factory, phone_factory) -> None:
    desktop = desktop_factory(server)
    session_id = start_session(desktop, server, encounter="enc-phone-consent")
    phone = phone_factory()
    pair(phone, pairing_url(desktop), consent=False)

    # Consent comes first, under the patient banner; nothing can be photographed yet.
    screen = phone.get_by_test_id("consent-screen")
    expect(screen).to_be_visible()
    expect(phone.get_by_test_id("patient-banner")).to_contain_text(PATIENT["name"])
    expect(phone.get_by_test_id("wrong-patient")).to_be_visible()
    expect(phone.get_by_test_id("camera-capture")).to_be_hidden()
    expect(phone.get_by_role("heading", name="Consent for photos")).to_be_focused()
    expect(phone.get_by_role("radio", name=re.compile("Clinical record only"))).to_be_checked()
    shots(phone, "phone-consent", axe="the consent screen")

    phone.get_by_role("radio", name=re.compile("Record and teaching")).check()
    phone.get_by_role("radio", name="Parent or guardian").check()
    phone.get_by_test_id("consent-accept").click()
    expect(phone.get_by_test_id("camera-capture")).to_be_visible()
    with server.api() as api:
        consent = api.get(f"/api/sessions/{session_id}").json()["consent"]
    assert consent["scope"] == "teaching"
    assert consent["givenBy"] == "guardian"
    assert consent["recordedBy"] == "phone"

    # Camera: live preview, count; one fake camera, so nothing to switch to and no torch.
    expect(phone.locator("#viewfinder")).to_have_attribute("data-state", "live")
    take_photos(phone, 2)
    expect(phone.get_by_test_id("switch-camera")).to_be_hidden()
    expect(phone.get_by_test_id("torch")).to_be_hidden()
    expect(phone.get_by_test_id("quality-warning")).to_be_hidden()  # the fundus frames are sharp
    shots(phone, "phone-camera", axe="the camera screen")

    # Review: the recorded consent, said discreetly; what is missing, said gently.
    phone.locator("#review-btn").click()
    wait_ready(phone, 2)
    expect(phone.get_by_test_id("consent-line")).to_have_text(
        "Consent: record and teaching · given by a parent or guardian"
    )
    cards = phone.locator(".photo-card")
    expect(cards.first).to_contain_text("No details yet")
    expect(cards.first).to_contain_text("Body site needed")
    expect(phone.locator("#required-hint")).to_contain_text("Body site not set on 2 photos")
    shots(phone, "phone-review", axe="the review screen")

    # Details of photo 1: chips for side, body site (all 24 behind "All 24 sites"), view, and a label.
    phone.get_by_role("button", name="Details for photo 1").click()
    details = phone.get_by_test_id("photo-details")
    expect(details.get_by_role("heading", name="Photo 1 of 2")).to_be_focused()
    side = details.get_by_role("group", name="Side")
    sites = details.get_by_role("group", name="Body site")
    expect(sites.get_by_role("button")).to_have_count(8)
    details.get_by_role("button", name="All 24 sites").click()
    expect(sites.get_by_role("button")).to_have_count(24)
    side.get_by_role("button", name="Left").click()
    sites.get_by_role("button", name="Eye region").click()
    details.get_by_role("group", name="View").get_by_role("button", name="Close-up").click()
    expect(side.get_by_role("button", name="Left")).to_have_attribute("aria-pressed", "true")
    expect(details.locator("#details-required")).to_be_hidden()
    phone.evaluate("window.scrollTo(0, 0)")
    shots(phone, "phone-details", axe="the details screen")
    details.get_by_label("Label").fill("Fundus, left eye")

    # Apply to all copies side, body site and view (not the label) to the other photo.
    phone.get_by_test_id("apply-all").click()
    expect(details.locator("#apply-note")).to_have_text("Body site, side and view copied to 1 other photo.")
    details.get_by_role("button", name="Next photo").click()
    expect(details.get_by_role("heading", name="Photo 2 of 2")).to_be_visible()
    expect(side.get_by_role("button", name="Left")).to_have_attribute("aria-pressed", "true")
    expect(sites.get_by_role("button", name="Eye region")).to_have_attribute("aria-pressed", "true")
    expect(details.get_by_label("Label")).to_have_value("")
    details.get_by_role("button", name="Done").click()
    expect(cards.first).to_contain_text("Left eye region · Close-up · Fundus, left eye")
    expect(cards.nth(1)).to_contain_text("Left eye region · Close-up")
    expect(phone.locator("#required-hint")).to_be_hidden()

    # Upload: the details go up with the registration; the clinician reviews (no commit on the phone).
    phone.get_by_test_id("upload-all").click()
    done = phone.get_by_test_id("upload-done")
    expect(done).to_be_visible(timeout=30_000)
    expect(done).to_contain_text("2 photos sent")
    expect(phone.get_by_test_id("phone-commit")).to_be_hidden()
    expect(done.get_by_role("heading", name="2 photos sent")).to_be_focused()
    shots(phone, "phone-done", axe="the sent screen")
    registered = images(server, session_id)
    assert len(registered) == 2
    for image in registered:
        assert image["metadata"]["bodySite"]["code"] == EYE_REGION
        assert image["metadata"]["laterality"] == "left"
        assert image["metadata"]["view"] == "close-up"
    assert sorted(image["metadata"].get("label", "") for image in registered) == ["", "Fundus, left eye"]
    assert kept_records(phone) == 0  # uploaded: nothing kept on the phone
    expect(gallery(desktop)).to_have_count(2)

    # The clinician commits; the consent is in each Media's note; the phone says so and keeps nothing.
    with server.api() as api:
        assert api.post(f"/api/sessions/{session_id}/commit", json={"all": True}).status_code == 200
    final = phone.get_by_test_id("final-screen")
    expect(final).to_contain_text("Saved to the record")
    expect(final.locator("#final-next")).to_have_text("You're done: hand the phone back to the clinician.")
    expect(phone.get_by_test_id("patient-banner")).to_contain_text("Committed")
    expect(phone.get_by_test_id("wrong-patient")).to_be_hidden()
    shots(phone, "phone-committed", axe="the committed screen")
    bundle = bundle_for(server, "enc-phone-consent")
    notes = [" ".join(n.text for n in entry.resource.note or []) for entry in bundle.entry]
    assert len(notes) == 2
    for note in notes:
        assert (
            "Consent to clinical photography given by the patient's guardian; agreed use: teaching." in note
        ), note


def bundle_for(server: Server, encounter: str) -> Bundle:
    """The one FHIR Bundle the export connector wrote for `encounter` (its file name carries it)."""
    files = [path for path in server.outbox() if f"-{encounter}-" in path.name]
    assert len(files) == 1, files
    return Bundle.model_validate_json(files[0].read_text())


def test_consent_given_on_the_desktop_is_not_asked_again(
    server: Server, desktop_factory, phone_factory
) -> None:
    desktop = desktop_factory(server)
    session_id = start_session(desktop, server, encounter="enc-phone-consent-desktop")
    phone = phone_factory()
    pair(phone, pairing_url(desktop), consent=False)
    expect(phone.get_by_test_id("consent-screen")).to_be_visible()

    # The clinician records it on the desktop meanwhile: the phone moves on by itself (consent.recorded).
    with server.api() as api:
        api.put(
            f"/api/sessions/{session_id}/consent", json={"scope": "clinical", "givenBy": "patient"}
        ).raise_for_status()
    expect(phone.get_by_test_id("camera-capture")).to_be_visible()
    take_photos(phone, 1)
    phone.wait_for_function("() => window.__consultcam.state.photos.every(p => p.status === 'ready')")

    # After a reload it is not asked again, and the photo taken is still there.
    phone.reload()
    expect(phone.get_by_test_id("consent-screen")).to_be_hidden()
    expect(phone.locator(".photo-card")).to_have_count(1)
    expect(phone.get_by_test_id("consent-line")).to_have_text(
        "Consent: clinical record only · given by the patient"
    )


def test_consent_off(server_factory, desktop_factory, phone_factory) -> None:
    """With CONSULTCAM_CONSENT_REQUIRED=false the phone goes straight to the camera and uploads."""
    srv = server_factory(CONSULTCAM_CONSENT_REQUIRED="false")
    desktop = desktop_factory(srv)
    session_id = start_session(desktop, srv, encounter="enc-phone-no-consent")
    phone = phone_factory()
    phone.goto(pairing_url(desktop))
    expect(phone.get_by_test_id("camera-capture")).to_be_visible()
    expect(phone.get_by_test_id("consent-accept")).to_be_hidden()
    take_photos(phone, 1)
    phone.get_by_test_id("upload-all").click()
    expect(phone.get_by_test_id("upload-done")).to_be_visible()
    expect(phone.get_by_test_id("upload-done").locator(".consent-line")).to_be_hidden()
    assert len(images(srv, session_id)) == 1


# -- "Not this patient?" ---------------------------------------------------------------------------------


def test_not_this_patient(server: Server, desktop_factory, phone_factory) -> None:
    desktop = desktop_factory(server)
    session_id = start_session(desktop, server, encounter="enc-phone-wrong")
    phone = phone_factory()
    pair(phone, pairing_url(desktop))
    take_photos(phone, 2)
    wait_for = "() => window.__consultcam.state.photos.every(p => p.status === 'ready')"
    phone.wait_for_function(wait_for)
    assert kept_records(phone) == 4  # two photos, each a record and a JPEG

    # One tap only asks; "It is the right patient" changes nothing.
    phone.get_by_test_id("wrong-patient").click()
    dialog = phone.get_by_test_id("wrong-patient-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_role("heading")).to_have_text(f"Not {PATIENT['name']}?")
    expect(dialog).to_contain_text("The 2 photos on this phone not yet sent will be deleted")
    expect(dialog.get_by_role("button", name="It is the right patient")).to_be_focused()
    shots(phone, "phone-wrong-patient-confirm", axe="the not-this-patient confirmation")
    dialog.get_by_role("button", name="It is the right patient").click()
    expect(dialog).to_be_hidden()
    expect(phone.locator("#viewfinder")).to_have_attribute("data-state", "live")
    expect(phone.get_by_test_id("photo-count")).to_have_text("2 photos")

    phone.get_by_test_id("wrong-patient").click()
    phone.get_by_test_id("wrong-patient-confirm").click()
    final = phone.get_by_test_id("final-screen")
    expect(final.get_by_role("heading", name="Phone signed out")).to_be_focused()
    expect(final).to_contain_text(f"You said this is not {PATIENT['name']}")
    expect(final).to_contain_text("2 photos not yet sent were deleted from this phone")
    expect(final).to_contain_text("Ask the clinician to open the right patient")
    expect(phone.get_by_test_id("patient-banner")).to_contain_text("Signed out")
    shots(phone, "phone-wrong-patient", axe="the signed-out screen")

    # Wiped: memory, object URLs, IndexedDB. Signed out: the phone can neither read nor upload.
    assert phone.evaluate("window.__consultcam.state.photos.length") == 0
    assert phone.locator('img[src^="blob:"]').count() == 0
    assert kept_records(phone) == 0
    status = phone.evaluate(
        POST_JSON, [f"/api/sessions/{session_id}/uploads", {"contentType": "image/jpeg", "sizeBytes": 1000}]
    )
    assert status == 401
    expect(desktop.get_by_test_id("phone-status")).to_have_text("Phone signed out: not this patient")
    assert images(server, session_id) == []


def test_signed_out_from_the_desktop(server: Server, desktop_factory, phone_factory) -> None:
    desktop = desktop_factory(server)
    session_id = start_session(desktop, server, encounter="enc-phone-revoked")
    phone = phone_factory()
    pair(phone, pairing_url(desktop))
    take_photos(phone, 1)
    phone.wait_for_function("() => window.__consultcam.state.photos.every(p => p.status === 'ready')")
    with server.api() as api:
        assert api.delete(f"/api/sessions/{session_id}/phone").status_code == 204
    final = phone.get_by_test_id("final-screen")
    expect(final.get_by_role("heading", name="This phone was signed out")).to_be_visible()
    expect(final).to_contain_text("1 photo not yet sent was deleted from this phone")
    expect(final).to_contain_text("ask the clinician for a new code")
    assert kept_records(phone) == 0
    shots(phone, "phone-signed-out", axe="the signed-out screen")


# -- camera: switch, torch, the quick quality check -----------------------------------------------------

TWO_CAMERAS = """
(() => {
  const md = navigator.mediaDevices;
  const real = md.getUserMedia.bind(md);
  window.__gum = [];
  window.__torch = null;
  md.enumerateDevices = async () => [
    {kind: "videoinput", deviceId: "cam-back", label: "camera2 0, facing back", groupId: "a"},
    {kind: "videoinput", deviceId: "cam-front", label: "camera2 1, facing front", groupId: "b"},
  ];
  md.getUserMedia = async (constraints) => {
    const video = {...constraints.video};
    window.__gum.push(JSON.parse(JSON.stringify(video)));
    const front = video.deviceId?.exact === "cam-front" || video.facingMode?.ideal === "user";
    delete video.deviceId; delete video.facingMode;
    const stream = await real({audio: false, video});  // still Chromium's fake camera
    const track = stream.getVideoTracks()[0];
    const settings = track.getSettings.bind(track);
    track.getSettings = () => ({...settings(), facingMode: front ? "user" : "environment",
                                deviceId: front ? "cam-front" : "cam-back"});
    track.getCapabilities = () => (front ? {} : {torch: true});
    track.applyConstraints = async (c) => { window.__torch = c.advanced[0].torch; };
    return stream;
  };
})();
"""


def test_switch_camera_and_torch(server: Server, desktop_factory, phone_factory) -> None:
    desktop = desktop_factory(server)
    start_session(desktop, server, encounter="enc-phone-switch")
    phone = phone_factory()
    phone.add_init_script(TWO_CAMERAS)
    pair(phone, pairing_url(desktop))

    switch, torch = phone.get_by_test_id("switch-camera"), phone.get_by_test_id("torch")
    expect(switch).to_be_visible()
    expect(switch).to_have_accessible_name("Switch to the front camera")
    expect(torch).to_have_attribute("aria-pressed", "false")
    torch.click()
    expect(torch).to_have_attribute("aria-pressed", "true")
    assert phone.evaluate("window.__torch") is True
    box = switch.bounding_box()
    assert box
    assert min(box["width"], box["height"]) >= 44
    shots(phone, "phone-camera-tools", axe="the camera with switch and torch")

    switch.click()
    viewfinder = phone.locator("#viewfinder")
    expect(switch).to_have_accessible_name("Switch to the back camera")
    expect(viewfinder).to_have_attribute("data-facing", "user")
    expect(viewfinder).to_have_attribute("data-state", "live")
    expect(torch).to_be_hidden()  # the front camera has none
    assert phone.evaluate("window.__gum.at(-1).deviceId.exact") == "cam-front"
    take_photos(phone, 1)

    switch.click()
    expect(viewfinder).to_have_attribute("data-facing", "environment")
    expect(torch).to_be_visible()
    expect(torch).to_have_attribute("aria-pressed", "false")  # a new track starts with the torch off
    take_photos(phone, 1)


FAKE_SHOT = """
(() => {
  window.__nextShot = null;  // base64 of a JPEG the next takePhoto() returns instead of the camera frame
  const take = ImageCapture.prototype.takePhoto;
  ImageCapture.prototype.takePhoto = function (...args) {
    if (!window.__nextShot) return take.apply(this, args);
    const bytes = Uint8Array.from(atob(window.__nextShot), (c) => c.charCodeAt(0));
    window.__nextShot = null;
    return Promise.resolve(new Blob([bytes], {type: "image/jpeg"}));
  };
})();
"""


def test_quick_quality_check(server: Server, desktop_factory, phone_factory, tmp_path: Path) -> None:
    desktop = desktop_factory(server)
    session_id = start_session(desktop, server, encounter="enc-phone-quality")
    phone = phone_factory()
    phone.add_init_script(FAKE_SHOT)
    pair(phone, pairing_url(desktop))

    # A shaky shot: the camera screen says so at once and offers Retake; the photo is kept meanwhile.
    blurred = jpeg_file(tmp_path / "shaky.jpg", "cat.jpg", blur=6)
    phone.evaluate("b64 => { window.__nextShot = b64; }", base64.b64encode(blurred.read_bytes()).decode())
    take_photos(phone, 1)
    chip = phone.get_by_test_id("quality-warning")
    expect(chip).to_contain_text("Photo 1: may be blurred")
    expect(phone.get_by_test_id("camera-capture")).to_be_enabled()  # non-blocking
    shots(phone, "phone-quality-warning", axe="the quality warning")
    chip.get_by_role("button", name="Retake").click()
    expect(chip).to_be_hidden()
    expect(phone.locator("#retake-chip")).to_have_text("Retaking photo 1")
    phone.get_by_test_id("camera-capture").click()  # the real (sharp) camera frame replaces it
    expect(phone.locator("#retake-chip")).to_be_hidden()
    expect(phone.get_by_test_id("photo-count")).to_have_text("1 photo")
    phone.wait_for_function(
        "() => (p => p.check && p.status === 'ready')(window.__consultcam.state.photos[0])"
    )
    assert phone.evaluate("window.__consultcam.state.photos[0].check.warnings") == []
    expect(chip).to_be_hidden()

    # From the files: a blurred and a dark photo are flagged on their cards, a sharp one is not.
    files = [
        jpeg_file(tmp_path / "blurred.jpg", "coffee.jpg", blur=5),
        jpeg_file(tmp_path / "dark.jpg", "coffee.jpg", gain=0.25),
        jpeg_file(tmp_path / "sharp.jpg", "coffee.jpg"),
    ]
    phone.get_by_test_id("file-input").set_input_files([str(f) for f in files])
    wait_ready(phone, 4)
    cards = phone.locator(".photo-card")
    expect(cards.nth(1).locator(".photo-quality")).to_have_text("May be blurred")
    expect(cards.nth(2).locator(".photo-quality")).to_have_text("Too dark")
    expect(cards.nth(3).locator(".photo-quality")).to_be_hidden()
    expect(cards.nth(0).locator(".photo-quality")).to_be_hidden()
    shots(phone, "phone-review-quality", axe="the review screen with warnings")

    # The phone's check agrees with the server's (consultcam/analysis/quality.py) on these photos.
    client = phone.evaluate("window.__consultcam.state.photos.map(p => p.check)")
    phone.get_by_test_id("upload-all").click()
    expect(phone.get_by_test_id("upload-done")).to_be_visible(timeout=30_000)
    server_side = images(server, session_id)
    assert len(server_side) == 4

    def flags(warnings: list[str]) -> str:
        return ",".join(sorted(set(warnings) - {"low-resolution"}))

    assert sorted(flags(c["warnings"]) for c in client) == sorted(
        flags(i["quality"]["warnings"]) for i in server_side
    )
    assert sorted(flags(c["warnings"]) for c in client) == ["", "", "blurry", "dark"]
    for ours, theirs in zip(
        sorted(c["meanLuma"] for c in client),
        sorted(i["quality"]["meanLuma"] for i in server_side),
        strict=True,
    ):
        assert abs(ours - theirs) < 3, (ours, theirs)


# -- offline, reload --------------------------------------------------------------------------------------


def test_offline_then_online(server: Server, desktop_factory, phone_factory) -> None:
    desktop = desktop_factory(server)
    session_id = start_session(desktop, server, encounter="enc-phone-offline")
    phone = phone_factory()
    pair(phone, pairing_url(desktop))
    take_photos(phone, 2)
    phone.locator("#review-btn").click()
    wait_ready(phone, 2)

    phone.context.set_offline(True)
    note = phone.locator("#net-note")
    expect(note).to_have_text("Offline — photos are kept and will upload when the network is back")
    phone.get_by_test_id("upload-all").click()
    expect(phone.locator("#overall-text")).to_contain_text("Waiting for the network")
    expect(phone.locator(".photo-card").first).to_contain_text("Waiting for the network")
    shots(phone, "phone-offline", axe="the offline queue")
    phone.wait_for_timeout(3000)  # well past the back-off of three tries: still waiting, not failed
    expect(phone.locator('.photo-card[data-status="failed"]')).to_have_count(0)
    assert images(server, session_id) == []
    assert kept_records(phone) == 4

    phone.context.set_offline(False)
    expect(note).to_be_hidden()
    expect(phone.get_by_test_id("upload-done")).to_be_visible(timeout=30_000)
    expect(phone.get_by_test_id("upload-done")).to_contain_text("2 photos sent")
    expect(gallery(desktop)).to_have_count(2)
    assert kept_records(phone) == 0


def test_photos_survive_a_reload(server: Server, desktop_factory, phone_factory) -> None:
    desktop = desktop_factory(server)
    session_id = start_session(desktop, server, encounter="enc-phone-reload")
    phone = phone_factory()
    pair(phone, pairing_url(desktop))
    take_photos(phone, 3)
    phone.locator("#review-btn").click()
    wait_ready(phone, 3)
    phone.get_by_role("button", name="Details for photo 2").click()
    phone.get_by_test_id("photo-details").get_by_label("Label").fill("Before treatment")
    phone.get_by_role("button", name="Next photo").click()
    phone.wait_for_function(KEPT_LABELS, arg="Before treatment")  # written to IndexedDB

    # Reload with nothing sent yet: all three come back, label included, ready to upload.
    phone.reload()
    restored = phone.locator("#restored-note")
    expect(restored).to_have_text("3 photos kept from before the page reloaded, ready to upload.")
    cards = phone.locator(".photo-card")
    expect(cards).to_have_count(3)
    expect(cards.nth(1)).to_contain_text("Before treatment")
    expect(cards.nth(0).locator("img")).to_have_attribute("src", re.compile(r"^blob:"))
    shots(phone, "phone-restored", axe="the review screen after a reload")

    # Reload mid-queue: the photo store never answers, so the uploads hang; after the reload they resume.
    hung: list[Route] = []
    blocked = {"on": True}

    def store(route: Route) -> None:
        if blocked["on"]:
            hung.append(route)  # never answered: the reload cancels it
        else:
            route.continue_()

    phone.route("**/api/storage/**", store)
    phone.get_by_test_id("upload-all").click()
    expect(phone.locator('.photo-card[data-status="uploading"]')).to_have_count(2)  # two at a time
    blocked["on"] = False
    phone.reload()
    expect(restored).to_contain_text("Sending them now.")
    expect(phone.get_by_test_id("upload-done")).to_be_visible(timeout=30_000)
    expect(phone.get_by_test_id("upload-done")).to_contain_text("3 photos sent")
    expect(gallery(desktop)).to_have_count(3)
    registered = images(server, session_id)
    assert len(registered) == 3
    assert [i["metadata"].get("label") for i in registered].count("Before treatment") == 1
    assert kept_records(phone) == 0


# -- commit from the phone, error screens ---------------------------------------------------------------


def test_commit_from_the_phone(server_factory, desktop_factory, phone_factory) -> None:
    srv = server_factory(CONSULTCAM_PHONE_CAN_COMMIT="true")
    desktop = desktop_factory(srv)
    session_id = start_session(desktop, srv, encounter="enc-phone-commit")
    phone = phone_factory()
    pair(phone, pairing_url(desktop))
    take_photos(phone, 2)
    phone.get_by_test_id("upload-all").click()
    done = phone.get_by_test_id("upload-done")
    expect(done).to_be_visible(timeout=30_000)
    commit = phone.get_by_test_id("phone-commit")
    expect(commit).to_have_text("Commit 2 photos now")
    shots(phone, "phone-done-commit", axe="the sent screen with Commit now")

    # The phone checks the required details first and says plainly what is missing.
    commit.click()
    dialog = phone.get_by_test_id("phone-commit-dialog")
    expect(dialog).to_contain_text("2 photos need more details first")
    expect(dialog).to_contain_text("Photo 1: body site missing")
    expect(dialog.get_by_test_id("phone-commit-confirm")).to_be_hidden()
    shots(phone, "phone-commit-missing", axe="the commit check")
    dialog.get_by_role("button", name="OK").click()
    expect(dialog).to_be_hidden()

    # The server checks again (422 MetadataMissing): here the phone is made to believe all is well.
    ids = [i["id"] for i in images(srv, session_id)]
    set_body_site(srv, session_id, ids[0])

    def pretend_complete(route: Route) -> None:
        if route.request.method != "GET":
            route.continue_()
            return
        response = route.fetch()
        body = response.json()
        for image in body.get("images") or []:
            image["metadata"].setdefault(
                "bodySite", {"system": SNOMED_CT, "code": EYE_REGION, "display": "Eye region"}
            )
        route.fulfill(response=response, json=body)

    phone.route(f"**/api/sessions/{session_id}", pretend_complete)
    commit.click()
    confirm = dialog.get_by_test_id("phone-commit-confirm")
    expect(confirm).to_have_text("Commit 2 photos")
    expect(dialog).to_contain_text(PATIENT["name"])
    shots(phone, "phone-commit-confirm", axe="the commit confirmation")
    confirm.click()
    expect(dialog).to_contain_text("Not committed: 1 photo needs more details")
    expect(dialog).to_contain_text("Photo 2: body site missing")
    expect(dialog).to_contain_text("Add them on the desktop")
    dialog.get_by_role("button", name="OK").click()
    phone.unroute(f"**/api/sessions/{session_id}")
    assert srv.outbox() == []

    # Complete now: Commit runs, the phone and the desktop both end on the result.
    set_body_site(srv, session_id, ids[1])
    commit.click()
    confirm.click()
    final = phone.get_by_test_id("final-screen")
    expect(final).to_contain_text("Saved to the record", timeout=30_000)
    expect(desktop.locator("#session-status")).to_have_text("Committed")
    assert len(srv.outbox()) == 1


def test_phone_commit_is_off_by_default(server: Server, desktop_factory, phone_factory) -> None:
    desktop = desktop_factory(server)
    session_id = start_session(desktop, server, encounter="enc-phone-no-commit")
    phone = phone_factory()
    pair(phone, pairing_url(desktop))
    take_photos(phone, 1)
    phone.get_by_test_id("upload-all").click()
    expect(phone.get_by_test_id("upload-done")).to_be_visible()
    expect(phone.get_by_test_id("phone-commit")).to_be_hidden()
    # And the server refuses it anyway.
    status = phone.evaluate(POST_JSON, [f"/api/sessions/{session_id}/commit", {"all": True}])
    assert status == 403


def test_session_full_screen(server_factory, desktop_factory, phone_factory) -> None:
    srv = server_factory(CONSULTCAM_MAX_IMAGES="2")
    desktop = desktop_factory(srv)
    start_session(desktop, srv, encounter="enc-phone-full")
    phone = phone_factory()
    pair(phone, pairing_url(desktop))
    take_photos(phone, 2)
    expect(phone.get_by_test_id("camera-capture")).to_be_disabled()
    phone.get_by_test_id("upload-all").click()
    done = phone.get_by_test_id("upload-done")
    expect(done.get_by_role("heading", name="Session full")).to_be_visible(timeout=30_000)
    expect(done).to_contain_text("Ask the clinician to commit these photos on the desktop")
    expect(done.get_by_test_id("take-more")).to_be_hidden()
    shots(phone, "phone-session-full", axe="the session-full screen")


def test_offline_when_pairing(server: Server, desktop_factory, phone_factory) -> None:
    desktop = desktop_factory(server)
    start_session(desktop, server, encounter="enc-phone-offline-pair")
    phone = phone_factory()
    phone.route("**/api/pair", lambda route: route.abort("internetdisconnected"))
    phone.goto(pairing_url(desktop))
    screen = phone.get_by_test_id("error-screen")
    expect(screen.get_by_role("heading", name="This phone is offline")).to_be_visible()
    expect(screen).to_contain_text("Connect to the practice Wi-Fi, then tap Try again.")
    expect(phone.get_by_test_id("patient-banner")).to_be_hidden()
    shots(phone, "phone-error-offline", axe="the offline error")
    phone.unroute("**/api/pair")
    screen.get_by_role("button", name="Try again").click()
    expect(phone.get_by_test_id("consent-accept")).to_be_visible()


def test_committed_and_cancelled_sessions(server: Server, desktop_factory, phone_factory, browser) -> None:
    desktop = desktop_factory(server)
    session_id = start_session(desktop, server, encounter="enc-phone-cancelled")
    phone = phone_factory()
    pair(phone, pairing_url(desktop))
    take_photos(phone, 1)
    with server.api() as api:
        assert api.delete(f"/api/sessions/{session_id}").status_code == 204
    final = phone.get_by_test_id("final-screen")
    expect(final.get_by_role("heading", name="Session cancelled")).to_be_visible()
    expect(final).to_contain_text("ask the clinician for a new code")
    assert kept_records(phone) == 0
    shots(phone, "phone-cancelled", axe="the cancelled screen")


def test_screens_fit_and_hold_still(server: Server, desktop_factory, phone_factory, tmp_path: Path) -> None:
    """At both sizes: no horizontal scrolling, every control at least 44 px, and the review cards keep their
    place while photos are prepared and sent (no layout jump)."""
    desktop = desktop_factory(server)
    start_session(desktop, server, encounter="enc-phone-layout")
    phone = phone_factory()
    pair(phone, pairing_url(desktop))
    take_photos(phone, 1)
    files = [str(jpeg_file(tmp_path / f"p{i}.jpg", name)) for i, name in enumerate(["rocket.jpg", "cat.jpg"])]
    phone.get_by_test_id("file-input").set_input_files(files)
    cards = phone.locator(".photo-card")
    expect(cards).to_have_count(3)
    first = cards.first.bounding_box()
    wait_ready(phone, 3)
    assert cards.first.bounding_box() == first
    frames = [cards.nth(i).locator(".photo-frame").bounding_box() for i in range(3)]
    assert all(f and f["width"] == frames[0]["width"] and f["height"] == frames[0]["height"] for f in frames)
    for width, height in SIZES:
        phone.set_viewport_size({"width": width, "height": height})
        assert phone.evaluate("document.documentElement.scrollWidth") <= width
        small = phone.evaluate(
            """() => [...document.querySelectorAll('button, input, [role=radio], a')]
              .filter(el => el.offsetParent && !el.closest('.visually-hidden') && el.type !== 'file')
              .map(el => ({el: el.id || el.textContent.trim(), r: el.getBoundingClientRect()}))
              .filter(x => x.r.width < 44 || x.r.height < 44).map(x => x.el)"""
        )
        assert small == [], small
