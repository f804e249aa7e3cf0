"""Capture-to-desktop latency and phone-side resize time, in real Chromium on localhost.

Issue 2 asks for, over at least 20 photos, p50 and p95 of:

* upload start → the desktop gallery shows the photo (target: p95 < 1 s on localhost), and
  registered → shown (the part the event stream and the desktop page add);
* the phone-side resize of a 12-megapixel photo (target: < 500 ms), compared with
  `browser-image-compression` (the library the seeds used) in the same browser: our time, output size and
  SSIM as ratios to theirs.

It starts `consultcam serve` on a free loopback port with a throw-away data directory, drives a phone page
(360×740, mobile emulation) and a desktop page (1280×800) in one Chromium, and writes bench/README.md.
`browser-image-compression` is installed from npm into bench/.work/ (gitignored) for the benchmark only.

    .venv/bin/python bench/capture_latency.py [--photos 24] [--no-readme]
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from playwright.sync_api import Browser, Page, sync_playwright
from skimage.metrics import structural_similarity

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.readme import replace_section
from tests.e2e.harness import Server, launch_chromium, start_server

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / ".work"
README = ROOT / "bench" / "README.md"
PHOTOS = ROOT / "tests" / "photos"
BIC_VERSION = "2.0.2"
BIC_JS = WORK / "node_modules" / "browser-image-compression" / "dist" / "browser-image-compression.js"
BIC_URL_PATH = "/__bench/browser-image-compression.js"
MAX_EDGE, MAX_BYTES = 2048, 1024 * 1024
SOURCES = ["fundus-left-eye.jpg", "rocket.jpg", "coffee.jpg", "cat.jpg"]
ORIENTATIONS = [6, 1, 8, 3]  # portrait phone (most common), landscape, and the two rarer ones
PHONE_UA = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Mobile Safari/537.36"
)


# ------------------------------------------------------------------------------------------------ photos


@dataclass
class Photo:
    path: Path
    upright: Image.Image  # what a viewer should show after applying EXIF orientation
    orientation: int


def make_photos(count: int, out_dir: Path) -> list[Photo]:
    """`count` 12-megapixel (4032×3024) JPEGs as a phone writes them: EXIF Orientation, GPS, and sensor-like
    noise so they encode to phone-like sizes (3–5 MB) rather than the few hundred KB of a smooth upscale."""
    rng = np.random.default_rng(20240)
    photos = []
    for index in range(count):
        source, orientation = SOURCES[index % len(SOURCES)], ORIENTATIONS[(index // len(SOURCES)) % 4]
        portrait = orientation in (6, 8)
        with Image.open(PHOTOS / source) as src:
            upright = src.convert("RGB").resize(
                (3024, 4032) if portrait else (4032, 3024), Image.Resampling.BICUBIC
            )
        pixels = np.asarray(upright, dtype=np.float32) + rng.normal(
            0, 5.0, (upright.height, upright.width, 1)
        )
        upright = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        stored = {6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270, 3: Image.Transpose.ROTATE_180}
        raw = upright.transpose(stored[orientation]) if orientation in stored else upright
        exif = Image.Exif()
        exif[0x0112] = orientation
        exif[0x010F] = "BenchPhone"
        exif.get_ifd(0x8825).update({1: "S", 2: (36.0, 50.0, 30.0), 3: "E", 4: (174.0, 45.0, 50.0)})
        path = out_dir / f"IMG_{index:04d}.jpg"
        raw.save(path, "JPEG", quality=92, exif=exif)
        photos.append(Photo(path, upright, orientation))
    return photos


# ------------------------------------------------------------------------------------------------ server


def ensure_browser_image_compression() -> Path:
    if not BIC_JS.exists():
        WORK.mkdir(parents=True, exist_ok=True)
        npm = shutil.which("npm")
        if not npm:
            raise SystemExit("npm is needed once to fetch browser-image-compression into bench/.work/")
        subprocess.run(
            [
                npm,
                "install",
                "--no-audit",
                "--no-fund",
                "--prefix",
                str(WORK),
                f"browser-image-compression@{BIC_VERSION}",
            ],
            check=True,
        )
    return BIC_JS


# ------------------------------------------------------------------------------------------------ stats


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def summary(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "p50": pct(values, 50), "p95": pct(values, 95), "max": max(values)}


def ssim(reference: Image.Image, output: Image.Image) -> float:
    """SSIM on luma (Wang et al. 2004, 7×7 window as skimage defaults) against the upright original
    resized with Lanczos to the output's size."""
    ref = np.asarray(reference.resize(output.size, Image.Resampling.LANCZOS).convert("L"))
    out = np.asarray(output.convert("L"))
    return float(structural_similarity(ref, out, data_range=255))


# ------------------------------------------------------------------------------------------------ pages


def open_pages(browser: Browser, server: Server) -> tuple[Page, Page]:
    desktop_ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    desktop = desktop_ctx.new_page()
    desktop.goto(f"{server.url}/login?token={server.token}")
    desktop.get_by_label("Patient name").fill("Bench Patient")
    desktop.get_by_label("NHI number").fill("ZZZ0016")
    desktop.get_by_test_id("start-session").click()
    desktop.wait_for_url("**/sessions/*")
    qr_text = desktop.get_by_test_id("pairing-url")
    desktop.wait_for_function("() => document.querySelector('#qr-url').textContent.includes('/m/')")
    pairing_url = qr_text.inner_text()

    phone_ctx = browser.new_context(
        viewport={"width": 360, "height": 740},
        is_mobile=True,
        has_touch=True,
        user_agent=PHONE_UA,
        permissions=["camera"],
    )
    bic = BIC_JS.read_text()
    phone_ctx.route(
        f"**{BIC_URL_PATH}",
        lambda route: route.fulfill(
            status=200, content_type="text/javascript", body=bic, headers={"Cache-Control": "no-store"}
        ),
    )
    phone = phone_ctx.new_page()
    phone.set_default_timeout(60_000)
    phone.goto(pairing_url)
    # Consent before the first photo (CONSULTCAM_CONSENT_REQUIRED, on by default), as tests/e2e/flows.py `pair`
    # gives it: the defaults, then the camera. Not part of what is measured.
    accept, shutter = phone.get_by_test_id("consent-accept"), phone.get_by_test_id("camera-capture")
    accept.or_(shutter).filter(visible=True).wait_for()
    if accept.is_visible():
        accept.click()
    shutter.wait_for()
    return desktop, phone


def bench_latency(desktop: Page, phone: Page, photos: list[Photo]) -> dict[str, Any]:
    """One photo at a time: pick it (resize not timed here), Upload all, wait for the desktop to show it."""
    file_input = phone.get_by_test_id("file-input")
    for page in (phone, desktop):  # room for every request's Resource Timing entry (250 by default)
        page.evaluate("performance.setResourceTimingBufferSize(100000)")
    for photo in photos:
        file_input.set_input_files(str(photo.path))
        phone.locator('.photo-card[data-status="ready"]').wait_for()
        phone.get_by_test_id("upload-all").click()
        phone.get_by_test_id("upload-done").wait_for()
        phone.get_by_test_id("take-more").click()
    timings = phone.evaluate("window.__consultcam.timings")
    ids = [t["imageId"] for t in timings]
    desktop.wait_for_function(
        "ids => ids.every(id => window.__consultcam.shownAt[id])", arg=ids, timeout=30_000
    )
    shown = desktop.evaluate("window.__consultcam.shownAt")
    start_to_shown = [shown[t["imageId"]] - t["uploadStart"] for t in timings]
    registered_to_shown = [shown[t["imageId"]] - t["registered"] for t in timings]
    upload = [t["registered"] - t["uploadStart"] for t in timings]
    return {
        "upload_start_to_shown_ms": summary(start_to_shown),
        "registered_to_shown_ms": summary(registered_to_shown),
        "upload_and_register_ms": summary(upload),
        "upload_bytes": summary([float(t["bytes"]) for t in timings]),
        "steps": request_steps(desktop, phone),
    }


#: Each request on the way, as Resource Timing names it: (page, initiatorType, a test of its URL).
STEPS: dict[str, tuple[str, str, str]] = {
    "phone: presign (POST …/uploads)": ("phone", "fetch", r"/uploads$"),
    "phone: PUT the photo": ("phone", "xmlhttprequest", r"/api/storage/"),
    "phone: register (POST …/images)": ("phone", "fetch", r"/images$"),
    "desktop: GET …/images/{id} (signed URLs)": ("desktop", "fetch", r"/images/[0-9a-f-]{36}$"),
    "desktop: the thumbnail": ("desktop", "img", r"\.thumb\.jpg\?"),
}
ENTRIES_JS = """pattern => performance.getEntriesByType('resource')
  .filter(e => new RegExp(pattern).test(e.name))
  .map(e => ({type: e.initiatorType, queued: e.requestStart - e.startTime,
              server: e.responseStart - e.requestStart, body: e.responseEnd - e.responseStart}))"""


def request_steps(desktop: Page, phone: Page) -> dict[str, dict[str, dict[str, float]]]:
    """Per request on the way from upload to gallery, from the pages' Resource Timing (same-origin, so
    every phase is exposed): `queued`, from the call to the request being sent (the browser's own work:
    for the PUT, handing the photo's bytes to the network service); `server`, from sent to the first byte
    back (the server's time on loopback); `body`, the rest of the response."""
    pages = {"phone": phone, "desktop": desktop}
    steps = {}
    for name, (page, initiator, pattern) in STEPS.items():
        entries = [e for e in pages[page].evaluate(ENTRIES_JS, pattern) if e["type"] == initiator]
        if entries:
            steps[name] = {
                phase: summary([e[phase] for e in entries]) for phase in ("queued", "server", "body")
            }
    return steps


RESIZE_BOTH = (Path(__file__).parent / "resize_compare.js").read_text()


def load_browser_image_compression(phone: Page) -> None:
    """Load browser-image-compression (served by the phone context's route, see `open_pages`) into the page."""
    phone.add_script_tag(url=f"{phone.url.split('/m/')[0]}{BIC_URL_PATH}")
    phone.wait_for_function("typeof imageCompression === 'function'")


def resize_both(phone: Page, data: bytes, ours_first: bool) -> dict[str, Any]:
    """Resize one photo's bytes (a JPEG) in the phone page with ours and with browser-image-compression
    (`resize_compare.js`); times in ms, sizes in bytes, each output as base64 (`ours.b64`, `theirs.b64`)."""
    limits = {"edge": MAX_EDGE, "bytes": MAX_BYTES, "lib": BIC_URL_PATH}
    args = {"b64": base64.b64encode(data).decode(), "oursFirst": ours_first, **limits}
    result: dict[str, Any] = phone.evaluate(RESIZE_BOTH, args)
    return result


def bench_resize(phone: Page, photos: list[Photo]) -> dict[str, Any]:
    load_browser_image_compression(phone)
    rows = []
    resize_both(phone, photos[0].path.read_bytes(), True)  # start both workers; not counted
    for index, photo in enumerate(photos):
        result = resize_both(phone, photo.path.read_bytes(), index % 2 == 0)
        ours_img = Image.open(io.BytesIO(base64.b64decode(result["ours"]["b64"])))
        theirs_img = Image.open(io.BytesIO(base64.b64decode(result["theirs"]["b64"])))
        ours_img.load()
        theirs_img.load()
        both_upright = (ours_img.height > ours_img.width) == (photo.upright.height > photo.upright.width)
        rows.append(
            {
                "photo": photo.path.name,
                "orientation": photo.orientation,
                "input_bytes": photo.path.stat().st_size,
                "ours_ms": result["ours"]["ms"],
                "ours_worker_ms": result["ours"]["workerMs"],
                "ours_decode_ms": result["ours"]["decodeMs"],
                "ours_encodes": result["ours"]["attempts"],
                "theirs_ms": result["theirs"]["ms"],
                "ours_bytes": result["ours"]["size"],
                "theirs_bytes": result["theirs"]["size"],
                "ours_size": list(ours_img.size),
                "theirs_size": list(theirs_img.size),
                "ours_ssim": ssim(photo.upright, ours_img),
                "theirs_ssim": ssim(photo.upright, theirs_img),
                "ours_vs_theirs_ssim": float(
                    structural_similarity(
                        np.asarray(ours_img.convert("L")),
                        np.asarray(theirs_img.resize(ours_img.size, Image.Resampling.LANCZOS).convert("L")),
                        data_range=255,
                    )
                ),
                "ours_upright": both_upright,
                "ours_exif": len(ours_img.getexif()),
            }
        )
    ratios = {
        "time": [r["ours_ms"] / r["theirs_ms"] for r in rows],
        "size": [r["ours_bytes"] / r["theirs_bytes"] for r in rows],
        "ssim": [r["ours_ssim"] / r["theirs_ssim"] for r in rows],
    }
    return {
        "ours_ms": summary([r["ours_ms"] for r in rows]),
        "ours_worker_ms": summary([r["ours_worker_ms"] for r in rows]),
        "ours_decode_ms": summary([r["ours_decode_ms"] for r in rows]),
        "theirs_ms": summary([r["theirs_ms"] for r in rows]),
        "ours_bytes": summary([float(r["ours_bytes"]) for r in rows]),
        "theirs_bytes": summary([float(r["theirs_bytes"]) for r in rows]),
        "ours_ssim": summary([r["ours_ssim"] for r in rows]),
        "theirs_ssim": summary([r["theirs_ssim"] for r in rows]),
        "ours_vs_theirs_ssim": summary([r["ours_vs_theirs_ssim"] for r in rows]),
        "ratio_median": {k: pct(v, 50) for k, v in ratios.items()},
        "ratio_geomean": {k: float(np.exp(np.mean(np.log(v)))) for k, v in ratios.items()},
        "all_upright": all(r["ours_upright"] for r in rows),
        "any_exif": any(r["ours_exif"] for r in rows),
        "max_long_edge": max(max(r["ours_size"]) for r in rows),
        "input_bytes": summary([float(r["input_bytes"]) for r in rows]),
        "rows": rows,
    }


# ------------------------------------------------------------------------------------------------ report


def write_readme(results: dict[str, Any]) -> None:
    lat, rz, env = results["latency"], results["resize"], results["environment"]

    def ms(s: dict[str, float]) -> str:
        return f"{s['p50']:.0f} ms | {s['p95']:.0f} ms | {s['max']:.0f} ms"

    def kb(s: dict[str, float]) -> str:
        return f"{s['p50'] / 1024:.0f} KB | {s['p95'] / 1024:.0f} KB | {s['max'] / 1024:.0f} KB"

    def ssim_row(s: dict[str, float]) -> str:
        return f"{s['p50']:.4f} | {s['p95']:.4f} | {s['max']:.4f}"

    upright = "all upright" if rz["all_upright"] else "NOT all upright"
    exif = "EXIF left in some" if rz["any_exif"] else "no EXIF in any"
    ok_latency = "met" if lat["upload_start_to_shown_ms"]["p95"] < 1000 else "NOT met"
    ok_fast = "met" if lat["upload_start_to_shown_ms"]["p95"] < 150 else "NOT met"
    ok_resize = "met" if rz["ours_ms"]["p95"] < 500 else "NOT met"
    r = rz["ratio_median"]
    steps_table = "\n".join(
        f"| {name} | "
        + " | ".join(f"{phases[p]['p50']:.0f} / {phases[p]['p95']:.0f}" for p in ("queued", "server", "body"))
        + " |"
        for name, phases in lat.get("steps", {}).items()
    )
    g = rz["ratio_geomean"]
    text = f"""## Capture to desktop, and the phone-side resize

`bench/capture_latency.py` (run with `make bench`, or `.venv/bin/python bench/capture_latency.py`) starts
`consultcam serve` on a loopback port with a fresh data directory and drives one Chromium with a phone page
(360×740, mobile emulation) and a desktop page (1280×800). Inputs: {rz["ours_ms"]["n"]} 12-megapixel JPEGs
(4032×3024, {rz["input_bytes"]["p50"] / 1e6:.1f} MB median) built from `tests/photos` the way a phone writes
them: EXIF Orientation 6, 1, 8 and 3, GPS tags, and sensor-like noise so they compress like camera photos.

Last run: {env["date"]} on {env["machine"]} ({env["cpus"]} CPUs), {env["chromium"]}, embedded defaults
(SQLite, folder store, in-process event bus).

### Capture-to-desktop latency (n = {lat["upload_start_to_shown_ms"]["n"]}, one photo at a time)

| measure | p50 | p95 | max |
|---|---|---|---|
| upload start → desktop gallery shows the photo | {ms(lat["upload_start_to_shown_ms"])} |
| phone: presign + PUT + register | {ms(lat["upload_and_register_ms"])} |
| registered on the phone → desktop gallery shows it | {ms(lat["registered_to_shown_ms"])} |
| bytes uploaded per photo | {kb(lat["upload_bytes"])} |

Where the time goes, per request (p50 / p95, ms; from the pages' Resource Timing): **queued** is the
browser's own work before the request leaves (for the PUT: handing the photo's bytes to Chromium's network
process), **server** from the request sent to the first byte back (consultcam's time, on loopback),
**body** the rest of the response.

| request | queued | server | body |
|---|---|---|---|
{steps_table}

"Shows" is the thumbnail's `load` event in the desktop gallery (the `image.added` event over SSE, then
`GET …/images/{{id}}` for the signed URL, then the thumbnail itself). Times are wall-clock
(`performance.timeOrigin + performance.now()`) in the two pages of the same browser.
Target p95 < 1 s from upload start: **{ok_latency}**. Aim (issue 15, "Encode once"): p95 < 150 ms:
**{ok_fast}** ({lat["upload_start_to_shown_ms"]["p95"]:.0f} ms; 276 ms before the phone's JPEG was kept as uploaded).

### Phone-side resize of a 12 MP photo (n = {rz["ours_ms"]["n"]})

Ours: `resize-worker.js` (a module Web Worker: `createImageBitmap(blob, {{imageOrientation: "from-image"}})`,
OffscreenCanvas, JPEG quality stepped down from 0.9 until ≤ 1 MB, then scaled down), called through
`resizePhoto()` as the phone page does. Theirs: `browser-image-compression` {BIC_VERSION} with
`{{maxSizeMB: 1, maxWidthOrHeight: 2048, useWebWorker: true, fileType: "image/jpeg"}}`, in the same page.
The order alternates per photo; one warm-up run of each is not counted.

| measure | p50 | p95 | max |
|---|---|---|---|
| ours: resize, end to end | {ms(rz["ours_ms"])} |
| ours: of which decode with orientation | {ms(rz["ours_decode_ms"])} |
| browser-image-compression | {ms(rz["theirs_ms"])} |
| ours: output size | {kb(rz["ours_bytes"])} |
| browser-image-compression: output size | {kb(rz["theirs_bytes"])} |
| ours: SSIM vs. the original | {ssim_row(rz["ours_ssim"])} |
| browser-image-compression: SSIM vs. the original | {ssim_row(rz["theirs_ssim"])} |

Ours ÷ browser-image-compression, per photo (median; geometric mean in brackets):

| ratio | value | reads as |
|---|---|---|
| resize time | {r["time"]:.2f} ({g["time"]:.2f}) | below 1 is faster |
| output size | {r["size"]:.2f} ({g["size"]:.2f}) | below 1 is smaller |
| SSIM vs. the original | {r["ssim"]:.4f} ({g["ssim"]:.4f}) | 1 is the same fidelity |

SSIM is computed on luma against the upright original resized with Lanczos to the output's size; the SSIM
between our output and theirs is {rz["ours_vs_theirs_ssim"]["p50"]:.4f} (median).
Our outputs: {upright}, {exif}, longest edge {rz["max_long_edge"]} px.
Target resize < 500 ms (p95): **{ok_resize}**.

Raw numbers of the last run: `bench/.work/capture_latency.json` (not committed).
"""
    replace_section("capture_latency", text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=24, help="photos per measurement (at least 20)")
    parser.add_argument(
        "--no-readme", action="store_true", help="print the results, do not write bench/README.md"
    )
    args = parser.parse_args()
    if not 20 <= args.photos <= 45:
        raise SystemExit("--photos must be between 20 and 45 (one session holds 50)")
    ensure_browser_image_compression()
    WORK.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="consultcam-bench-") as tmp_name:
        tmp = Path(tmp_name)
        print(f"making {args.photos} 12 MP photos…", file=sys.stderr)
        photos = make_photos(args.photos, tmp)
        server = start_server(tmp / "server")
        try:
            with sync_playwright() as pw:
                browser = launch_chromium(pw)
                desktop, phone = open_pages(browser, server)
                print("capture-to-desktop latency…", file=sys.stderr)
                latency = bench_latency(desktop, phone, photos)
                print("resize: ours and browser-image-compression…", file=sys.stderr)
                resize = bench_resize(phone, photos)
                version = browser.version
                browser.close()
        finally:
            server.stop()
    results = {
        "latency": latency,
        "resize": resize,
        "environment": {
            "date": datetime.now(UTC).strftime("%Y-%m-%d"),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "chromium": f"Chromium {version}",
            "python": platform.python_version(),
        },
    }
    (WORK / "capture_latency.json").write_text(json.dumps(results, indent=2))
    printable = {k: v for k, v in resize.items() if k != "rows"}
    print(json.dumps({"latency": latency, "resize": printable}, indent=2))
    if not args.no_readme:
        write_readme(results)
        print(f"wrote {README.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
