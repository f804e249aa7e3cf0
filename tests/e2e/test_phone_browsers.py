"""The phone page in every engine a phone may run it in: Chromium, Firefox ESR and WebKitGTK
(phone_browsers.py).

Each engine takes the phone's main path (pair, consent, a photo with the camera and one from the files,
upload, the desktop shows both), keeps unsent photos in IndexedDB across reloads (WebKit refused Blobs there
in a private window, so photos lived in memory only), and is photographed at 360×740 on every screen
(test-artifacts/screenshots/phone-<engine>-<screen>.png) and checked with axe-core. Chromium also checks what
only it can stage: a camera whose first grabbed frame is black (its fake camera plays a file), photos kept as
Blobs by the earlier version, and storage too full to keep anything (DevTools' quota override).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Playwright, expect

from tests.e2e.a11y import AXE_JS
from tests.e2e.conftest import PATIENT, PHOTOS, SCREENSHOTS, Server, new_phone
from tests.e2e.flows import pair, pairing_url, phone_photo, start_session
from tests.e2e.harness import launch_chromium
from tests.e2e.phone_browsers import ChromiumPhone, Firefox, PhoneDriver, WebKit

pytestmark = pytest.mark.e2e

ENGINES = ("chromium", "firefox", "webkit")

#: How many records (photos + JPEGs) the phone keeps in IndexedDB; 0 when the database does not exist, -1
#: when it cannot be read.
KEPT = """() => new Promise((resolve) => {
  const open = indexedDB.open("consultcam-phone");
  open.onupgradeneeded = () => open.transaction.abort();  // not there: do not create it
  open.onerror = () => resolve(0);
  open.onsuccess = () => {
    const db = open.result;
    if (!db.objectStoreNames.contains("photos")) { db.close(); resolve(0); return; }
    const tx = db.transaction(["photos", "blobs"]);
    const a = tx.objectStore("photos").count(), b = tx.objectStore("blobs").count();
    tx.oncomplete = () => { db.close(); resolve(a.result + b.result); };
    tx.onabort = () => { db.close(); resolve(-1); };
  };
})"""
CARDS_READY = """n => { const cards = [...document.querySelectorAll(".photo-card")];
  return cards.length === n && cards.every(c => c.dataset.status === "ready"); }"""
SCREEN = "() => document.body.dataset.screen"


# -- the engines ------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def firefox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Firefox]:
    engine = Firefox(tmp_path_factory.mktemp("firefox"))
    yield engine
    engine.stop()


@pytest.fixture(scope="session")
def webkit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebKit]:
    engine = WebKit(tmp_path_factory.mktemp("webkit"))
    yield engine
    engine.stop()


@pytest.fixture(params=ENGINES)
def phone(request: pytest.FixtureRequest) -> Iterator[PhoneDriver]:
    """A 360×740 phone page in each engine in turn."""
    if request.param == "chromium":
        driver: PhoneDriver = ChromiumPhone(new_phone(request.getfixturevalue("browser")))
    else:
        driver = request.getfixturevalue(request.param).new_phone()
    yield driver
    driver.close()


# -- steps ------------------------------------------------------------------------------------------------


def open_and_consent(phone: PhoneDriver, url: str) -> None:
    """Open the pairing link, give consent with the defaults, and wait for the camera screen."""
    phone.goto(url)
    phone.wait_visible("#consent-accept")
    shoot(phone, "consent")
    axe(phone, "the consent screen")
    phone.click("#consent-accept")
    phone.wait_for(SCREEN + " === 'capture'", what="the camera screen after consent")


def shoot(phone: PhoneDriver, screen: str) -> None:
    phone.screenshot(SCREENSHOTS / f"phone-{phone.name}-{screen}.png")


def axe(phone: PhoneDriver, what: str) -> None:
    """axe-core in this engine (WCAG 2.x A/AA): an engine's own rendering can break contrast or labels.
    Chromium's screens are checked in test_phone_capture.py."""
    if phone.name == "chromium":
        return
    if phone.evaluate("() => typeof window.axe === 'undefined'"):
        phone.evaluate(f"() => {{ {AXE_JS.read_text()}\n}}")
    violations = phone.evaluate(
        "() => axe.run(document).then(r => r.violations.map(v => ({id: v.id, help: v.help,"
        " nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))})))"
    )
    assert violations == [], f"{phone.name}: axe on {what}: {violations}"


def new_session(server: Server, encounter: str) -> tuple[str, str]:
    """A capture session made through the API, as the desktop makes it: `(session id, pairing URL)`."""
    body = {"encounterId": encounter, "patient": {"id": f"pat-{encounter}", **PATIENT}}
    with server.api() as api:
        session = api.post("/api/sessions", json=body).raise_for_status().json()
    return session["id"], session["pairing"]["url"]


def images(server: Server, session_id: str) -> list[dict[str, Any]]:
    with server.api() as api:
        return api.get(f"/api/sessions/{session_id}/images").raise_for_status().json()["images"]


def gallery_shows(desktop: Any, n: int) -> None:
    items = desktop.get_by_test_id("gallery").locator("figure[data-image-id]")
    expect(items).to_have_count(n)
    for index in range(n):
        expect(items.nth(index)).to_have_attribute("data-loaded", "true")


# -- every engine -----------------------------------------------------------------------------------------


def test_main_path(server: Server, desktop_factory, phone: PhoneDriver, tmp_path: Path) -> None:
    """Pair, consent, one photo with the camera and one 12-megapixel file, upload: the desktop shows both,
    the file upright (EXIF Orientation 6 applied by this engine) and the camera's not black."""
    desktop = desktop_factory(server)
    session_id = start_session(desktop, server, encounter=f"enc-{phone.name}-main")
    open_and_consent(phone, pairing_url(desktop))
    expect(desktop.get_by_test_id("phone-status")).to_contain_text("Phone connected")

    phone.wait_for("() => document.querySelector('#viewfinder').dataset.state === 'live'", what="camera live")
    shoot(phone, "camera")
    phone.click("#shutter")
    phone.wait_for(
        "() => window.__consultcam.state.photos[0]?.status === 'ready'", what="the camera photo prepared"
    )
    assert phone.text("#photo-count") == "1 photo"

    picked = tmp_path / "IMG_4032.jpg"
    phone_photo(picked, "rocket.jpg", orientation=6)
    phone.set_files("#file-input", [picked])
    phone.wait_for(CARDS_READY, 2, what="two photos ready on the review screen")
    assert phone.evaluate(SCREEN) == "review"
    shoot(phone, "review")
    axe(phone, "the review screen")
    phone.click('[aria-label="Details for photo 1"]')
    phone.wait_for(SCREEN + " === 'details'", what="the details screen")
    phone.wait_visible(".mchips-view")
    phone.evaluate("() => document.querySelector('.mchips-view').scrollIntoView({block: 'center'})")
    shoot(phone, "details")
    phone.click("#details-back")
    phone.wait_for(SCREEN + " === 'review'", what="back on the review screen")

    phone.click("#upload-all")
    phone.wait_visible("[data-testid=upload-done]", timeout=30)
    assert phone.text("#done-title") == "2 photos sent"
    shoot(phone, "sent")

    gallery_shows(desktop, 2)
    items = desktop.get_by_test_id("gallery").locator("figure[data-image-id]")
    expect(items.filter(has_text="1536 × 2048")).to_have_count(1)  # the file, upright
    # Uploads run two at a time, so either may be registered first: tell them apart by shape.
    (file,) = [i for i in images(server, session_id) if i["height"] > i["width"]]
    (camera,) = [i for i in images(server, session_id) if i["id"] != file["id"]]
    assert (file["width"], file["height"]) == (1536, 2048)
    assert camera["quality"]["meanLuma"] > 30, f"{phone.name}: the camera photo is black: {camera['quality']}"


@pytest.mark.parametrize("phone", ["firefox", "webkit"], indirect=True)
def test_photos_kept_across_reloads(server: Server, phone: PhoneDriver, tmp_path: Path) -> None:
    """Unsent photos survive a reload (IndexedDB), and a reload in the middle of the upload sends each photo
    once: nothing lost, nothing twice, nothing left on the phone. (Chromium: test_phone_capture.py's
    test_photos_survive_a_reload, which holds the uploads back to reload exactly mid-queue.)"""
    session_id, url = new_session(server, f"enc-{phone.name}-reload")
    open_and_consent(phone, url)
    files = [shutil.copy(PHOTOS / name, tmp_path / name) for name in ("fundus-left-eye.jpg", "coffee.jpg")]
    phone.set_files("#file-input", [Path(f) for f in files])
    phone.wait_for(CARDS_READY, 2, what="two photos ready")
    phone.wait_for(f"() => ({KEPT})().then(n => n === 4)", what="both photos kept in IndexedDB")

    phone.reload()
    phone.wait_for(CARDS_READY, 2, what="both photos back after the reload")
    assert phone.text("#restored-note") == "2 photos kept from before the page reloaded, ready to upload."
    thumbnails = phone.evaluate("() => [...document.querySelectorAll('.photo-card img')].map(i => i.src)")
    assert [src.split(":")[0] for src in thumbnails] == ["blob", "blob"]
    shoot(phone, "restored")

    phone.click("#upload-all")
    phone.reload()  # mid-queue: the new page sends what the old one had not finished
    phone.wait_for(f"() => ({KEPT})().then(n => n === 0)", what="every photo sent, nothing kept", timeout=30)
    assert len(images(server, session_id)) == 2


# -- Chromium only ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def black_start_feed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A camera feed that starts black: 12 black frames, then 48 of the fundus photo (Chromium plays an
    MJPEG at 30 frames a second, in a loop: 0.4 s black in every 2 s)."""
    out = tmp_path_factory.mktemp("black-camera") / "camera.mjpeg"
    photo = "scale=-2:960,pad=1280:960:(ow-iw)/2:0:black,format=yuvj420p"
    subprocess.run(
        [
            shutil.which("ffmpeg") or "ffmpeg",
            *("-hide_banner", "-loglevel", "error", "-y"),
            *("-f", "lavfi", "-i", "color=c=black:s=1280x960:r=30:d=0.4"),
            *("-loop", "1", "-framerate", "30", "-t", "1.6", "-i", str(PHOTOS / "fundus-left-eye.jpg")),
            *("-filter_complex", f"[1:v]{photo}[p];[0:v]format=yuvj420p[b];[b][p]concat=n=2:v=1[v]"),
            *("-map", "[v]", "-r", "30", "-q:v", "3", str(out)),
        ],
        check=True,
    )
    return out


@pytest.fixture(scope="module")
def black_start_browser(playwright: Playwright, black_start_feed: Path) -> Iterator[Browser]:
    browser = launch_chromium(playwright, black_start_feed)
    yield browser
    browser.close()


def test_a_black_frame_is_grabbed_again(server: Server, black_start_browser: Browser) -> None:
    """The shutter pressed while the camera sends black: the photo is the picture that follows, not black.

    Without ImageCapture (as in WebKit and Firefox) a still is grabbed from the preview; the tap is timed
    from inside the page so the first grab is certainly a black frame."""
    _, url = new_session(server, "enc-black-frame")
    page = new_phone(black_start_browser)
    try:
        page.context.add_init_script("delete window.ImageCapture")  # WebKit and Firefox have none
        pair(page, url)
        expect(page.locator("#viewfinder")).to_have_attribute("data-state", "live")
        page.evaluate(
            """() => new Promise((resolve) => {
              const video = document.querySelector("#preview");
              const ctx = Object.assign(document.createElement("canvas"), {width: 32, height: 32})
                .getContext("2d", {willReadFrequently: true});
              const black = () => {
                ctx.drawImage(video, 0, 0, 32, 32);
                return ctx.getImageData(0, 0, 32, 32).data.every((v, i) => i % 4 === 3 || v <= 3);
              };
              let seenPicture = false;  // wait for the start of a black stretch, not its end
              const poll = () => {
                if (!black()) seenPicture = true;
                else if (seenPicture) { document.querySelector("#shutter").click(); resolve(); return; }
                requestAnimationFrame(poll);
              };
              poll();
            })"""
        )
        expect(page.get_by_test_id("photo-count")).to_have_text("1 photo")
        page.wait_for_function("() => window.__consultcam.state.photos[0]?.check", timeout=15_000)
        check = page.evaluate("window.__consultcam.state.photos[0].check")
        assert check["meanLuma"] > 30, check
        assert "dark" not in check["warnings"], check
        expect(page.get_by_test_id("quality-warning")).to_be_hidden()
    finally:
        page.context.close()


def test_photos_kept_by_the_previous_version(server: Server, phone_factory) -> None:
    """A phone that kept a photo as a Blob (the format before issue 10) still gets it back and sends it."""
    session_id, url = new_session(server, "enc-old-records")
    page = phone_factory()
    pair(page, url)
    jpeg = (PHOTOS / "coffee.jpg").read_bytes()
    page.evaluate(
        """([sessionId, bytes]) => new Promise((resolve, reject) => {
          const open = indexedDB.open("consultcam-phone", 1);
          open.onsuccess = () => {
            const tx = open.result.transaction(["photos", "blobs"], "readwrite");
            const now = Date.now();
            tx.objectStore("photos").put({id: "old-1", sessionId, seq: 1,
              capturedAt: new Date().toISOString(), filename: "coffee.jpg", width: 600, height: 400,
              metadata: {label: "Kept as a Blob"}, check: null, queued: false, imageId: null, savedAt: now});
            tx.objectStore("blobs").put({id: "old-1", sessionId, savedAt: now,
              blob: new Blob([new Uint8Array(bytes)], {type: "image/jpeg"})});
            tx.oncomplete = () => { open.result.close(); resolve(); };
            tx.onerror = () => reject(tx.error);
          };
        })""",
        [session_id, list(jpeg)],
    )
    page.reload()
    expect(page.locator("#restored-note")).to_have_text(
        "1 photo kept from before the page reloaded, ready to upload."
    )
    expect(page.locator(".photo-card")).to_contain_text("Kept as a Blob")
    page.get_by_test_id("upload-all").click()
    expect(page.get_by_test_id("upload-done")).to_contain_text("1 photo sent")
    (image,) = images(server, session_id)
    assert (image["width"], image["height"]) == (600, 400)
    assert image["metadata"]["label"] == "Kept as a Blob"


def test_storage_full_keeps_photos_in_memory_and_says_why(server: Server, phone_factory) -> None:
    """A phone whose storage is full: IndexedDB refuses the photo, the console says why in IndexedDB's own
    words (not "null" or a generic message), and the photo is kept in memory and still sent."""
    session_id, url = new_session(server, "enc-idb-error")
    page = phone_factory()
    warnings: list[str] = []
    page.on("console", lambda message: warnings.append(message.text) if message.type == "warning" else None)
    # 16 kB for the whole origin (Chrome DevTools Protocol, Storage.overrideQuotaForOrigin): no photo fits.
    page.context.new_cdp_session(page).send(
        "Storage.overrideQuotaForOrigin", {"origin": server.url, "quotaSize": 16 * 1024}
    )
    pair(page, url)
    page.get_by_test_id("file-input").set_input_files(str(PHOTOS / "coffee.jpg"))
    expect(page.locator('.photo-card[data-status="ready"]')).to_have_count(1)
    page.wait_for_function("() => !window.__consultcam.state.store.available")
    assert any(
        re.search(r"kept in memory only \(IndexedDB: QuotaExceededError(: .+)?\)", w) for w in warnings
    ), warnings
    page.get_by_test_id("upload-all").click()
    expect(page.get_by_test_id("upload-done")).to_contain_text("1 photo sent")
    assert len(images(server, session_id)) == 1
