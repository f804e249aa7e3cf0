"""Quality warnings on real photos and on blurred, darkened and brightened versions of them."""

import statistics
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from consultcam.analysis.quality import QUALITY_WARNINGS, _percentiles, assess

PHOTOS = sorted((Path(__file__).resolve().parents[1] / "photos").glob("*.jpg"))
SMALL_SAMPLES = {"cat.jpg", "coffee.jpg", "rocket.jpg"}  # 451-640 px wide, as published


def load(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


def as_phone_photo(path: Path) -> Image.Image:
    """The sample enlarged to the 2048 px long edge a phone upload has after normalisation."""
    image = load(path)
    scale = 2048 / max(image.size)
    return image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)


def exposed(image: Image.Image, factor: float) -> Image.Image:
    return image.point(lambda v: min(255, round(v * factor)))


@pytest.fixture(scope="module", params=PHOTOS, ids=lambda path: path.name)
def phone_photo(request) -> Image.Image:
    return as_phone_photo(request.param)


def test_there_are_sample_photos():
    assert len(PHOTOS) >= 4


def test_sharp_well_exposed_photos_have_no_warnings(phone_photo):
    quality = assess(phone_photo)
    assert quality["warnings"] == []
    assert (quality["width"], quality["height"]) == phone_photo.size
    assert 0 <= quality["underexposed"] <= 1
    assert 0 <= quality["overexposed"] <= 1
    assert 40 < quality["meanLuma"] < 215


@pytest.mark.parametrize("radius", [3, 4.5, 6])
def test_blurred_photos_are_blurry(phone_photo, radius):
    sharp = assess(phone_photo)
    quality = assess(phone_photo.filter(ImageFilter.GaussianBlur(radius)))
    assert "blurry" in quality["warnings"]
    assert quality["sharpness"] < sharp["sharpness"] / 1.3


def test_darkened_photos_are_dark_but_not_blurry(phone_photo):
    quality = assess(exposed(phone_photo, 0.25))  # two stops under
    assert quality["warnings"] == ["dark"]
    assert quality["meanLuma"] < assess(phone_photo)["meanLuma"] / 3


def test_brightened_photos_are_bright_but_not_blurry(phone_photo):
    quality = assess(exposed(phone_photo, 2.5))  # 1.3 stops over
    assert quality["warnings"] == ["bright"]
    assert quality["overexposed"] > assess(phone_photo)["overexposed"]


def test_washed_out_photo_is_bright_even_without_clipping(phone_photo):
    washed = phone_photo.point(lambda v: 220 + v * 20 // 255)  # all luma in 220-240: hazy, nothing blown
    quality = assess(washed)
    assert quality["overexposed"] == 0
    assert "bright" in quality["warnings"]


@pytest.mark.parametrize("path", PHOTOS, ids=lambda path: path.name)
def test_samples_as_published_are_low_resolution_when_smaller_than_1024_by_768(path):
    quality = assess(load(path))
    assert ("low-resolution" in quality["warnings"]) is (path.name in SMALL_SAMPLES)
    assert "blurry" not in quality["warnings"]


@pytest.mark.parametrize(
    ("size", "low"),
    [
        ((600, 400), True),
        ((800, 600), True),
        ((1000, 700), True),
        ((1024, 768), False),
        ((768, 1024), False),
        ((1280, 720), False),
        ((2048, 1536), False),
    ],
)
def test_low_resolution_is_below_1024_by_768_pixels_in_either_orientation(size, low):
    image = as_phone_photo(PHOTOS[0]).resize(size)
    assert ("low-resolution" in assess(image)["warnings"]) is low


def test_warnings_keep_the_published_order():
    tiny_dark_blur = exposed(load(PHOTOS[0]).filter(ImageFilter.GaussianBlur(8)), 0.2)
    warnings = assess(tiny_dark_blur)["warnings"]
    assert warnings == ["blurry", "dark", "low-resolution"]
    assert warnings == [w for w in QUALITY_WARNINGS if w in warnings]


def test_constant_and_tiny_images_do_not_fail():
    assert assess(Image.new("RGB", (2048, 1536), (128, 128, 128)))["warnings"] == ["blurry"]
    assert assess(Image.new("L", (1, 1), 0))["warnings"] == ["blurry", "dark", "low-resolution"]


def test_other_modes_are_measured_as_luma():
    image = as_phone_photo(PHOTOS[0])
    rgb = assess(image)
    for converted in (image.convert("L"), image.convert("RGBA")):
        other = assess(converted)
        assert abs(other["meanLuma"] - rgb["meanLuma"]) < 1
        assert other["warnings"] == rgb["warnings"]
    sixteen_bit = Image.new("I;16", (1024, 768), 40000)
    assert 150 < assess(sixteen_bit)["meanLuma"] < 160


def test_assess_takes_tens_of_milliseconds_at_2048_px(phone_photo):
    """Issue 6: "a few tens of milliseconds for a 2048 px image" (about 8 ms on 2 cores; bench/quality.py).
    The median of five runs, so a test runner busy with other work does not fail it."""
    assess(phone_photo)
    times = []
    for _ in range(5):
        started = time.perf_counter()
        assess(phone_photo)
        times.append(time.perf_counter() - started)
    assert statistics.median(times) < 0.05


@pytest.mark.parametrize("shape", [(3, 3), (384, 512), (7, 1000)])
def test_contrast_stretch_uses_numpys_percentiles_of_the_grey_pixels(shape):
    """The 1st and 99th percentiles come from the histogram (no sort of the pixels) and must be the very
    figures docs/quality-calibration.md was measured with (np.percentile, linear interpolation)."""
    rng = np.random.default_rng(15)
    for pixels in (
        rng.integers(0, 256, shape, dtype=np.uint8),
        rng.normal(100, 30, shape).clip(0, 255).astype(np.uint8),
        np.full(shape, 7, dtype=np.uint8),
    ):
        expected = np.percentile(pixels.astype(np.float32), (1, 99))
        assert _percentiles(Image.fromarray(pixels).histogram(), (1, 99)) == pytest.approx(expected, abs=1e-4)
