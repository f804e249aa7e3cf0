"""Basic photo quality figures and warnings for a clinical image.

The figures are cheap enough to compute while an upload is registered (about 10 ms for a 2048-pixel photo)
and are shown to the clinician as hints ("this photo looks blurry, retake it?"), never used to reject a photo.

Thresholds were calibrated on the sample photos in /work/shared/photos and on blurred, darkened and
brightened versions of them; the measurements and the method are in docs/quality-calibration.md.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

QUALITY_WARNINGS = ("blurry", "dark", "bright", "low-resolution")

# Sharpness is measured at this long edge (pixels). A 12-megapixel phone photo and a 2048-pixel upload then
# give the same figure, and JPEG block noise at full size does not pass for detail.
ANALYSIS_EDGE_PX = 512

# Luma bands for the under/over-exposed shares: 16 and 240 are the ends of the ITU-R BT.601 "studio swing"
# (16-235); pixels outside them hold almost no recoverable detail.
UNDEREXPOSED_LUMA = 16
OVEREXPOSED_LUMA = 240

# "blurry" below this sharpness. Measured (docs/quality-calibration.md): sharp sample photos at 2048 px give
# 173-1223 (the fundus photo, mostly smooth retina, is the lowest); the same photos Gaussian-blurred by
# radius 3 px give 41-126, radius 4-6 px give 11-53. 150 sits between 126 and 173 (about their geometric
# mean); radius-2 blur is flagged only on the smooth fundus photo.
BLURRY_SHARPNESS = 150.0

# "dark" when mean luma is below this. Normal sample photos: 61 (a night-time rocket launch) to 120; the
# same photos at a quarter of the exposure (-2 EV): 15-30. 40 is between, nearer the dark end so that a
# deliberately dark scene (dark skin, dark drape) is not flagged.
DARK_MEAN_LUMA = 40.0

# "bright" when more than this share of pixels is blown (luma > 240) or the mean is above BRIGHT_MEAN_LUMA.
# Normal sample photos blow 0-1.0% of pixels; at 2.5x exposure (+1.3 EV) they blow 7.7-68%. A washed-out
# photo with no clipping is caught by the mean instead (normal photos: at most 120; 215 mirrors the dark
# limit, 255 - 40).
BRIGHT_OVEREXPOSED_SHARE = 0.05
BRIGHT_MEAN_LUMA = 215.0

# "low-resolution" below 1024 x 768 pixels (0.79 megapixels), the resolution the American Telemedicine
# Association's teledermatology practice guideline (2012) prefers (its minimum is 800 x 600). Counted as an
# area so that portrait, landscape and 16:9 photos are treated alike: 600 x 400 and 800 x 600 are flagged,
# 1280 x 720 and anything a phone captures at 2048 px are not.
LOW_RESOLUTION_PIXELS = 1024 * 768


def assess(image: Image.Image, *, size: tuple[int, int] | None = None) -> dict[str, Any]:
    """Measure sharpness and exposure of a photo and list the quality warnings that apply.

    `image` is any Pillow image (normally the normalised RGB photo, long edge <= 2048 px); it is not
    modified. Returns a JSON-ready dict:

    - ``sharpness`` (float, >= 0): variance of the 4-neighbour Laplacian of the grey (BT.601 luma) image,
      box-downscaled to a long edge of ANALYSIS_EDGE_PX and contrast-stretched so that its 1st-99th
      percentile spans 0-255. The stretch keeps exposure from masquerading as blur: darkening a photo to a
      quarter divides the unstretched variance by 16. Higher is sharper; below BLURRY_SHARPNESS is "blurry".
      Source: Pech-Pacheco et al., "Diatom autofocusing in brightfield microscopy", ICPR 2000.
    - ``underexposed`` / ``overexposed`` (float, 0..1): share of pixels with luma < 16 / > 240.
    - ``meanLuma`` (float, 0..255): mean BT.601 luma.
    - ``width`` / ``height`` (int, pixels): of `image`.
    - ``warnings`` (list[str]): the subset of QUALITY_WARNINGS that apply, in that order.

    `size` (width, height in pixels) is the photo's own when `image` is a reduced copy of it (a JPEG decoded
    at a DCT scale, at least ANALYSIS_EDGE_PX long when the photo is): ``width``, ``height`` and
    "low-resolution" then describe the photo, the other figures are measured on the copy.

    Raises nothing for any non-empty image; a constant image has sharpness 0 and is "blurry".
    """
    width, height = size or image.size
    grey = _to_grey(image)

    histogram = grey.histogram()
    total = grey.width * grey.height
    underexposed = sum(histogram[:UNDEREXPOSED_LUMA]) / total
    overexposed = sum(histogram[OVEREXPOSED_LUMA + 1 :]) / total
    mean_luma = sum(level * count for level, count in enumerate(histogram)) / total

    sharpness = _sharpness(grey)

    warnings = []
    if sharpness < BLURRY_SHARPNESS:
        warnings.append("blurry")
    if mean_luma < DARK_MEAN_LUMA:
        warnings.append("dark")
    if overexposed > BRIGHT_OVEREXPOSED_SHARE or mean_luma > BRIGHT_MEAN_LUMA:
        warnings.append("bright")
    if width * height < LOW_RESOLUTION_PIXELS:
        warnings.append("low-resolution")

    return {
        "sharpness": round(sharpness, 1),
        "underexposed": round(underexposed, 4),
        "overexposed": round(overexposed, 4),
        "meanLuma": round(mean_luma, 1),
        "width": width,
        "height": height,
        "warnings": warnings,
    }


def _to_grey(image: Image.Image) -> Image.Image:
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        # 16-bit grey (e.g. a 16-bit PNG): convert("L") alone would clip everything above 255 to white.
        return image.convert("I").point(lambda v: v / 257).convert("L")
    return image.convert("L")


def _sharpness(grey: Image.Image) -> float:
    scale = ANALYSIS_EDGE_PX / max(grey.size)
    if scale < 1:
        size = (max(1, round(grey.width * scale)), max(1, round(grey.height * scale)))
        grey = grey.resize(size, Image.Resampling.BOX)
    pixels = np.asarray(grey, dtype=np.float32)
    if min(pixels.shape) < 3:
        return 0.0
    low, high = _percentiles(grey.histogram(), (1, 99))
    if high - low >= 1:
        pixels = (pixels - low) * np.float32(255.0 / (high - low))
    laplacian = (
        pixels[1:-1, :-2] + pixels[1:-1, 2:] + pixels[:-2, 1:-1] + pixels[2:, 1:-1] - 4 * pixels[1:-1, 1:-1]
    )
    return float(laplacian.var())


def _percentiles(histogram: list[int], percents: tuple[float, ...]) -> list[float]:
    """The `percents` (0-100) of the 8-bit values counted in `histogram` (256 bins), as `np.percentile`
    with its default linear interpolation gives them for those values, without sorting the pixels: the
    k-th smallest value is the first bin whose cumulative count exceeds k."""
    cumulative = np.cumsum(histogram[:256])
    last = int(cumulative[-1]) - 1
    results = []
    for percent in percents:
        position = last * percent / 100
        below = int(position)
        low, high = np.searchsorted(cumulative, [below, min(below + 1, last)], side="right")
        results.append(float(low + (position - below) * (high - low)))
    return results
