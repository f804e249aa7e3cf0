"""The desktop image viewer and its edit canvas (issue 5): the lightbox opened from the gallery, zoom and
pan, previous/next, the caption; rotate, crop and annotations drawn on a canvas and saved as `edits`; the
server's burned-in JPEG (processing.render) agrees with what the canvas showed; clearing the edits gives
the original back; keyboard-only use; a 422 from the server shown; axe finds nothing in viewer or editor."""

from __future__ import annotations

import base64
import io
import json
import re

import httpx
import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Locator, Page, expect

from consultcam.images.processing.render import render
from tests.e2e.a11y import check_axe
from tests.e2e.conftest import PHOTOS, Server, shot
from tests.e2e.flows import add_photo, decode_jpeg

pytestmark = pytest.mark.e2e

YELLOW = np.array([255, 204, 0])
FOREARM = {"system": "http://snomed.info/sct", "code": "14975008", "display": "Forearm structure"}
EYE = {"system": "http://snomed.info/sct", "code": "371398005", "display": "Eye region structure"}


# -- helpers ---------------------------------------------------------------------------------------------


def photo(name: str, size: tuple[int, int]) -> bytes:
    with Image.open(PHOTOS / name) as src:
        image = src.convert("RGB").resize(size)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def new_session(server: Server, encounter: str) -> str:
    """A capture session created as the clinician, with consent recorded (when the server asks for it)."""
    with server.api() as client:
        created = client.post(
            "/api/sessions",
            json={
                "encounterId": encounter,
                "patient": {
                    "id": f"p-{encounter}",
                    "name": "Aroha Ngata",
                    "nhi": "ZZZ0016",
                    "birthDate": "1984-03-09",
                },
            },
        )
        assert created.status_code in (200, 201), created.text
        session_id = created.json()["id"]
        consent = client.put(
            f"/api/sessions/{session_id}/consent", json={"scope": "clinical", "givenBy": "patient"}
        )
        assert consent.status_code in (200, 404, 405), consent.text
    return session_id


def get_image(server: Server, session_id: str, image_id: str) -> dict:
    with server.api() as client:
        response = client.get(f"/api/sessions/{session_id}/images/{image_id}")
    assert response.status_code == 200, response.text
    return response.json()


def original_bytes(server: Server, session_id: str, image_id: str) -> bytes:
    """The stored original (the signed `urls.full`), never edited."""
    url = get_image(server, session_id, image_id)["urls"]["full"]
    response = httpx.get(url if url.startswith("http") else server.url + url, timeout=10)
    assert response.status_code == 200
    return response.content


def download(server: Server, session_id: str, image_id: str) -> bytes:
    with server.api() as client:
        response = client.get(f"/api/sessions/{session_id}/images/{image_id}/download")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/jpeg"
    return response.content


def session_page(
    desktop: Page, server: Server, photos: list[tuple[bytes, dict | None]], encounter: str
) -> str:
    """A session with `photos`, open on the desktop with every thumbnail loaded."""
    session_id = new_session(server, encounter)
    for data, metadata in photos:
        add_photo(server, session_id, data, metadata)
    desktop.goto(f"{server.url}/sessions/{session_id}")
    items = desktop.get_by_test_id("gallery").locator("figure[data-image-id]")
    expect(items).to_have_count(len(photos))
    for index in range(len(photos)):
        expect(items.nth(index)).to_have_attribute("data-loaded", "true")
    return session_id


def gallery_opener(desktop: Page, index: int) -> Locator:
    """The control on gallery item `index` that opens the viewer, once the gallery has one."""
    item = desktop.get_by_test_id("gallery").locator("figure[data-image-id]").nth(index)
    return item.get_by_role("button", name=re.compile(r"^(Open|View|Enlarge|Show)\b.*photo", re.I))


def open_viewer(desktop: Page, session_id: str, index: int = 0, *, read_only: bool = False) -> Locator:
    """Open the viewer on photo `index` the way a user does: click its gallery control. Until the gallery
    has one, the test opens it through the module with that photo's label focused as the opener."""
    opener = gallery_opener(desktop, index)
    if opener.count() and not read_only:
        opener.click()
    else:
        desktop.evaluate(
            """async ({sessionId, index, readOnly}) => {
                const { openImageViewer } = await import('/static/js/image-viewer.js');
                const gallery = window.__consultcam.gallery;
                const item = document.querySelectorAll('figure[data-image-id]')[index];
                item.querySelector('input, button').focus();
                window.__viewer = openImageViewer({
                  sessionId, images: gallery.images(), index, readOnly,
                  onSaved: (image) => gallery.upsert(image),
                });
            }""",
            {"sessionId": session_id, "index": index, "readOnly": read_only},
        )
    viewer = desktop.get_by_test_id("image-viewer")
    expect(viewer).to_be_visible()
    expect(viewer.get_by_test_id("viewer-stage")).to_have_attribute("data-state", "ready")
    expect(viewer.get_by_test_id("viewer-canvas")).to_be_visible()
    return viewer


def shown_width(viewer: Locator) -> float:
    box = viewer.get_by_test_id("viewer-canvas").bounding_box()
    assert box
    return box["width"]


def focused_name(page: Page) -> str:
    return " ".join(
        page.evaluate(
            "() => { const e = document.activeElement; if (!e) return '';"
            " return e.getAttribute('aria-label') || (e.labels && e.labels[0]?.textContent)"
            " || e.textContent || e.tagName; }"
        ).split()
    )


def tab_to(page: Page, name: str, limit: int = 40) -> None:
    """Press Tab until the focused control's name starts with `name`: proves it is reachable by keyboard."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if focused_name(page).startswith(name):
            return
    raise AssertionError(f"{name!r} was not reached with Tab")


def drag(
    page: Page, frame: Locator, start: tuple[float, float], end: tuple[float, float], steps: int = 8
) -> None:
    """Press at `start`, move to `end` and release; points are fractions of the element's box."""
    box = frame.bounding_box()
    assert box
    page.mouse.move(box["x"] + start[0] * box["width"], box["y"] + start[1] * box["height"])
    page.mouse.down()
    page.mouse.move(box["x"] + end[0] * box["width"], box["y"] + end[1] * box["height"], steps=steps)
    page.mouse.up()


def canvas_pixels(page: Page, locator: Locator) -> Image.Image:
    """The pixels of a <canvas> (at its own resolution, not the screen's), decoded."""
    data_url = locator.evaluate("canvas => canvas.toDataURL('image/png')")
    image = Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1])))
    return image.convert("RGB")


def yellow_mask(image: Image.Image, tolerance: int = 60) -> np.ndarray:
    pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    return np.abs(pixels - YELLOW).max(axis=2) <= tolerance


def is_yellow(image: Image.Image, x: float, y: float, radius: int = 2) -> bool:
    """Whether the picture shows the annotation yellow near (x, y) (fractions)."""
    px, py = round(x * (image.width - 1)), round(y * (image.height - 1))
    mask = yellow_mask(image)
    return bool(mask[max(0, py - radius) : py + radius + 1, max(0, px - radius) : px + radius + 1].any())


# -- tests -----------------------------------------------------------------------------------------------


def test_viewer_zoom_navigation_and_caption(server: Server, desktop_factory) -> None:
    desktop = desktop_factory(server)
    session_id = session_page(
        desktop,
        server,
        [
            (
                photo("rocket.jpg", (1600, 1067)),
                {
                    "label": "Lesion, left forearm",
                    "bodySite": FOREARM,
                    "laterality": "left",
                    "view": "close-up",
                },
            ),
            (photo("fundus-left-eye.jpg", (1200, 1200)), None),
            (photo("cat.jpg", (902, 600)), {"label": "Cat scratch"}),
        ],
        "enc-viewer-1",
    )
    viewer = open_viewer(desktop, session_id, 0)
    expect(viewer).to_have_attribute("open", "")
    expect(viewer.get_by_role("heading", name="Photo 1 of 3")).to_be_visible()
    caption = viewer.locator(".vw-caption")
    expect(caption).to_contain_text("Forearm structure")
    expect(caption).to_contain_text("Left")
    expect(caption).to_contain_text("Close-up")
    expect(caption).to_contain_text("1600 × 1067")
    expect(viewer.locator(".vw-subtitle")).to_have_text("Lesion, left forearm · Forearm structure, left")
    expect(viewer.get_by_test_id("viewer-canvas")).to_have_attribute(
        "aria-label", re.compile("Photo 1, Lesion")
    )
    stage = viewer.get_by_test_id("viewer-stage")
    fit = shown_width(viewer)
    assert 600 < fit <= 1280  # the photo fills the screen
    expect(viewer.get_by_role("button", name="Zoom out (−)")).to_be_disabled()
    shot(desktop, "desktop-viewer-nav")

    # Zoom in with the button, then the keyboard, the wheel and a double-click; out again; "Fit" resets.
    viewer.get_by_role("button", name="Zoom in (+)").click()
    expect(stage).to_have_attribute("data-zoomed", "true")
    once = shown_width(viewer)
    assert once == pytest.approx(fit * 1.25, rel=0.01)
    desktop.keyboard.press("+")
    assert shown_width(viewer) == pytest.approx(fit * 1.25**2, rel=0.01)
    desktop.keyboard.press("-")
    assert shown_width(viewer) == pytest.approx(once, rel=0.01)
    expect(viewer.locator(".vw-zoom-level")).to_have_text(re.compile(r"^\d+%$"))
    shot(desktop, "desktop-viewer-zoomed")

    # Zoomed, the arrow keys pan instead of changing photo.
    before = stage.evaluate("s => s.querySelector('canvas').style.transform")
    desktop.keyboard.press("ArrowDown")
    desktop.keyboard.press("ArrowRight")
    expect(viewer.get_by_role("heading", name="Photo 1 of 3")).to_be_visible()
    assert stage.evaluate("s => s.querySelector('canvas').style.transform") != before
    # Dragging pans too.
    transform = stage.evaluate("s => s.querySelector('canvas').style.transform")
    drag(desktop, stage, (0.5, 0.5), (0.7, 0.6))
    assert stage.evaluate("s => s.querySelector('canvas').style.transform") != transform

    viewer.get_by_role("button", name=re.compile("Fit to screen")).click()
    expect(stage).to_have_attribute("data-zoomed", "false")
    assert shown_width(viewer) == pytest.approx(fit, rel=0.01)

    box = stage.bounding_box()
    assert box
    desktop.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.4)
    desktop.mouse.wheel(0, -300)
    expect(stage).to_have_attribute("data-zoomed", "true")
    assert shown_width(viewer) > fit * 1.3
    desktop.keyboard.press("0")
    expect(stage).to_have_attribute("data-zoomed", "false")
    stage.dblclick(position={"x": box["width"] * 0.5, "y": box["height"] * 0.5})
    expect(stage).to_have_attribute("data-zoomed", "true")
    stage.dblclick(position={"x": box["width"] * 0.5, "y": box["height"] * 0.5})
    expect(stage).to_have_attribute("data-zoomed", "false")

    # Not zoomed: → and ← step through the photos; the buttons too; the ends are disabled.
    desktop.keyboard.press("ArrowRight")
    expect(viewer.get_by_role("heading", name="Photo 2 of 3")).to_be_visible()
    expect(viewer.locator(".vw-subtitle")).to_have_text("No label or body site yet")
    viewer.get_by_role("button", name="Next photo (photo 3)").click()
    expect(viewer.get_by_role("heading", name="Photo 3 of 3")).to_be_visible()
    expect(viewer.get_by_test_id("viewer-next")).to_be_disabled()
    expect(viewer.locator(".vw-subtitle")).to_have_text("Cat scratch")
    expect(caption).to_contain_text("902 × 600")
    desktop.keyboard.press("ArrowLeft")
    expect(viewer.get_by_role("heading", name="Photo 2 of 3")).to_be_visible()
    check_axe(desktop, "the image viewer")

    viewer.get_by_role("button", name="Close viewer").click()
    expect(viewer).to_have_count(0)


def test_expired_url_is_fetched_again(server: Server, desktop_factory) -> None:
    """Photos from events carry no URLs and signed URLs expire: the viewer asks the server again."""
    desktop = desktop_factory(server)
    session_id = session_page(desktop, server, [(photo("cat.jpg", (902, 600)), None)], "enc-viewer-url")
    desktop.evaluate(
        """async ({sessionId}) => {
            const { openImageViewer } = await import('/static/js/image-viewer.js');
            const images = window.__consultcam.gallery.images().map((image) => ({...image,
              urls: {full: '/api/files/expired?sig=bad', thumbnail: ''}}));
            openImageViewer({ sessionId, images, index: 0 });
        }""",
        {"sessionId": session_id},
    )
    viewer = desktop.get_by_test_id("image-viewer")
    expect(viewer.get_by_test_id("viewer-canvas")).to_be_visible()
    assert viewer.get_by_test_id("viewer-canvas").evaluate("c => [c.width, c.height]") == [902, 600]
    desktop.keyboard.press("Escape")
    expect(viewer).to_have_count(0)


def test_annotating_a_clinical_photo(server: Server, desktop_factory) -> None:
    """A fundus photo marked up as a GP would: a circle round the macula, an arrow and a label at the optic
    disc. Unrotated and uncropped, the canvas and Pillow put every mark on the same pixels."""
    desktop = desktop_factory(server)
    metadata = {"label": "Fundus, left eye", "bodySite": EYE, "laterality": "left", "view": "close-up"}
    session_id = session_page(
        desktop,
        server,
        [(photo("fundus-left-eye.jpg", (1411, 1411)), metadata), (photo("cat.jpg", (902, 600)), None)],
        "enc-fundus",
    )
    viewer = open_viewer(desktop, session_id, 0)
    expect(viewer.locator(".vw-subtitle")).to_have_text("Fundus, left eye · Eye region structure, left")
    shot(desktop, "desktop-viewer")

    viewer.get_by_test_id("viewer-edit").click()
    editor = viewer.get_by_test_id("image-editor")
    frame = editor.get_by_test_id("editor-canvas")
    editor.get_by_role("button", name="Circle", exact=True).click()
    drag(desktop, frame, (0.41, 0.41), (0.59, 0.59))
    editor.get_by_role("button", name="Arrow", exact=True).click()
    drag(desktop, frame, (0.12, 0.72), (0.17, 0.53))
    editor.get_by_role("button", name="Text", exact=True).click()
    box = frame.bounding_box()
    assert box
    desktop.mouse.click(box["x"] + 0.05 * box["width"], box["y"] + 0.74 * box["height"])
    editor.get_by_label("Label text").fill("Optic disc")
    editor.get_by_role("button", name="Add label").click()
    desktop.mouse.click(box["x"] + 0.6 * box["width"], box["y"] + 0.17 * box["height"])
    editor.get_by_label("Label text").fill("Macula: drusen?")
    editor.get_by_label("Label text").press("Enter")
    expect(editor.get_by_role("list", name="Annotations").locator("li")).to_have_count(4)
    editor.get_by_role("button", name="Select", exact=True).click()  # nothing selected: a clean picture
    desktop.mouse.click(box["x"] + 0.97 * box["width"], box["y"] + 0.03 * box["height"])
    shot(desktop, "desktop-editor")
    preview = canvas_pixels(desktop, frame.locator("canvas"))

    editor.get_by_test_id("editor-save").click()
    expect(editor).to_have_count(0)
    image_id = viewer.evaluate("() => document.querySelector('figure[data-image-id]').dataset.imageId")
    edits = get_image(server, session_id, image_id)["edits"]
    assert edits["rotation"] == 0
    assert edits["crop"] is None
    assert [a["type"] for a in edits["annotations"]] == ["circle", "arrow", "text", "text"]
    picture = decode_jpeg(download(server, session_id, image_id))
    assert picture.size == preview.size == (1411, 1411)
    server_mask, canvas_mask = yellow_mask(picture), yellow_mask(preview)
    overlap = (server_mask & canvas_mask).sum() / max(1, (server_mask | canvas_mask).sum())
    assert overlap > 0.6, f"the canvas and the server drew the marks differently (IoU {overlap:.2f})"
    for image in (picture, preview):
        assert is_yellow(image, 0.41, 0.5)  # the circle's left side
        assert is_yellow(image, 0.145, 0.625)  # the arrow's shaft


def test_annotate_rotate_crop_save_and_clear(server: Server, desktop_factory) -> None:
    desktop = desktop_factory(server)
    session_id = session_page(
        desktop,
        server,
        [(photo("rocket.jpg", (1600, 1067)), {"label": "Lesion, left forearm", "bodySite": FOREARM})],
        "enc-editor-1",
    )
    image_id = (
        desktop.get_by_test_id("gallery")
        .locator("figure[data-image-id]")
        .first.get_attribute("data-image-id")
    )
    assert image_id
    original = original_bytes(server, session_id, image_id)
    viewer = open_viewer(desktop, session_id, 0)
    viewer.get_by_test_id("viewer-edit").click()
    editor = viewer.get_by_test_id("image-editor")
    expect(editor).to_be_visible()
    frame = editor.get_by_test_id("editor-canvas")
    expect(editor.get_by_role("button", name="Arrow", exact=True)).to_have_attribute("aria-pressed", "true")

    # Rotate a quarter turn clockwise: the landscape photo stands up.
    editor.get_by_role("button", name="Rotate right").click()
    assert frame.locator("canvas").evaluate("c => [c.width, c.height]") == [1067, 1600]

    # Crop: drag the top-left handle in and the bottom-right handle up.
    editor.get_by_role("button", name="Crop", exact=True).click()
    drag(desktop, frame, (0, 0), (0.1, 0.1))
    drag(desktop, frame, (1, 1), (0.9, 0.85))
    assert float(editor.get_by_label("Left").input_value()) == pytest.approx(10, abs=0.6)
    assert float(editor.get_by_label("Height").input_value()) == pytest.approx(75, abs=0.6)
    shot(desktop, "desktop-editor-crop")

    # Annotate on the cropped picture: an arrow, a circle, a text label.
    editor.get_by_role("button", name="Arrow", exact=True).click()
    drag(desktop, frame, (0.2, 0.75), (0.45, 0.5))
    editor.get_by_role("button", name="Circle", exact=True).click()
    drag(desktop, frame, (0.5, 0.3), (0.8, 0.55))
    editor.get_by_role("button", name="Text", exact=True).click()
    box = frame.bounding_box()
    assert box
    desktop.mouse.click(box["x"] + 0.12 * box["width"], box["y"] + 0.1 * box["height"])
    words = editor.get_by_label("Label text")
    expect(words).to_be_focused()
    words.fill("Lesion 6 mm")
    words.press("Enter")
    items = editor.get_by_role("list", name="Annotations").locator("li")
    expect(items).to_have_count(3)
    expect(items.nth(2)).to_contain_text("Lesion 6 mm")

    # The canvas shows the marks in yellow where they were drawn.
    preview = canvas_pixels(desktop, frame.locator("canvas"))
    assert is_yellow(preview, 0.33, 0.62)  # on the arrow's shaft
    assert not is_yellow(preview, 0.9, 0.9)
    shot(desktop, "desktop-editor-rotated-cropped")

    # Select the circle and delete it, then undo that.
    editor.get_by_role("button", name="Select", exact=True).click()
    desktop.mouse.click(box["x"] + 0.65 * box["width"], box["y"] + 0.3 * box["height"])
    expect(items.nth(1).get_by_role("button").first).to_have_attribute("aria-pressed", "true")
    frame.press("Delete")
    expect(items).to_have_count(2)
    editor.get_by_role("button", name="Undo").click()
    expect(items).to_have_count(3)

    # Save: the server holds the edits, in the conventions of processing.validate_edits.
    editor.get_by_test_id("editor-save").click()
    expect(editor).to_have_count(0)
    expect(viewer).to_have_attribute("data-mode", "view")
    expect(viewer.locator(".vw-badges")).to_contain_text("Edited: rotated 90°, cropped, 3 annotations")
    edits = get_image(server, session_id, image_id)["edits"]
    assert edits["rotation"] == 90
    assert edits["crop"] == pytest.approx({"x": 0.1, "y": 0.1, "width": 0.8, "height": 0.75}, abs=0.02)
    kinds = [a["type"] for a in edits["annotations"]]
    assert kinds == ["arrow", "circle", "text"]
    arrow, circle, text = edits["annotations"]
    assert (arrow["x1"], arrow["y1"], arrow["x2"], arrow["y2"]) == pytest.approx(
        (0.2, 0.75, 0.45, 0.5), abs=0.01
    )
    assert (circle["x1"], circle["y1"], circle["x2"], circle["y2"]) == pytest.approx(
        (0.5, 0.3, 0.8, 0.55), abs=0.01
    )
    assert text["text"] == "Lesion 6 mm"
    assert (text["x1"], text["y1"]) == pytest.approx((0.12, 0.1), abs=0.01)
    assert all(a["color"] == "#ffcc00" for a in edits["annotations"])

    # The download is processing.render of those edits, and shows yellow where the marks were drawn.
    burned = download(server, session_id, image_id)
    assert burned == render(original, edits)
    picture = decode_jpeg(burned)
    assert picture.size == (round(1067 * 0.8), round(1600 * 0.75)) or abs(picture.width - 854) <= 2
    assert is_yellow(picture, 0.33, 0.62)
    assert is_yellow(picture, 0.5, 0.425)  # the circle's left edge
    assert not is_yellow(picture, 0.9, 0.9)

    # What the viewer's canvas shows is what Pillow burned in: same size, the marks in the same places.
    shown = canvas_pixels(desktop, viewer.get_by_test_id("viewer-canvas"))
    assert shown.size == picture.size
    server_mask, canvas_mask = yellow_mask(picture), yellow_mask(shown)
    overlap = (server_mask & canvas_mask).sum() / max(1, (server_mask | canvas_mask).sum())
    assert overlap > 0.6, f"the canvas and the server drew the marks differently (IoU {overlap:.2f})"
    difference = np.abs(np.asarray(shown, dtype=np.int16) - np.asarray(picture, dtype=np.int16)).mean()
    assert difference < 4, f"mean difference {difference:.1f} between the canvas and the server's JPEG"
    shot(desktop, "desktop-viewer-edited")

    # Editing again starts from the saved edits; "Clear edits" then Save restores the original.
    viewer.get_by_test_id("viewer-edit").click()
    expect(items).to_have_count(3)
    editor.get_by_role("button", name="Clear edits").click()
    expect(items).to_have_count(0)
    editor.get_by_test_id("editor-save").click()
    expect(editor).to_have_count(0)
    expect(viewer.locator(".vw-badges")).not_to_contain_text("Edited")
    assert get_image(server, session_id, image_id)["edits"] in (
        {},
        {"rotation": 0, "crop": None, "annotations": []},
    )
    assert download(server, session_id, image_id) == original
    assert viewer.get_by_test_id("viewer-canvas").evaluate("c => [c.width, c.height]") == [1600, 1067]


def test_keyboard_only(server: Server, desktop_factory) -> None:
    desktop = desktop_factory(server)
    session_id = session_page(
        desktop,
        server,
        [(photo("cat.jpg", (902, 600)), {"label": "Scratch"}), (photo("rocket.jpg", (960, 640)), None)],
        "enc-viewer-keys",
    )
    image_id = (
        desktop.get_by_test_id("gallery")
        .locator("figure[data-image-id]")
        .first.get_attribute("data-image-id")
    )
    # Open the first photo from the gallery with the keyboard.
    opener = gallery_opener(desktop, 0)
    expect(opener).to_have_count(1)
    opener.focus()
    desktop.keyboard.press("Enter")
    viewer = desktop.get_by_test_id("image-viewer")
    expect(viewer.get_by_test_id("viewer-stage")).to_have_attribute("data-state", "ready")

    # Focus starts on the photo; Tab walks the controls and stays inside the dialog.
    expect(viewer.get_by_test_id("viewer-stage")).to_be_focused()
    seen = []
    for _ in range(12):
        desktop.keyboard.press("Tab")
        seen.append(focused_name(desktop))
        assert desktop.evaluate("() => !!document.activeElement.closest('[data-testid=image-viewer]')"), seen
    expected = [
        "Next photo (photo 2)",
        "Zoom % Fit to screen",
        "Zoom in (+)",
        "Edit",
        "Download photo 1",
        "Close viewer",
        "Photo 1 of 2",
    ]
    assert [re.sub(r"\d+%\.", "%", name) for name in seen[:7]] == expected, seen
    assert seen[7] == seen[0]  # and round again

    # Keys: + zooms, 0 fits, → next photo, Escape closes and focus goes back to the opener.
    desktop.keyboard.press("+")
    expect(viewer.get_by_test_id("viewer-stage")).to_have_attribute("data-zoomed", "true")
    desktop.keyboard.press("0")
    desktop.keyboard.press("ArrowRight")
    expect(viewer.get_by_role("heading", name="Photo 2 of 2")).to_be_visible()
    desktop.keyboard.press("ArrowLeft")
    expect(viewer.get_by_role("heading", name="Photo 1 of 2")).to_be_visible()

    # Edit with the keyboard only: E, then an arrow placed with Enter, moved, deleted, placed again; a crop
    # typed into its fields; a text label; Save.
    desktop.keyboard.press("e")
    editor = viewer.get_by_test_id("image-editor")
    expect(editor.get_by_role("button", name="Select", exact=True)).to_be_visible()
    expect(editor.get_by_role("button", name="Arrow", exact=True)).to_be_focused()
    tab_to(desktop, "Photo being edited")
    desktop.keyboard.press("Enter")
    items = editor.get_by_role("list", name="Annotations").locator("li")
    expect(items).to_have_count(1)
    desktop.keyboard.press("Shift+ArrowUp")
    desktop.keyboard.press("Delete")
    expect(items).to_have_count(0)
    desktop.keyboard.press("Enter")
    expect(items).to_have_count(1)
    desktop.keyboard.press("]")  # rotate right
    desktop.keyboard.press("c")  # crop tool
    expect(editor.get_by_role("button", name="Crop", exact=True)).to_have_attribute("aria-pressed", "true")
    tab_to(desktop, "Width")
    desktop.keyboard.press("Control+a")
    desktop.keyboard.type("80")
    desktop.keyboard.press("Tab")  # the crop is applied when the field is left
    tab_to(desktop, "Photo being edited")
    desktop.keyboard.press("t")  # text tool
    desktop.keyboard.press("Enter")
    expect(editor.get_by_label("Label text")).to_be_focused()
    desktop.keyboard.type("Healing well")
    desktop.keyboard.press("Enter")
    expect(items).to_have_count(2)
    # Escape in the text box closes only the text box.
    desktop.keyboard.press("Enter")
    expect(editor.get_by_label("Label text")).to_be_focused()
    desktop.keyboard.press("Escape")
    expect(editor.get_by_label("Label text")).to_be_hidden()
    expect(editor).to_be_visible()
    check_axe(desktop, "the image editor")

    # Escape with changes asks before discarding; "Keep editing" keeps them.
    desktop.keyboard.press("Escape")
    discard = desktop.get_by_test_id("editor-discard")
    expect(discard).to_be_visible()
    check_axe(desktop, "the discard question")
    desktop.keyboard.press("Escape")
    expect(discard).to_have_count(0)
    expect(editor).to_be_visible()

    tab_to(desktop, "Save edits")
    desktop.keyboard.press("Enter")
    expect(editor).to_have_count(0)
    expect(viewer.get_by_test_id("viewer-edit")).to_be_focused()
    edits = get_image(server, session_id, image_id)["edits"]
    assert edits["rotation"] == 90
    assert edits["crop"]["width"] == pytest.approx(0.8, abs=0.001)
    assert [a["type"] for a in edits["annotations"]] == ["arrow", "text"]
    assert edits["annotations"][1]["text"] == "Healing well"

    # Escape closes the viewer; focus is back where it was before it opened.
    desktop.keyboard.press("Escape")
    expect(viewer).to_have_count(0)
    focused_photo = desktop.evaluate(
        "() => document.activeElement.closest('figure[data-image-id]')?.dataset.imageId"
    )
    assert focused_photo == image_id


def test_server_refusal_is_shown(server: Server, desktop_factory) -> None:
    """A 422 from the server (edits it cannot use) is said plainly, and the work is kept."""
    desktop = desktop_factory(server)
    session_id = session_page(desktop, server, [(photo("cat.jpg", (902, 600)), None)], "enc-editor-422")
    viewer = open_viewer(desktop, session_id, 0)
    viewer.get_by_test_id("viewer-edit").click()
    editor = viewer.get_by_test_id("image-editor")
    frame = editor.get_by_test_id("editor-canvas")
    drag(desktop, frame, (0.2, 0.2), (0.5, 0.5))

    def corrupt(route) -> None:
        body = json.loads(route.request.post_data or "{}")
        body["edits"]["rotation"] = 45  # what a buggy client might send: the real server refuses it
        route.continue_(post_data=json.dumps(body))

    desktop.route(re.compile(r"/api/sessions/[^/]+/images/[^/]+$"), corrupt)
    editor.get_by_test_id("editor-save").click()
    error = editor.get_by_test_id("editor-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("Not saved. The edits are not valid")
    expect(error).to_contain_text("rotation must be 0, 90, 180 or 270")
    expect(editor.get_by_role("list", name="Annotations").locator("li")).to_have_count(1)
    shot(desktop, "desktop-editor-refused")
    desktop.unroute(re.compile(r"/api/sessions/[^/]+/images/[^/]+$"))

    # Cancel after the failure: asked first, then nothing is changed on the server.
    editor.get_by_role("button", name="Cancel", exact=True).click()
    desktop.get_by_test_id("editor-discard").get_by_role("button", name="Discard changes").click()
    expect(editor).to_have_count(0)
    image_id = (
        desktop.get_by_test_id("gallery")
        .locator("figure[data-image-id]")
        .first.get_attribute("data-image-id")
    )
    assert image_id
    assert get_image(server, session_id, image_id)["edits"] in (
        {},
        {"rotation": 0, "crop": None, "annotations": []},
    )


def test_read_only_viewer_has_no_edit(server: Server, desktop_factory) -> None:
    desktop = desktop_factory(server)
    session_id = session_page(desktop, server, [(photo("cat.jpg", (902, 600)), None)], "enc-viewer-ro")
    viewer = open_viewer(desktop, session_id, 0, read_only=True)
    expect(viewer.get_by_test_id("viewer-edit")).to_be_hidden()
    desktop.keyboard.press("e")
    expect(viewer.get_by_test_id("image-editor")).to_have_count(0)
    desktop.keyboard.press("Escape")
    expect(viewer).to_have_count(0)
