"""Issue 15: what the phone page uploads is conforming by construction (upright, sRGB, no metadata), so the
server stores it as it came. A 12 MP camera JPEG with EXIF orientation 6, GPS and a comment goes through the
real resize worker (`resize.js` → `resize-worker.js`) in Chromium, and its output takes the lossless path of
`normalise`."""

from __future__ import annotations

import base64
import io
import mimetypes

import numpy as np
import pytest
from PIL import Image, ImageCms
from playwright.sync_api import Browser, BrowserContext, Route

from consultcam.images.processing.normalise import normalise
from tests.e2e.harness import ROOT
from tests.images.test_lossless import assert_kept
from tests.images.test_processing import BLUE, RED, corner_colours, near, phone_exif, photo

pytestmark = pytest.mark.e2e

STATIC = ROOT / "consultcam" / "web" / "static"
ORIGIN = "http://phone.test"


def serve_static(route: Route) -> None:
    path = route.request.url.removeprefix(ORIGIN + "/")
    if path == "":
        route.fulfill(body="<!doctype html><title>resize</title>", content_type="text/html")
        return
    file = (STATIC / path).resolve()
    if not (file.is_relative_to(STATIC) and file.is_file()):
        route.fulfill(status=404, body="not found")
        return
    route.fulfill(body=file.read_bytes(), content_type=mimetypes.guess_type(file.name)[0] or "text/plain")


def test_the_phones_resized_jpeg_is_stored_without_reencoding(
    browser: Browser, contexts: list[BrowserContext]
) -> None:
    camera = photo().resize((4032, 3024), Image.Resampling.LANCZOS)
    camera.paste(RED, (0, 0, 400, 400))
    camera.paste(BLUE, (4032 - 400, 0, 4032, 400))
    out = io.BytesIO()
    camera.save(out, "JPEG", quality=92, exif=phone_exif(6), comment=b"J Smith NHI ABC1234")

    context = browser.new_context()
    contexts.append(context)
    page = context.new_page()
    page.route(f"{ORIGIN}/**", serve_static)
    page.goto(f"{ORIGIN}/")
    uploaded = page.evaluate(
        """async (camera) => {
            const { resizePhoto } = await import("/js/resize.js");
            const bytes = Uint8Array.from(atob(camera), (c) => c.charCodeAt(0));
            const result = await resizePhoto(new Blob([bytes], { type: "image/jpeg" }));
            const data = new Uint8Array(await result.blob.arrayBuffer());
            let text = "";
            for (const byte of data) text += String.fromCharCode(byte);
            return btoa(text);
        }""",
        base64.b64encode(out.getvalue()).decode(),
    )
    upload = base64.b64decode(uploaded)

    result = normalise(upload, declared_content_type="image/jpeg")

    assert_kept(upload, result.jpeg)
    assert (result.width, result.height) == (1536, 2048)  # the phone turned it upright
    colours = corner_colours(result.jpeg)
    assert near(colours["top-right"], RED), colours
    assert near(colours["bottom-right"], BLUE), colours
    with Image.open(io.BytesIO(upload)) as phone:
        assert not {"exif", "comment"} & set(phone.info)
        # Chromium's encoder tags its JPEG with an sRGB profile: dropped, as sRGB is what untagged means.
        profile = ImageCms.ImageCmsProfile(io.BytesIO(phone.info["icc_profile"]))
        assert "srgb" in ImageCms.getProfileDescription(profile).lower()
        assert np.asarray(phone.convert("RGB")).shape == (2048, 1536, 3)
