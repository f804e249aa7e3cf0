"""Quality checks: time per image at 2048 px and 4032 px, against a plain Pillow decode of the same image.

    .venv/bin/python bench/quality.py [--runs 30] [--no-readme]

Inputs: the real photos in tests/photos, enlarged with Lanczos to a long edge of 2048 px (a stored upload)
and 4032 px (a 12-megapixel phone original), saved as JPEG quality 90. Per photo and size, `runs` rounds,
each timing `assess()` on the decoded RGB image (what registration does after `normalise()`) and, as the
baseline, `Image.open(jpeg).convert("RGB")` of the same bytes, in alternating order. The ratio is taken
per round (assess ÷ decode), so a machine busy with other work moves both alike. One warm-up round of each
is not counted. Writes its section of bench/README.md (issue 6's target: a few tens of ms at 2048 px).
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import numpy
import PIL
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.readme import replace_section  # noqa: E402
from consultcam.analysis.quality import assess  # noqa: E402

PHOTOS = sorted((ROOT / "tests" / "photos").glob("*.jpg"))
EDGES = (2048, 4032)
TARGET_MS = 50  # "a few tens of milliseconds" at 2048 px


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def enlarged_jpeg(path: Path, edge: int) -> bytes:
    with Image.open(path) as source:
        image = source.convert("RGB")
    scale = edge / max(image.size)
    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def decode(jpeg: bytes) -> Image.Image:
    with Image.open(io.BytesIO(jpeg)) as image:
        return image.convert("RGB")


def timed(fn, *args) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    fn(*args)
    return time.perf_counter() - started


def measure(runs: int) -> dict[int, dict[str, list[float]]]:
    """Per long edge: `assess` and `decode` times (seconds) and per-round ratios, over every photo."""
    results: dict[int, dict[str, list[float]]] = {}
    for edge in EDGES:
        assess_times: list[float] = []
        decode_times: list[float] = []
        ratios: list[float] = []
        for path in PHOTOS:
            jpeg = enlarged_jpeg(path, edge)
            image = decode(jpeg)
            assess(image), decode(jpeg)  # warm-up
            for round_ in range(runs):
                if round_ % 2:
                    d = timed(decode, jpeg)
                    a = timed(assess, image)
                else:
                    a = timed(assess, image)
                    d = timed(decode, jpeg)
                assess_times.append(a)
                decode_times.append(d)
                ratios.append(a / d)
        results[edge] = {"assess": assess_times, "decode": decode_times, "ratio": ratios}
    return results


def report(results: dict[int, dict[str, list[float]]], runs: int) -> str:
    ms = lambda seconds: f"{seconds * 1000:.1f} ms"  # noqa: E731
    rows = []
    for edge, r in results.items():
        rows.append(
            f"| {edge} px | {ms(statistics.median(r['assess']))} | {ms(percentile(r['assess'], 95))} "
            f"| {ms(statistics.median(r['decode']))} | {ms(percentile(r['decode'], 95))} "
            f"| {statistics.median(r['ratio']):.2f} | {percentile(r['ratio'], 95):.2f} |"
        )
    at_2048 = percentile(results[2048]["assess"], 95) * 1000
    verdict = "met" if at_2048 < TARGET_MS else "NOT met"
    photos = ", ".join(p.name for p in PHOTOS)
    ratio_2048 = statistics.median(results[2048]["ratio"])
    return f"""
## Quality checks per image

`bench/quality.py` times `consultcam.analysis.quality.assess()` (sharpness, exposure, resolution,
warnings: docs/quality-calibration.md) on the real photos in `tests/photos`
({photos}) enlarged with Lanczos to a long edge of 2048 px (a stored upload) and 4032 px (a 12-megapixel phone original). The
baseline is a plain Pillow decode of the same image (`Image.open(jpeg).convert("RGB")`, JPEG quality 90),
timed in the same process in alternating order; the ratio is taken per round.

Last run: {date.today().isoformat()} on {platform.machine()} ({os.cpu_count()} CPUs), Python \
{platform.python_version()}, Pillow {PIL.__version__}, numpy {numpy.__version__}; \
{len(PHOTOS)} photos × {runs} rounds per size, one warm-up round not counted.

| long edge | assess p50 | assess p95 | decode p50 | decode p95 | assess ÷ decode p50 | p95 |
|---|---|---|---|---|---|---|
{chr(10).join(rows)}

Registration measures quality on the stored copy (long edge ≤ 2048 px), so the 2048 px row is the cost
per upload: {ratio_2048:.2f}× one decode of that image (median), which registration already does to
normalise it. Target (issue 6): a few tens of milliseconds at 2048 px (p95 < {TARGET_MS} ms):
**{verdict}**.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="rounds per photo and size")
    parser.add_argument("--no-readme", action="store_true", help="print only; leave bench/README.md")
    args = parser.parse_args()
    text = report(measure(args.runs), args.runs)
    print(text)
    if not args.no_readme:
        replace_section("quality", text)


if __name__ == "__main__":
    main()
