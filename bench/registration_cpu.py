"""Registration CPU per photo, kept as uploaded (issue 15) ÷ re-encoded (before), in one process.

    .venv/bin/python bench/registration_cpu.py [--runs 15] [--no-readme]

What registration runs on the photo's bytes, `inspect()` then `normalise()` (header check, verification,
storing form, thumbnail, quality figures), timed in CPU seconds (`time.process_time`, this process only,
so other work on the machine moves it less than wall-clock time). "Before" is the same code with the
lossless path switched off (`normalise._kept_as_uploaded` returning None), i.e. the decode, resize,
orientation, sRGB conversion and quality-88 re-encode of every upload. The two alternate per photo and
round; the ratio is taken per round.

Inputs, from the real photos in tests/photos (= shared/photos):
- phone JPEGs as the consultcam phone page makes them: long edge 2048 px (Lanczos), JPEG quality 90 with
  4:2:0 chroma (canvas.convertToBlob at 0.9), no metadata;
- 12 MP camera originals: 4032 × 3024, sensor-like noise, EXIF orientation 6 with GPS, quality 92.

Fidelity: the stored photo's luma against the pristine source (the enlarged photo before any JPEG, turned
upright and sized as stored) as PSNR and SSIM; for the phone JPEGs also whether the stored file decodes to
exactly the uploaded pixels. Writes its section of bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import numpy as np
import PIL
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.readme import replace_section  # noqa: E402
from consultcam.images.processing import normalise as module  # noqa: E402

PHOTOS = sorted((ROOT / "tests" / "photos").glob("*.jpg"))
TARGET = 0.3
KEPT = module._kept_as_uploaded


def pristine(path: Path, size: tuple[int, int], noise: bool) -> Image.Image:
    with Image.open(path) as source:
        image = source.convert("RGB").resize(size, Image.Resampling.LANCZOS)
    if noise:  # a camera sensor's grain, so the original compresses like a real one
        grain = np.random.default_rng(15).normal(0, 4, (size[1], size[0], 3))
        image = Image.fromarray(np.clip(np.asarray(image) + grain, 0, 255).astype(np.uint8))
    return image


def phone_jpeg(path: Path) -> tuple[bytes, Image.Image]:
    with Image.open(path) as source:
        width, height = source.size
    scale = 2048 / max(width, height)
    image = pristine(path, (round(width * scale), round(height * scale)), noise=False)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90, subsampling="4:2:0")
    return out.getvalue(), image


def camera_jpeg(path: Path) -> tuple[bytes, Image.Image]:
    image = pristine(path, (4032, 3024), noise=True)
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "Apple"
    exif.get_ifd(0x8825).update({1: "S", 2: (36.0, 50.0, 52.0), 3: "E", 4: (174.0, 45.0, 40.0)})
    out = io.BytesIO()
    image.save(out, "JPEG", quality=92, exif=exif)
    return out.getvalue(), image.transpose(Image.Transpose.ROTATE_270)


def register(data: bytes) -> module.NormalisedImage:
    module.inspect(data, declared_content_type="image/jpeg")
    return module.normalise(data, declared_content_type="image/jpeg")


@contextlib.contextmanager
def lossless_path(on: bool) -> Iterator[None]:
    """With `on` false, `normalise` runs as before issue 15: every upload decoded and re-encoded."""
    module._kept_as_uploaded = KEPT if on else (lambda *args: None)  # type: ignore[assignment]
    try:
        yield
    finally:
        module._kept_as_uploaded = KEPT


def cpu(data: bytes, lossless: bool) -> tuple[float, module.NormalisedImage]:
    with lossless_path(lossless):
        started = time.process_time()
        result = register(data)
        return time.process_time() - started, result


def luma(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("L"), dtype=np.float64)


def fidelity(stored: bytes, reference: Image.Image) -> tuple[float, float]:
    with Image.open(io.BytesIO(stored)) as image:
        got = image.convert("RGB")
    if got.size != reference.size:
        reference = reference.resize(got.size, Image.Resampling.LANCZOS)
    a, b = luma(got), luma(reference)
    return peak_signal_noise_ratio(b, a, data_range=255), structural_similarity(b, a, data_range=255)


def pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def measure(inputs: list[tuple[bytes, Image.Image]], runs: int) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {k: [] for k in ("new", "old", "ratio", "psnr", "ssim", "opsnr", "ossim")}
    found["exact"], found["full"] = [], []
    for data, reference in inputs:
        cpu(data, True), cpu(data, False)  # warm-up
        for round_ in range(runs):
            order = (True, False) if round_ % 2 == 0 else (False, True)
            times = {lossless: cpu(data, lossless)[0] for lossless in order}
            found["new"].append(times[True] * 1000)
            found["old"].append(times[False] * 1000)
            found["ratio"].append(times[True] / times[False])
            started = time.process_time()
            pixels(data)
            found["full"].append((time.process_time() - started) * 1000)
        new, old = cpu(data, True)[1], cpu(data, False)[1]
        psnr, ssim = fidelity(new.jpeg, reference)
        opsnr, ossim = fidelity(old.jpeg, reference)
        found["psnr"].append(psnr), found["ssim"].append(ssim)
        found["opsnr"].append(opsnr), found["ossim"].append(ossim)
        same = new.width == reference.width and np.array_equal(pixels(new.jpeg), pixels(data))
        found["exact"].append(float(same))
    return found


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args()
    rows = {
        "2048 px phone JPEG": measure([phone_jpeg(path) for path in PHOTOS], args.runs),
        "12 MP camera original": measure([camera_jpeg(path) for path in PHOTOS], max(3, args.runs // 3)),
    }
    load = os.getloadavg()[0]
    lines = [
        "## Registration CPU per photo: kept as uploaded ÷ re-encoded (issue 15)",
        "",
        "`bench/registration_cpu.py` times what registration runs on a photo's bytes (`inspect()` then",
        "`normalise()`: header check, verification, stored form, thumbnail, quality figures) in CPU time of",
        "this process, with the lossless path (a conforming JPEG kept as uploaded less its metadata) and",
        "without it (today's decode, resize, orientation, sRGB conversion and quality-88 re-encode of every",
        "upload), alternating per photo and round; the ratio is taken per round. Inputs from `tests/photos`",
        f"({', '.join(path.name for path in PHOTOS)}): phone JPEGs as the phone page makes them (long edge",
        "2048 px, quality 0.9, 4:2:0, no metadata) and 12 MP camera originals (4032 × 3024, sensor-like",
        "noise, EXIF orientation 6 and GPS, quality 92, which are not conforming and take the normalising path).",
        "",
        f"Last run: {date.today().isoformat()} on {platform.machine()} ({os.cpu_count()} CPUs), Python "
        f"{platform.python_version()}, Pillow {PIL.__version__}; load average {load:.1f} at the end"
        + (" (other work ran on the machine: noisy)." if load > 0.7 else "."),
        "",
        "| input | n | new p50 | new p95 | before p50 | before p95 | new ÷ before p50 | p95 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, found in rows.items():
        lines.append(
            f"| {name} | {len(found['ratio'])} | {p(found['new'], 50):.1f} ms | {p(found['new'], 95):.1f} ms "
            f"| {p(found['old'], 50):.1f} ms | {p(found['old'], 95):.1f} ms "
            f"| {p(found['ratio'], 50):.2f} | {p(found['ratio'], 95):.2f} |"
        )
    lines += [
        "",
        "Fidelity of the stored photo (luma, against the pristine source before any JPEG, upright and at the",
        "stored size; median over the photos):",
        "",
        "| input | new: PSNR | new: SSIM | before: PSNR | before: SSIM | stored pixels = uploaded pixels |",
        "|---|---|---|---|---|---|",
    ]
    for name, found in rows.items():
        exact = f"{sum(found['exact']):.0f} of {len(found['exact'])}"
        lines.append(
            f"| {name} | {statistics.median(found['psnr']):.2f} dB | {statistics.median(found['ssim']):.4f} "
            f"| {statistics.median(found['opsnr']):.2f} dB | {statistics.median(found['ossim']):.4f} | {exact} |"
        )
    phone = p(rows["2048 px phone JPEG"]["ratio"], 50)
    full = p(rows["2048 px phone JPEG"]["full"], 50)
    lines += [
        "",
        "The kept photo is verified by one decode of every scan at a reduced DCT scale (1/4 for 2048 px),",
        "which also gives the thumbnail and quality figures; libjpeg parses every Huffman code whatever the",
        f"scale. A full-scale decode of the same phone JPEG (to RGB) costs {full:.1f} ms p50 on its own: what",
        "verifying at full size would add.",
        "",
        "For a phone JPEG the stored file decodes to exactly the uploaded pixels (PSNR ∞ against the upload);",
        "the PSNR above is the phone's one encode against the source, where before it was two. The sample",
        "photos are small (451-1411 px) and enlarged, so they are smooth and every encode loses little; the",
        "gap between one and two generations is larger on real camera detail. The 12 MP originals take the",
        "same normalising path as before (one encode from the camera's file).",
        f"Aim (issue 15): ≤ {TARGET} for phone JPEGs: **{'met' if phone <= TARGET else 'not met'}** ({phone:.2f}).",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_readme:
        replace_section("registration_cpu", text)


if __name__ == "__main__":
    main()
