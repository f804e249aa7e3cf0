"""The desktop's review tools (issue 5): signing the phone out, the "not this patient" warning, consent,
badges for what is missing, multi-select with "Apply to N selected", the body-site search, the ZIP download,
uploads from this computer (drop and file picker), the check before commit, a commit started on the phone,
and keyboard-only use, with axe finding nothing on each screen."""

from __future__ import annotations

import base64
import io
import re
import zipfile
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle
from PIL import Image, ImageFilter
from playwright.sync_api import Page, expect

from tests.e2e.a11y import check_axe
from tests.e2e.conftest import PATIENT, PHOTOS, Server, shot
from tests.e2e.flows import (
    add_photo,
    decode_jpeg,
    pair,
    pairing_url,
    phone_photo,
    record_consent,
    start_session,
)

pytestmark = pytest.mark.e2e


# -- helpers ---------------------------------------------------------------------------------------------


def jpeg(name: str = "cat.jpg", *, blur: float = 0, size: tuple[int, int] = (1200, 900)) -> bytes:
    """A JPEG made from one of tests/photos, optionally Gaussian-blurred (blurry to the quality check)."""
    with Image.open(PHOTOS / name) as src:
        image = src.convert("RGB").resize(size)
    if blur:
        image = image.filter(ImageFilter.GaussianBlur(blur))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=88)
    return out.getvalue()


def images(server: Server, session_id: str) -> list[dict]:
    with server.api() as client:
        response = client.get(f"/api/sessions/{session_id}/images")
    assert response.status_code == 200, response.text
    return response.json()["images"]


def body_site(server: Server, word: str) -> dict[str, str]:
    """The coded body site whose preferred term contains `word`, as image metadata holds it."""
    with server.api() as client:
        sites = client.get("/api/terminology/body-sites").json()["bodySites"]
    site = next(s for s in sites if word.lower() in s["display"].lower())
    return {"system": site["system"], "code": site["code"], "display": site["display"]}


def tab_to(
    page: Page, accessible_name: str | re.Pattern[str], *, limit: int = 60, back: bool = False
) -> None:
    """Press Tab (or Shift+Tab) until the focused element has this accessible name: proves keyboard reach."""
    pattern = (
        accessible_name if isinstance(accessible_name, re.Pattern) else re.compile(re.escape(accessible_name))
    )
    for _ in range(limit):
        page.keyboard.press("Shift+Tab" if back else "Tab")
        name = page.evaluate(
            "() => { const e = document.activeElement; if (!e) return '';"
            " const by = e.getAttribute('aria-labelledby');"
            " return e.getAttribute('aria-label') || (by && document.getElementById(by)?.textContent)"
            " || (e.labels && e.labels[0]?.textContent) || e.placeholder || e.textContent || ''; }"
        )
        if pattern.search(" ".join(name.split())):
            return
    raise AssertionError(f"{accessible_name!r} was not reached with the keyboard")


def focus_is_visible(page: Page) -> bool:
    """The focused element (or the label that wraps it) draws a focus outline."""
    return page.evaluate(
        "() => { const e = document.activeElement;"
        " const targets = [e, e.closest('label, .choice, .g-select')];"
        " return targets.filter(Boolean).some(t => { const s = getComputedStyle(t);"
        " return s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2; }); }"
    )


def gallery_items(desktop: Page):
    return desktop.get_by_test_id("gallery").locator("figure[data-image-id]")


def session_with_photos(
    server: Server, desktop: Page, photos: list[tuple[bytes, dict | None]], **kw: Any
) -> str:
    """Start a session on the desktop, record consent and add `photos` through the API; wait until shown."""
    session_id = start_session(desktop, server, encounter=kw.get("encounter"))
    record_consent(server, session_id)
    for data, metadata in photos:
        add_photo(server, session_id, data, metadata)
    items = gallery_items(desktop)
    expect(items).to_have_count(len(photos))
    for index in range(len(photos)):
        expect(items.nth(index)).to_have_attribute("data-loaded", "true")
    return session_id


# -- the phone -------------------------------------------------------------------------------------------


def test_sign_phone_out(server: Server, desktop_factory, phone_factory) -> None:
    desktop = desktop_factory(server)
    session_id = start_session(desktop, server, encounter="enc-review-revoke")
    consent = desktop.get_by_test_id("consent")
    expect(consent).to_contain_text("Not recorded yet")
    expect(desktop.get_by_test_id("qr")).to_contain_text("Code expires in")
    check_axe(desktop, "the session waiting for a phone")
    shot(desktop, "desktop-review-waiting")
    phone = phone_factory()
    pair(phone, pairing_url(desktop))

    status = desktop.get_by_test_id("phone-status")
    expect(status).to_contain_text(re.compile(r"Phone connected · Chrome on Android phone · \d{1,2}:\d{2}"))
    # The consent the phone asked for arrives live, and says where it was given.
    expect(consent).to_contain_text("Clinical record only")
    expect(consent).to_contain_text("on the phone")
    shot(desktop, "desktop-review-phone-connected")

    desktop.get_by_test_id("revoke-phone").click()
    dialog = desktop.get_by_test_id("revoke-confirm")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("The phone stops working for this session at once")
    check_axe(desktop, "the sign-out confirmation")
    shot(desktop, "desktop-review-sign-out-confirm")
    dialog.get_by_role("button", name="Sign phone out").click()

    # The phone says so at once, and its credential no longer works.
    final = phone.get_by_test_id("final-screen")
    expect(final).to_be_visible()
    expect(final).to_contain_text(re.compile(r"disconnected|signed out", re.IGNORECASE))
    status_code = phone.evaluate("id => fetch('/api/sessions/' + id).then(r => r.status)", session_id)
    assert status_code == 401
    # The desktop is ready for another phone.
    expect(status).to_have_text("Phone signed out")
    expect(desktop.get_by_test_id("qr")).to_contain_text("Code expires in")
    shot(desktop, "desktop-review-phone-signed-out")


def test_wrong_patient_warning(server: Server, desktop_factory, phone_factory) -> None:
    desktop = desktop_factory(server)
    session_id = start_session(desktop, server, encounter="enc-review-wrong")
    phone = phone_factory()
    pair(phone, pairing_url(desktop))
    expect(desktop.get_by_test_id("phone-status")).to_contain_text("Phone connected")

    # "Not this patient?" on the phone: it signs itself out with the reason.
    code = phone.evaluate(
        "async id => { const token = (await fetch('/healthz')).headers.get('X-CSRF-Token');"
        " return (await fetch('/api/sessions/' + id + '/phone?reason=wrong-patient',"
        " {method: 'DELETE', headers: {'X-CSRF-Token': token}})).status; }",
        session_id,
    )
    assert code == 204
    warning = desktop.get_by_test_id("wrong-patient")
    expect(warning).to_be_visible()
    expect(warning).to_contain_text("The phone said this is not the right patient")
    expect(warning).to_contain_text("Next step")
    expect(desktop.get_by_test_id("phone-status")).to_have_text("Phone signed out: not this patient")
    # No new code is made until the clinician is sure of the patient.
    expect(desktop.get_by_test_id("qr")).not_to_contain_text("Code expires in")
    check_axe(desktop, "the wrong-patient warning")
    shot(desktop, "desktop-review-wrong-patient")

    warning.get_by_role("button", name="New code for this patient").click()
    expect(warning).to_be_hidden()
    expect(desktop.get_by_test_id("qr")).to_contain_text("Code expires in")


# -- consent ---------------------------------------------------------------------------------------------


def test_consent_recorded_on_desktop_reaches_the_record(
    server: Server, desktop_factory, tmp_path: Path
) -> None:
    desktop = desktop_factory(server)
    start_session(desktop, server, encounter="enc-review-consent")
    card = desktop.get_by_test_id("consent")
    expect(card).to_contain_text("Not recorded yet")

    desktop.get_by_test_id("consent-edit").click()
    dialog = desktop.get_by_test_id("consent-dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_role("radio", name=re.compile("Clinical record and teaching")).check()
    dialog.get_by_role("radio", name="Parent or guardian").check()
    check_axe(desktop, "the consent dialog")
    shot(desktop, "desktop-review-consent-dialog")
    dialog.get_by_test_id("consent-submit").click()
    expect(dialog).to_be_hidden()
    expect(card).to_contain_text("Clinical record and teaching")
    expect(card).to_contain_text("Parent or guardian")
    expect(card).to_contain_text("on this computer")
    desktop.reload()
    expect(card).to_contain_text("Clinical record and teaching")

    # A photo from this computer's files: consent is already recorded, so it goes straight up.
    photo = tmp_path / "lesion.jpg"
    photo.write_bytes(jpeg("cat.jpg"))
    desktop.get_by_test_id("desktop-file-input").set_input_files(str(photo))
    expect(gallery_items(desktop)).to_have_count(1)
    panel = desktop.get_by_test_id("metadata-panel")
    expect(panel.get_by_test_id("metadata-subject")).to_have_text("Photo 1")
    panel.get_by_label("Search body sites").fill("forearm")
    panel.get_by_role("button", name="Forearm", exact=True).click()
    expect(panel.get_by_test_id("metadata-status")).to_have_text("Saved")

    desktop.get_by_test_id("commit").click()
    desktop.get_by_test_id("commit-confirm").get_by_role("button", name="Commit 1 photo").click()
    expect(desktop.get_by_test_id("commit-result")).to_contain_text("1 photo saved")

    bundles = [p for p in server.outbox() if "enc-review-consent" in p.read_text()]
    assert len(bundles) == 1
    bundle = Bundle.model_validate_json(bundles[0].read_text())
    notes = " ".join(note.text for entry in bundle.entry for note in (entry.resource.note or []))
    assert "Consent to clinical photography given by the patient's guardian; agreed use: teaching." in notes


# -- gallery, selection, search --------------------------------------------------------------------------


def test_badges_multiselect_and_body_site_search(server: Server, desktop_factory) -> None:
    desktop = desktop_factory(server)
    session_id = session_with_photos(
        server,
        desktop,
        [(jpeg("cat.jpg"), None), (jpeg("coffee.jpg", blur=9), None), (jpeg("rocket.jpg"), None)],
    )
    items = gallery_items(desktop)
    for index in range(3):
        expect(items.nth(index).locator(".badge-missing")).to_have_text("Needs body site")
    expect(items.nth(1).locator(".badge-warn")).to_have_text("May be blurred")
    expect(items.nth(0).locator(".badge-warn")).to_have_count(0)
    expect(desktop.get_by_test_id("commit-readiness")).to_have_text("3 photos need a body site.")
    # Thumbnails sit in reserved 4:3 boxes, whatever their badges: nothing jumps as photos arrive.
    boxes = [items.nth(i).locator(".g-thumb").bounding_box() for i in range(3)]
    assert all(box and abs(box["height"] - box["width"] * 3 / 4) < 1 for box in boxes), boxes
    shot(desktop, "desktop-review-badges")

    # The thumbnail opens the viewer; Escape closes it and the keyboard is back on that photo.
    opener = items.nth(1).get_by_role("button", name="Open photo 2 in the viewer")
    opener.click()
    viewer = desktop.get_by_test_id("image-viewer")
    expect(viewer).to_be_visible()
    desktop.keyboard.press("Escape")
    expect(viewer).to_be_hidden()
    expect(opener).to_be_focused()

    # Tick photo 1, shift-click photo 2: both selected; the details panel edits them together.
    gallery = desktop.get_by_test_id("gallery")
    gallery.get_by_label("Select photo 1").check()
    gallery.get_by_label("Select photo 2").click(modifiers=["Shift"])
    expect(desktop.get_by_test_id("select-all")).to_have_js_property("indeterminate", True)
    panel = desktop.get_by_test_id("metadata-panel")
    expect(panel.get_by_test_id("metadata-subject")).to_have_text("2 photos selected")

    # The search narrows the 24 coded sites to the forearm.
    sites = panel.locator(".mchips-bodySite .chip")
    expect(sites).to_have_count(24)
    panel.get_by_label("Search body sites").fill("forea")
    expect(sites.filter(visible=True)).to_have_count(1)
    expect(sites.filter(visible=True)).to_have_text(re.compile("Forearm"))
    panel.get_by_role("button", name="Forearm", exact=True).click()
    apply = panel.get_by_test_id("metadata-apply")
    expect(apply).to_have_text("Apply to 2 photos")
    expect(panel.get_by_test_id("metadata-status")).to_have_text("Not applied yet")
    shot(desktop, "desktop-review-multiselect")
    apply.click()
    expect(panel.get_by_test_id("metadata-status")).to_have_text("Applied to 2 photos")

    forearm = body_site(server, "forearm")["code"]
    stored = images(server, session_id)
    by_position = sorted(stored, key=lambda image: image["capturedAt"] or image["createdAt"])
    assert [(image.get("metadata") or {}).get("bodySite", {}).get("code") for image in by_position] == [
        forearm,
        forearm,
        None,
    ]
    expect(items.nth(0).locator(".badge-missing")).to_have_count(0)
    expect(items.nth(0).locator(".g-chip")).to_have_text(["Forearm"])
    expect(items.nth(2).locator(".badge-missing")).to_have_text("Needs body site")
    expect(desktop.get_by_test_id("commit-readiness")).to_have_text("1 photo needs a body site.")

    # All three: the body site differs, so it says "Mixed" and is left alone unless changed.
    desktop.get_by_test_id("select-all").check()
    expect(panel.get_by_test_id("metadata-subject")).to_have_text("3 photos selected")
    expect(panel.locator(".mchips-bodySite .mchips-mixed")).to_be_visible()
    panel.get_by_label("Search body sites").fill("")
    check_axe(desktop, "the gallery with three photos selected")
    shot(desktop, "desktop-review-mixed")
    desktop.get_by_test_id("select-all").focus()
    desktop.keyboard.press("Escape")
    expect(desktop.get_by_test_id("select-all")).not_to_be_checked()
    expect(panel.get_by_test_id("metadata-subject")).to_have_text(re.compile(r"^Photo \d$"))


def test_download_all_as_zip(server: Server, desktop_factory) -> None:
    desktop = desktop_factory(server)
    forearm = body_site(server, "forearm")
    session_with_photos(
        server,
        desktop,
        [(jpeg("cat.jpg"), {"bodySite": forearm}), (jpeg("coffee.jpg"), None), (jpeg("rocket.jpg"), None)],
    )
    with desktop.expect_download() as info:
        desktop.get_by_test_id("download-all").click()
    download = info.value
    assert download.suggested_filename.endswith(".zip")
    with zipfile.ZipFile(download.path()) as archive:
        names = archive.namelist()
        assert len(names) == 3, names
        assert all(re.fullmatch(r"0[1-3]-.+\.jpg", name) for name in names), names
        assert names[0].startswith("01-")
        for name in names:
            image = decode_jpeg(archive.read(name))
            assert image.format == "JPEG"
            assert image.size == (1200, 900)


# -- uploads from this computer --------------------------------------------------------------------------


DROP_FILES = """async ({files}) => {
  const transfer = new DataTransfer();
  for (const f of files) {
    const bytes = Uint8Array.from(atob(f.data), c => c.charCodeAt(0));
    transfer.items.add(new File([bytes], f.name, {type: f.type}));
  }
  const zone = document.querySelector('[data-testid=drop-zone]');
  for (const type of ['dragenter', 'dragover', 'drop']) {
    zone.dispatchEvent(new DragEvent(type, {dataTransfer: transfer, bubbles: true, cancelable: true}));
  }
}"""


def test_desktop_upload_by_drop_and_file_picker(server_factory, desktop_factory, tmp_path: Path) -> None:
    server = server_factory(CONSULTCAM_MAX_IMAGES="4")
    desktop = desktop_factory(server)
    session_id = start_session(desktop, server, encounter="enc-review-upload")
    tray = desktop.get_by_test_id("upload-tray")

    # Drop a photo and a text file: consent is asked first, in the same dialog as ever.
    desktop.evaluate(
        DROP_FILES,
        {
            "files": [
                {
                    "name": "lesion.jpg",
                    "type": "image/jpeg",
                    "data": base64.b64encode(jpeg("cat.jpg")).decode(),
                },
                {
                    "name": "notes.txt",
                    "type": "text/plain",
                    "data": base64.b64encode(b"not a photo").decode(),
                },
            ]
        },
    )
    dialog = desktop.get_by_test_id("consent-dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Consent before adding photos")
    shot(desktop, "desktop-review-upload-consent")
    dialog.get_by_role("button", name="Record consent and add the photo").click()
    items = gallery_items(desktop)
    expect(items).to_have_count(1)
    expect(tray.locator(".up-row[data-state=failed]")).to_contain_text("notes.txt")
    expect(tray.locator(".up-row[data-state=failed]")).to_contain_text("Not a photo consultcam accepts")

    # The file picker: a 12-megapixel phone photo stored sideways (EXIF Orientation 6) with GPS.
    picked = tmp_path / "IMG_0001.jpg"
    phone_photo(picked, "rocket.jpg", orientation=6)
    desktop.get_by_test_id("desktop-file-input").set_input_files(str(picked))
    expect(items).to_have_count(2)
    expect(items.nth(1).locator(".g-source")).to_have_text("From this computer")

    # Errors are said per file, plainly: unreadable bytes (the server's 422), too large, session full.
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff" + b"\x00" * 4000)
    huge = tmp_path / "huge.heic"
    huge.write_bytes(b"\x00" * (11 * 1024 * 1024))
    desktop.get_by_test_id("desktop-file-input").set_input_files([str(broken), str(huge)])
    failed = tray.locator(".up-row[data-state=failed]")
    expect(failed.filter(has_text="broken.jpg")).to_contain_text("Not a readable photo")
    expect(failed.filter(has_text="huge.heic")).to_contain_text("Too large to send")
    three = [tmp_path / "a.jpg", tmp_path / "b.jpg", tmp_path / "c.jpg"]
    for path in three:
        path.write_bytes(jpeg("coffee.jpg"))
    desktop.get_by_test_id("desktop-file-input").set_input_files([str(p) for p in three])
    expect(items).to_have_count(4)
    expect(failed.filter(has_text="c.jpg")).to_contain_text("the session is full (4 photos)")
    check_axe(desktop, "the upload tray with errors")
    shot(desktop, "desktop-review-upload-errors")

    stored = images(server, session_id)
    assert len(stored) == 4
    assert {image["source"] for image in stored} == {"desktop"}
    portrait = next(image for image in stored if image["height"] > image["width"])
    assert max(portrait["width"], portrait["height"]) <= 2048
    assert portrait["sizeBytes"] <= 1024 * 1024


# -- commit -----------------------------------------------------------------------------------------------


def test_commit_blocked_until_required_details_are_given(server: Server, desktop_factory) -> None:
    desktop = desktop_factory(server)
    forearm = body_site(server, "forearm")
    session_id = session_with_photos(
        server,
        desktop,
        [
            (jpeg("cat.jpg"), {"bodySite": forearm, "label": "Lesion A"}),
            (jpeg("coffee.jpg"), None),
            (jpeg("rocket.jpg"), None),
        ],
        encounter="enc-review-gaps",
    )
    dialog = desktop.get_by_test_id("commit-confirm")
    panel = desktop.get_by_test_id("metadata-panel")

    # Checked on the page: the dialog lists which photos lack what, and offers no way to commit yet.
    desktop.get_by_test_id("commit").click()
    gaps = dialog.get_by_test_id("commit-gaps")
    expect(gaps).to_contain_text("2 photos need a body site")
    expect(gaps.locator(".gap-item")).to_have_count(2)
    expect(gaps.locator(".gap-item").first).to_contain_text("Photo 2")
    expect(gaps.locator(".gap-item").first).to_contain_text("Needs body site")
    expect(dialog.get_by_test_id("commit-confirm-button")).to_be_hidden()
    check_axe(desktop, "the commit dialog listing gaps")
    shot(desktop, "desktop-review-commit-gaps")

    # "Go to photo 2" puts the keyboard in that photo's body-site search.
    gaps.get_by_role("button", name="Go to photo 2").click()
    expect(dialog).to_be_hidden()
    expect(panel.get_by_test_id("metadata-subject")).to_have_text("Photo 2")
    expect(panel.get_by_label("Search body sites")).to_be_focused()
    desktop.keyboard.type("hand")
    desktop.keyboard.press("Enter")
    expect(panel.get_by_test_id("metadata-status")).to_have_text("Saved")

    desktop.get_by_test_id("commit").click()
    expect(gaps.locator(".gap-item")).to_have_count(1)
    gaps.get_by_role("button", name="Go to photo 3").click()
    expect(panel.get_by_label("Search body sites")).to_be_focused()
    desktop.keyboard.type("back")
    desktop.keyboard.press("Enter")
    expect(panel.get_by_test_id("metadata-status")).to_have_text("Saved")
    expect(desktop.get_by_test_id("commit-readiness")).to_have_text("Every photo has its body site.")

    # The server checks too: while this page is not listening, photo 1 loses its body site elsewhere.
    desktop.evaluate("window.__consultcam.events.pause()")
    first = sorted(images(server, session_id), key=lambda image: image["capturedAt"] or image["createdAt"])[0]
    with server.api() as client:
        cleared = client.patch(
            f"/api/sessions/{session_id}/images/{first['id']}", json={"metadata": {"bodySite": None}}
        )
    assert cleared.status_code == 200, cleared.text
    desktop.get_by_test_id("commit").click()
    dialog.get_by_role("button", name="Commit 3 photos").click()
    expect(gaps.locator(".gap-item")).to_have_count(1)
    expect(gaps.locator(".gap-item")).to_contain_text("Photo 1 · Lesion A")
    expect(gaps).to_contain_text("Nothing has been saved")
    assert [p for p in server.outbox() if "enc-review-gaps" in p.read_text()] == []
    shot(desktop, "desktop-review-commit-refused")
    desktop.evaluate("window.__consultcam.events.resume()")
    expect(desktop.get_by_test_id("live-status")).to_have_text("Live")
    gaps.get_by_role("button", name="Go to photo 1").click()
    desktop.keyboard.type("forearm")
    desktop.keyboard.press("Enter")
    expect(panel.get_by_test_id("metadata-status")).to_have_text("Saved")

    desktop.get_by_test_id("commit").click()
    expect(dialog.locator("#commit-dialog-facts")).to_contain_text("Clinical record only")
    shot(desktop, "desktop-review-commit-confirm")
    dialog.get_by_role("button", name="Commit 3 photos").click()
    result = desktop.get_by_test_id("commit-result")
    expect(result).to_contain_text(f"3 photos saved to {PATIENT['name']}'s record")
    bundles = [p for p in server.outbox() if "enc-review-gaps" in p.read_text()]
    assert len(bundles) == 1
    media = [entry.resource for entry in Bundle.model_validate_json(bundles[0].read_text()).entry]
    assert all(resource.bodySite is not None for resource in media)
    shot(desktop, "desktop-review-committed")


def test_commit_started_on_the_phone_is_shown(server_factory, desktop_factory, phone_factory) -> None:
    server = server_factory(CONSULTCAM_PHONE_CAN_COMMIT="true", CONSULTCAM_REQUIRED_METADATA="")
    desktop = desktop_factory(server)
    session_id = start_session(desktop, server, encounter="enc-review-phone-commit")
    phone = phone_factory()
    pair(phone, pairing_url(desktop))
    expect(desktop.get_by_test_id("phone-status")).to_contain_text("Phone connected")
    add_photo(server, session_id, jpeg("coffee.jpg"))
    expect(gallery_items(desktop)).to_have_count(1)
    expect(desktop.get_by_test_id("commit-readiness")).to_have_text("Ready to commit.")

    # As the phone page's script does: its CSRF token (X-CSRF-Token, consultcam/web/guard.py) with the call.
    status = phone.evaluate(
        "async id => { const token = (await fetch('/healthz')).headers.get('X-CSRF-Token');"
        " return (await fetch('/api/sessions/' + id + '/commit', {method: 'POST', headers:"
        " {'Content-Type': 'application/json', 'X-CSRF-Token': token}, body: '{\"all\": true}'})).status; }",
        session_id,
    )
    assert status == 200
    result = desktop.get_by_test_id("commit-result")
    expect(result).to_contain_text("1 photo saved")
    expect(result).to_contain_text("Committed from the phone")
    expect(desktop.locator("#session-status")).to_have_text("Committed")
    check_axe(desktop, "the session committed from the phone")
    shot(desktop, "desktop-review-committed-from-phone")


# -- keyboard --------------------------------------------------------------------------------------------


def test_keyboard_only_metadata_editing(server: Server, desktop_factory) -> None:
    desktop = desktop_factory(server)
    session_id = session_with_photos(server, desktop, [(jpeg("cat.jpg"), None), (jpeg("coffee.jpg"), None)])
    panel = desktop.get_by_test_id("metadata-panel")
    desktop.locator("body").click(position={"x": 5, "y": 300})

    # From the top of the page to photo 1, then on into the details panel's body-site search.
    tab_to(desktop, "Open photo 1 in the viewer")
    assert focus_is_visible(desktop)
    expect(panel.get_by_test_id("metadata-subject")).to_have_text("Photo 1")
    tab_to(desktop, "Search body sites")
    assert focus_is_visible(desktop)
    desktop.keyboard.type("forearm")
    desktop.keyboard.press("Enter")
    expect(panel.get_by_test_id("metadata-status")).to_have_text("Saved")
    # Back to the side chips: arrows move, Space chooses.
    tab_to(desktop, re.compile(r"^(Left|Right|Bilateral|Not applicable)$"), back=True)
    desktop.keyboard.press("ArrowRight")
    desktop.keyboard.press("Space")
    expect(panel.get_by_role("button", name="Right", exact=True)).to_have_attribute("aria-pressed", "true")
    expect(panel.get_by_test_id("metadata-status")).to_have_text("Saved")

    # Both photos by keyboard: the gallery is one Tab stop; Space ticks, arrow keys move to the next photo.
    tab_to(desktop, "Select photo 1", back=True)
    desktop.keyboard.press("Space")
    assert focus_is_visible(desktop)
    desktop.keyboard.press("ArrowRight")
    expect(desktop.get_by_test_id("gallery").get_by_label("Select photo 2")).to_be_focused()
    desktop.keyboard.press("Space")
    expect(panel.get_by_test_id("metadata-subject")).to_have_text("2 photos selected")
    tab_to(desktop, re.compile(r"^(Overview|Close-up|Dermoscopy)$"))
    desktop.keyboard.press("ArrowRight")
    desktop.keyboard.press("Enter")
    tab_to(desktop, "Apply to 2 selected photos")
    desktop.keyboard.press("Enter")
    expect(panel.get_by_test_id("metadata-status")).to_have_text("Applied to 2 photos")
    shot(desktop, "desktop-review-keyboard")

    stored = sorted(images(server, session_id), key=lambda image: image["capturedAt"] or image["createdAt"])
    assert stored[0]["metadata"]["bodySite"]["display"].lower().startswith("forearm")
    assert stored[0]["metadata"]["laterality"] == "right"
    assert [image["metadata"].get("view") for image in stored] == ["close-up", "close-up"]
    assert "bodySite" not in stored[1]["metadata"]

    # Escape closes a dialog and gives focus back to what opened it.
    tab_to(desktop, re.compile(r"^Commit 2 photos$"), limit=120)
    desktop.keyboard.press("Enter")
    dialog = desktop.get_by_test_id("commit-confirm")
    expect(dialog).to_be_visible()
    desktop.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(desktop.get_by_test_id("commit")).to_be_focused()
    check_axe(desktop, "the session page with two photos")
