"""A photo as a TIFF or PDF under a byte limit (consultcam/images/processing/fitted.py), for Medtech's Inbox
Scan: the photo's own JPEG stream goes in unchanged when it can (the same pixels), else the pixel size is kept
whenever it can be; the result opens with Pillow (and libtiff's tiffinfo when installed), looks like the
photo (SSIM ≥ 0.95), keeps the ICC profile, has the orientation applied."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps
from skimage.metrics import structural_similarity

from consultcam.images.processing.fitted import fit_pdf, fit_tiff, wrap_jpeg

PHOTOS = Path(__file__).resolve().parents[1] / "photos"
LIMIT = 1_000_000


def pixels(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        return ImageOps.exif_transpose(image).convert("RGB")


def ssim(a: Image.Image, b: Image.Image) -> float:
    return float(structural_similarity(np.asarray(a), np.asarray(b), channel_axis=2, data_range=255))


def noisy_jpeg(width: int = 2048, height: int = 1536) -> bytes:
    """A photo blended with noise at quality 100: about 3.5 MB, far over the limit even as a JPEG."""
    with Image.open(PHOTOS / "coffee.jpg") as photo:
        base = photo.convert("RGB").resize((width, height))
    noise = Image.effect_noise((width, height), 60).convert("RGB")
    out = io.BytesIO()
    Image.blend(base, noise, 0.35).save(out, format="JPEG", quality=100)
    return out.getvalue()


@pytest.mark.parametrize("name", sorted(p.name for p in PHOTOS.glob("*.jpg")))
def test_every_test_photo_keeps_its_size_and_looks_the_same(name: str) -> None:
    jpeg = (PHOTOS / name).read_bytes()
    fitted = fit_tiff(jpeg, LIMIT)

    assert len(fitted.data) < LIMIT
    assert fitted.content_type == "image/tiff"
    assert fitted.data[:4] in (b"II*\x00", b"MM\x00*")
    with Image.open(io.BytesIO(fitted.data)) as tiff:
        assert tiff.format == "TIFF"
        assert tiff.info["compression"] == "jpeg"
        tiff.load()
    original, back = pixels(jpeg), pixels(fitted.data)
    assert back.size == original.size == (fitted.width, fitted.height)
    assert fitted.scale == 1.0
    assert ssim(original, back) >= 0.95
    # the photo's own stream, unchanged: the same pixels, and only the TIFF's header and tags more
    assert fitted.quality is None
    assert np.array_equal(np.asarray(original), np.asarray(back))
    assert len(fitted.data) - len(jpeg) < 1000


def test_a_big_noisy_photo_is_stepped_down_until_it_fits() -> None:
    jpeg = noisy_jpeg()
    assert len(jpeg) > 2_000_000

    fitted = fit_tiff(jpeg, LIMIT)

    assert len(fitted.data) < LIMIT
    assert fitted.width <= 2048
    assert fitted.height <= 1536
    assert pixels(fitted.data).size == (fitted.width, fitted.height)
    assert (fitted.width, fitted.height) == (2048, 1536)  # lower quality rather than fewer pixels
    assert fitted.quality is not None
    assert fitted.quality < 95
    smaller = fit_tiff(jpeg, 300_000)  # only then fewer pixels
    assert len(smaller.data) < 300_000
    assert smaller.width < 2048
    assert pixels(smaller.data).size == (smaller.width, smaller.height)


def test_the_limit_is_strict_and_an_impossible_one_is_refused() -> None:
    jpeg = (PHOTOS / "cat.jpg").read_bytes()
    exact = len(fit_tiff(jpeg, LIMIT).data)
    assert len(fit_tiff(jpeg, exact).data) < exact  # equal is not under
    with pytest.raises(ValueError, match="could not be made smaller than 500 bytes"):
        fit_tiff(jpeg, 500)
    with pytest.raises(ValueError, match="could not be read"):
        fit_tiff(b"\xff\xd8\xff" + b"\x00" * 5000, LIMIT)
    png = io.BytesIO()
    Image.new("RGB", (8, 8)).save(png, "PNG")
    with pytest.raises(ValueError, match="not a JPEG"):
        fit_tiff(png.getvalue(), LIMIT)


def test_the_icc_profile_is_kept_and_the_orientation_applied() -> None:
    rocket = (PHOTOS / "rocket.jpg").read_bytes()
    with Image.open(io.BytesIO(rocket)) as photo:
        icc = photo.info["icc_profile"]
        exif = photo.getexif()
        exif[0x0112] = 6  # rotate 90° clockwise to display
        turned = io.BytesIO()
        photo.save(turned, "JPEG", quality=95, icc_profile=icc, exif=exif.tobytes())
        width, height = photo.size

    fitted = fit_tiff(turned.getvalue(), LIMIT)

    with Image.open(io.BytesIO(fitted.data)) as tiff:
        assert tiff.info.get("icc_profile") == icc
        assert tiff.size == (height, width)  # upright: no orientation tag left for a viewer to miss
        assert tiff.getexif().get(0x0112) in (None, 1)
    assert ssim(pixels(turned.getvalue()), pixels(fitted.data)) >= 0.95


def test_libtiff_reads_the_tiff(tmp_path: Path) -> None:
    path = tmp_path / "photo.tiff"
    path.write_bytes(fit_tiff((PHOTOS / "coffee.jpg").read_bytes(), LIMIT).data)

    info = subprocess.run(["tiffinfo", "-D", str(path)], capture_output=True, text=True, check=True)

    assert "Compression Scheme: JPEG" in info.stdout
    assert "Image Width: 600 Image Length: 400" in info.stdout
    assert "Photometric Interpretation: YCbCr" in info.stdout
    assert "YCbCr Subsampling: 2, 2" in info.stdout
    assert not info.stderr.strip()


def test_the_pdf_is_one_page_of_the_photo_under_the_limit() -> None:
    jpeg = (PHOTOS / "coffee.jpg").read_bytes()
    fitted = fit_pdf(jpeg, LIMIT, title="Lesion A — left forearm")

    assert fitted.content_type == "application/pdf"
    assert fitted.data.startswith(b"%PDF-")
    assert len(fitted.data) < LIMIT
    assert (fitted.width, fitted.height) == (600, 400)
    big = fit_pdf(noisy_jpeg(), LIMIT)
    assert len(big.data) < LIMIT
    assert big.data.startswith(b"%PDF-")


def test_a_jpeg_that_cannot_go_in_as_it_is_is_re_encoded() -> None:
    """Progressive and grayscale JPEGs: the first is re-encoded (TIFF readers take baseline JPEG only), the
    second goes in as it is (Photometric BlackIsZero)."""
    with Image.open(PHOTOS / "coffee.jpg") as photo:
        progressive, gray = io.BytesIO(), io.BytesIO()
        photo.save(progressive, "JPEG", quality=90, progressive=True)
        photo.convert("L").save(gray, "JPEG", quality=90)

    fitted = fit_tiff(progressive.getvalue(), LIMIT)
    assert fitted.quality == 95
    assert ssim(pixels(progressive.getvalue()), pixels(fitted.data)) >= 0.95

    flat = fit_tiff(gray.getvalue(), LIMIT)
    assert flat.quality is None
    with Image.open(io.BytesIO(flat.data)) as tiff:
        assert tiff.mode == "L"
        assert np.array_equal(np.asarray(tiff), np.asarray(Image.open(gray)))


def test_wrap_jpeg_says_none_for_what_is_not_a_whole_baseline_jpeg() -> None:
    jpeg = (PHOTOS / "cat.jpg").read_bytes()
    assert wrap_jpeg(jpeg) is not None
    for cut in (4, 20, 200, 600):
        assert wrap_jpeg(jpeg[:cut]) is None
    assert wrap_jpeg(b"not a jpeg at all") is None
