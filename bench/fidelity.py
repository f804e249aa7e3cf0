"""Fidelity of the stored photo, end to end (issue 15, "Measure: Fidelity").

    .venv/bin/python bench/fidelity.py [--no-readme]

1. Ours: the original → the phone page's resize worker (`resizePhoto()`, in headless Chromium, as
   bench/capture_latency.py drives it) → the uploaded bytes → `inspect()` + `normalise()` → the stored bytes.
   Checked: the stored file decodes to exactly the uploaded pixels; PSNR and SSIM (luma) of the stored photo
   against the pristine original (upright, resized with Lanczos to the stored size); JPEG generations.
2. ClinicPro's path: the original → browser-image-compression in the same page (the options capture_latency
   uses) → stored as uploaded, as their documents describe (/work/shared/seeds: the phone PUTs to S3 through
   a presigned URL, the commit base64s the S3 object into a FHIR Media), and with a server re-encode as the
   issue frames it (modelled as our normaliser before issue 15: decode + re-encode at quality 88).
3. Uploads that take the normalising path (PNG, WebP, EXIF orientation 6, Display P3, over the edge cap, a
   12 MP camera original): the stored photo against a single encode of the pristine image (upright, sRGB,
   resized with Lanczos to the stored size, encoded once as `normalise` encodes), and both against the pristine.

Inputs: the real photos in tests/photos as they are, and 12 MP camera originals made from them as
bench/registration_cpu.py makes them (EXIF orientation 6, GPS, sensor-like noise, quality 92).
Medians over the photos go to bench/README.md; per-photo numbers to bench/.work/fidelity.json (not committed).
"""

from __future__ import annotations

import argparse
import base64
import inspect
import io
import json
import math
import platform
import statistics
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import PIL
from PIL import Image, ImageCms
from playwright.sync_api import Page, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.capture_latency import (  # noqa: E402
    BIC_VERSION,
    ensure_browser_image_compression,
    load_browser_image_compression,
    open_pages,
    resize_both,
)
from bench.readme import replace_section  # noqa: E402
from bench.registration_cpu import PHOTOS, camera_jpeg, fidelity, lossless_path, pixels, pristine  # noqa: E402
from consultcam.images.processing import normalise as module  # noqa: E402
from tests.e2e.harness import launch_chromium, start_server  # noqa: E402
from tests.images.test_lossless import DISPLAY_P3  # noqa: E402

WORK = ROOT / "bench" / ".work"
QUALITY: int = inspect.signature(module.normalise).parameters["jpeg_quality"].default
SRGB = ImageCms.createProfile("sRGB")


def decoded(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")


def as_shown(data: bytes) -> Image.Image:
    """A photo file's pixels as a colour-managed viewer shows them: converted to sRGB from an embedded ICC
    profile (rocket.jpg is tagged Adobe RGB (1998)), with no metadata left."""
    with Image.open(io.BytesIO(data)) as image:
        icc = image.info.get("icc_profile")
        shown = image.convert("RGB")
    if icc:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        converted = ImageCms.profileToProfile(
            shown, source, SRGB, renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC, outputMode="RGB"
        )
        assert converted is not None
        shown = converted
    shown.info = {}
    return shown


def store(data: bytes, content_type: str, lossless: bool = True) -> bytes:
    """What registration stores for these upload bytes: `inspect()` then `normalise()`; with `lossless`
    false, the normaliser as it was before issue 15 (every upload decoded and re-encoded)."""
    with lossless_path(lossless):
        module.inspect(data, declared_content_type=content_type)
        return module.normalise(data, declared_content_type=content_type).jpeg


def measured(stored: bytes, reference: Image.Image) -> dict[str, float]:
    with np.errstate(divide="ignore"):  # identical pixels: PSNR is infinite
        psnr, ssim = fidelity(stored, reference)
    return {"psnr": float(psnr), "ssim": float(ssim)}


def upright(stored: bytes, reference: Image.Image) -> bool:
    width, height = decoded(stored).size
    return abs(width / height - reference.width / reference.height) < 0.02


# ------------------------------------------------------------------------------------- 1 and 2: phone paths


def originals() -> list[tuple[str, str, bytes, Image.Image]]:
    """(input set, photo, original bytes, pristine upright image) for the phone paths."""
    found = []
    for path in PHOTOS:
        data = path.read_bytes()
        found.append(("tests/photos as they are", path.name, data, as_shown(data)))
    for path in PHOTOS:
        data, reference = camera_jpeg(path)
        found.append(("12 MP camera original", path.name, data, reference))
    return found


def phone_paths(phone: Page) -> list[dict[str, Any]]:
    """Each original through our resize worker and through browser-image-compression, then the server."""
    rows = []
    inputs = originals()
    resize_both(phone, inputs[-1][2], True)  # start both workers; not counted
    for index, (kind, name, data, reference) in enumerate(inputs):
        result = resize_both(phone, data, index % 2 == 0)
        ours = base64.b64decode(result["ours"]["b64"])
        theirs = base64.b64decode(result["theirs"]["b64"])
        phone_gens = {"ours": int(ours != data), "theirs": int(theirs != data)}
        paths = {
            "ours": (ours, store(ours, "image/jpeg"), "ours"),
            "ours_before": (ours, store(ours, "image/jpeg", lossless=False), "ours"),
            "clinicpro": (theirs, theirs, "theirs"),
            "clinicpro_reencoded": (theirs, store(theirs, "image/jpeg", lossless=False), "theirs"),
        }
        for path, (uploaded, stored, phone_side) in paths.items():
            exact = np.array_equal(pixels(stored), pixels(uploaded))
            rows.append(
                {
                    "set": kind,
                    "photo": name,
                    "path": path,
                    "original_bytes": len(data),
                    "uploaded_bytes": len(uploaded),
                    "stored_bytes": len(stored),
                    "stored_size": list(decoded(stored).size),
                    "exact": bool(exact),
                    "phones_agree": ours == theirs,
                    "generations": phone_gens[phone_side] + (0 if exact else 1),
                    "upright": upright(stored, reference),
                    "vs_uploaded": measured(stored, decoded(uploaded)),
                    "vs_pristine": measured(stored, reference),
                }
            )
    return rows


# ------------------------------------------------------------------------------------- 3: normalising path


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def orientation_6(image: Image.Image) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90° clockwise
    return encode(image.transpose(Image.Transpose.ROTATE_90), "JPEG", quality=92, exif=exif)


def display_p3(image: Image.Image) -> bytes:
    p3 = ImageCms.ImageCmsProfile(io.BytesIO(DISPLAY_P3))
    converted = ImageCms.profileToProfile(image, SRGB, p3, outputMode="RGB")
    assert converted is not None
    return encode(converted, "JPEG", quality=92, icc_profile=DISPLAY_P3)


#: name → (content type, the upload made from the pristine upright sRGB image, whether it is 12 MP)
UPLOADS: dict[str, tuple[str, Callable[[Image.Image], bytes], bool]] = {
    "PNG": ("image/png", lambda image: encode(image, "PNG"), False),
    "WebP (lossy, quality 90)": ("image/webp", lambda image: encode(image, "WEBP", quality=90), False),
    "JPEG, EXIF orientation 6": ("image/jpeg", orientation_6, False),
    "JPEG, Display P3": ("image/jpeg", display_p3, False),
    "JPEG over the edge cap (4032 × 3024)": (
        "image/jpeg",
        lambda image: encode(image, "JPEG", quality=92),
        True,
    ),
}


def normalising_paths() -> list[dict[str, Any]]:
    rows = []
    for path in PHOTOS:
        small = as_shown(path.read_bytes())
        large = pristine(path, (4032, 3024), noise=True)
        cases = [
            (name, content_type, make(large if big else small), large if big else small)
            for name, (content_type, make, big) in UPLOADS.items()
        ]
        data, reference = camera_jpeg(path)
        cases.append(("12 MP camera original (orientation 6, 4032 × 3024)", "image/jpeg", data, reference))
        for name, content_type, upload, reference in cases:
            stored = store(upload, content_type)
            size = decoded(stored).size
            single = module._encode(reference.resize(size, Image.Resampling.LANCZOS), QUALITY)
            rows.append(
                {
                    "upload": name,
                    "photo": path.name,
                    "upload_bytes": len(upload),
                    "stored_bytes": len(stored),
                    "single_bytes": len(single),
                    "stored_size": list(size),
                    "upright": upright(stored, reference),
                    "vs_single": measured(stored, decoded(single)),
                    "vs_pristine": measured(stored, reference),
                    "single_vs_pristine": measured(single, reference),
                }
            )
    return rows


# ------------------------------------------------------------------------------------- report


def med(rows: list[dict[str, Any]], *keys: str) -> float:
    values = []
    for row in rows:
        value: Any = row
        for key in keys:
            value = value[key]
        values.append(float(value))
    return float(statistics.median(values))


def db(value: float) -> str:
    return "∞" if math.isinf(value) else f"{value:.2f} dB"


PATHS = {
    "ours": "**consultcam**: resize worker → kept as uploaded",
    "ours_before": "consultcam before issue 15: resize worker → re-encoded (q88)",
    "clinicpro": "ClinicPro as documented: browser-image-compression → stored as uploaded",
    "clinicpro_reencoded": "ClinicPro + a server re-encode (modelled: decode, q88)",
}


def report(phone: list[dict[str, Any]], normalised: list[dict[str, Any]], env: dict[str, str]) -> str:
    photos = ", ".join(path.name for path in PHOTOS)
    lines = [
        "## Fidelity of the stored photo: encode once (issue 15)",
        "",
        "`bench/fidelity.py` follows each photo from the original to the bytes the server stores. Inputs: the",
        f"real photos in `tests/photos` ({photos}) as they are, and 12 MP camera originals made from them as",
        "`bench/registration_cpu.py` makes them (4032 × 3024, sensor-like noise, EXIF orientation 6 and GPS,",
        "quality 92), so the phone resize has real work. PSNR and SSIM are on luma (scikit-image, SSIM's 7 × 7",
        "window) against the **pristine** original: the image before any JPEG, upright, resized with Lanczos to",
        "the stored size (for the photos as they are: their decoded pixels in sRGB). Generations count the JPEG",
        "encodes after the original file. Medians over the photos.",
        "",
        f"Last run: {env['date']} on {env['machine']}, {env['chromium']}, Python {env['python']}, "
        f"Pillow {env['pillow']}.",
        "",
        "### The phone's photo: ours and ClinicPro's",
        "",
        "The original goes through the phone page's resize worker (`resizePhoto()`, `resize-worker.js`) and",
        f"through browser-image-compression {BIC_VERSION} (`{{maxSizeMB: 1, maxWidthOrHeight: 2048,",
        'useWebWorker: true, fileType: "image/jpeg"}`) in the same headless Chromium page, as',
        "`bench/capture_latency.py` drives them; the server's part is `inspect()` then `normalise()` on the",
        "uploaded bytes, in this process.",
        "",
        "| input | path | JPEG generations | stored | PSNR vs. pristine | SSIM vs. pristine "
        "| stored pixels = uploaded pixels |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind in dict.fromkeys(row["set"] for row in phone):
        for path, label in PATHS.items():
            rows = [row for row in phone if row["set"] == kind and row["path"] == path]
            gens = sorted({row["generations"] for row in rows})
            exact = sum(row["exact"] for row in rows)
            lines.append(
                f"| {kind} | {label} | {'/'.join(map(str, gens))} | {med(rows, 'stored_bytes') / 1024:.0f} KB "
                f"| {db(med(rows, 'vs_pristine', 'psnr'))} | {med(rows, 'vs_pristine', 'ssim'):.4f} "
                f"| {exact} of {len(rows)} |"
            )
    ours = [row for row in phone if row["path"] == "ours"]
    all_exact = all(row["exact"] and row["generations"] == 1 for row in ours)
    ours_psnr = [row["vs_uploaded"]["psnr"] for row in ours]
    kinds = list(dict.fromkeys(row["set"] for row in phone))

    def gain(kind: str, theirs: str) -> str:
        pairs = zip(
            [r for r in phone if r["set"] == kind and r["path"] == "ours"],
            [r for r in phone if r["set"] == kind and r["path"] == theirs],
            strict=True,
        )
        return f"{statistics.median(o['vs_pristine']['psnr'] - t['vs_pristine']['psnr'] for o, t in pairs):+.2f} dB"

    sooner = ", ".join(
        f"{o['photo']}: {t['uploaded_bytes'] / 1024:.0f} KB against our {o['uploaded_bytes'] / 1024:.0f} KB"
        for o, t in zip(ours, [r for r in phone if r["path"] == "clinicpro"], strict=True)
        if o["set"] == kinds[0] and not o["phones_agree"]
    )
    agree = {kind: sum(r["phones_agree"] for r in ours if r["set"] == kind) for kind in kinds}
    lines += [
        "",
        f"Ours: the stored file decodes to exactly the uploaded pixels for {sum(r['exact'] for r in ours)} of "
        f"{len(ours)} photos (PSNR against the upload: {db(min(ours_psnr))} at worst), one JPEG generation "
        f"each: **{'met' if all_exact else 'NOT met'}**. All stored photos upright: "
        f"{'yes' if all(r['upright'] for r in phone) else 'NO'}.",
        "",
        "| input | ours − ClinicPro as documented: PSNR vs. pristine | ours − ClinicPro + server re-encode "
        "| photos where both phones sent the same bytes |",
        "|---|---|---|---|",
        *(
            f"| {kind} | {gain(kind, 'clinicpro')} | {gain(kind, 'clinicpro_reencoded')} "
            f"| {agree[kind]} of {len([r for r in ours if r['set'] == kind])} |"
            for kind in kinds
        ),
        "",
        "(Per photo, median.) On a small photo already under 1 MB browser-image-compression re-encodes at",
        "quality 1.0, 0.95, 0.9025, … until the file is no larger than the original; Chromium rounds 0.9025 to",
        "libjpeg quality 90, our worker's first step, so where it gets that far both phones send the same",
        "bytes."
        + (
            f" Where it stops sooner it sends a larger file, closer to the original ({sooner}); a server"
            if sooner
            else ""
        )
        + (" re-encode then undoes that." if sooner else ""),
        "",
        "ClinicPro's documents in `shared/seeds` describe no server re-encode: the phone PUTs the",
        "browser-image-compression output to S3 through a presigned URL, registration records the S3 key in",
        "Redis, and the commit downloads the object and base64s it into a FHIR Media unchanged",
        '(`uploadImageToALEX`). That is the "as documented" row (one generation; the server never decodes',
        'it). The issue\'s framing, "then a server re-encode", is the last',
        f"row, modelled as our own normaliser before issue 15 (decode, re-encode at quality {QUALITY},",
        "`optimize`, 4:2:0), since ClinicPro documents none of its own. browser-image-compression starts at",
        "quality 1.0 and steps quality (× 0.95) and size (× 0.95) down together until ≤ 1 MB, so its output",
        "is larger and can be smaller than 2048 px; PSNR and SSIM compare at each output's own size.",
        "",
        "### Uploads that take the normalising path",
        "",
        "Against a **single encode** of the original: the pristine image, upright, sRGB, resized with Lanczos",
        f"to the stored size and encoded once as `normalise` encodes (quality {QUALITY}, `optimize`, 4:2:0):",
        "the best one-generation result. PNG, WebP, orientation 6 and Display P3 are made from the photos as",
        "they are; the two 12 MP rows from the 12 MP pristine (with its noise). The Display P3 JPEG is the",
        "pristine converted to a matrix/TRC profile with P3 primaries (as `tests/images/test_lossless.py`",
        "builds it) and tagged with it; `normalise` converts it back to sRGB.",
        "",
        "| upload | stored vs. single encode: PSNR | SSIM | stored vs. pristine: PSNR | SSIM "
        "| single encode vs. pristine: PSNR | SSIM |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in dict.fromkeys(row["upload"] for row in normalised):
        rows = [row for row in normalised if row["upload"] == name]
        lines.append(
            f"| {name} | {db(med(rows, 'vs_single', 'psnr'))} | {med(rows, 'vs_single', 'ssim'):.4f} "
            f"| {db(med(rows, 'vs_pristine', 'psnr'))} | {med(rows, 'vs_pristine', 'ssim'):.4f} "
            f"| {db(med(rows, 'single_vs_pristine', 'psnr'))} | {med(rows, 'single_vs_pristine', 'ssim'):.4f} |"
        )
    lines += [
        "",
        "A PNG is stored as exactly the single encode (its only JPEG). A lossy source (WebP, the camera's or a",
        "photo editor's JPEG) costs a second generation; the 12 MP rows also differ from the single encode by",
        "the resize filter (`normalise` decodes a 4032 px JPEG at 1/2 scale from its DCT coefficients, 2016 px,",
        "where the single encode is Lanczos from the pristine).",
        "",
        "Raw numbers of the last run: `bench/.work/fidelity.json` (not committed).",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-readme", action="store_true", help="print the results, do not write the README")
    args = parser.parse_args()
    ensure_browser_image_compression()
    WORK.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="consultcam-bench-") as tmp:
        server = start_server(Path(tmp))
        try:
            with sync_playwright() as pw:
                browser = launch_chromium(pw)
                _, page = open_pages(browser, server)
                load_browser_image_compression(page)
                print("phone paths: ours and browser-image-compression…", file=sys.stderr)
                phone = phone_paths(page)
                version = browser.version
                browser.close()
        finally:
            server.stop()
    print("normalising path…", file=sys.stderr)
    normalised = normalising_paths()
    env = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": platform.machine(),
        "chromium": f"Chromium {version}",
        "python": platform.python_version(),
        "pillow": PIL.__version__,
    }
    (WORK / "fidelity.json").write_text(
        json.dumps({"environment": env, "phone": phone, "normalising": normalised}, indent=2)
    )
    text = report(phone, normalised, env)
    print(text)
    if not args.no_readme:
        replace_section("fidelity", text)
    if not all(row["exact"] and row["generations"] == 1 for row in phone if row["path"] == "ours"):
        raise SystemExit("a phone JPEG was not stored as uploaded (one JPEG generation)")


if __name__ == "__main__":
    main()
