"""A photo as a TIFF or a PDF under a byte limit, for EMR inboxes that file only those (Medtech's Inbox Scan
takes TIFF for images and PDF for documents, each under 1 MB: shared/DESIGN.md, "Medtech ALEX facts").

Pure functions of the JPEG's bytes: nothing here touches storage, the database or the network.

* TIFF: one RGB image, compression 7 (JPEG in TIFF, TIFF Technical Note 2 / libtiff), written by Pillow
  through libtiff. JPEG compression keeps a phone photo at its pixel size under 1 MB where LZW or Deflate
  cannot (a 2048 × 1536 photo is about 9 MB uncompressed and 5 MB as LZW). Photometric RGB, not YCbCr:
  every TIFF reader that knows compression 7 reads it, and Pillow's YCbCr path shifts colours.
* PDF: one page the size of the photo at 150 dpi with the photo as a DCT (JPEG) image (PDF 1.4 §4.8.6),
  written by Pillow; colours converted to sRGB first when the photo carries another ICC profile (a PDF
  image without one is read as device RGB).
* Fitting: the quality is stepped down first (95 … 60) so the photo keeps its pixel size whenever it can;
  only then is it scaled down (by 0.8 at a time, quality 80, never below 64 px a side, never up).
* The photo's EXIF orientation is applied to the pixels (nothing reads an orientation tag from here on)
  and its ICC profile kept in the TIFF.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageCms, ImageOps

__all__ = ["FittedDocument", "fit_pdf", "fit_tiff"]

QUALITIES = (95, 90, 85, 80, 75, 70, 65, 60)
SCALE_QUALITY = 80
SCALE_STEP = 0.8
MIN_SIDE = 64


@dataclass(frozen=True)
class FittedDocument:
    """The converted photo: `data` (bytes, fewer than the limit), its MIME type, its pixel size, the JPEG
    quality used (1–100) and the scale applied (1.0 when the photo kept its size)."""

    data: bytes
    content_type: str
    width: int
    height: int
    quality: int
    scale: float


def fit_tiff(jpeg: bytes, limit: int) -> FittedDocument:
    """The photo as a JPEG-compressed RGB TIFF of fewer than `limit` bytes (strictly `len(data) < limit`).

    Quality 95 first, stepped down to 60, then scaled down (see the module docstring). Raises ValueError
    when `jpeg` is not a readable JPEG or cannot be made to fit.
    """
    image, icc = _open(jpeg)

    def encode(picture: Image.Image, quality: int) -> bytes:
        out = io.BytesIO()
        options: dict[str, Any] = {"compression": "jpeg", "quality": quality}
        if icc:
            options["icc_profile"] = icc
        picture.save(out, "TIFF", **options)
        return out.getvalue()

    return _fit(image, limit, encode, "image/tiff")


def fit_pdf(jpeg: bytes, limit: int, *, title: str = "Clinical photograph") -> FittedDocument:
    """The photo as a one-page PDF of fewer than `limit` bytes, the page the photo's size at 150 dpi.

    `title` goes into the PDF's document information (with producer and creator "consultcam", nothing
    else). Quality and size stepped down as for `fit_tiff`. Raises ValueError when `jpeg` is not a readable
    JPEG or cannot be made to fit.
    """
    image, icc = _open(jpeg)
    if icc:
        image = _to_srgb(image, icc)

    def encode(picture: Image.Image, quality: int) -> bytes:
        out = io.BytesIO()
        picture.save(
            out,
            "PDF",
            resolution=150.0,
            quality=quality,
            title=title,
            producer="consultcam",
            creator="consultcam",
        )
        return out.getvalue()

    return _fit(image, limit, encode, "application/pdf")


def _open(jpeg: bytes) -> tuple[Image.Image, bytes | None]:
    """The JPEG's pixels in RGB (or L) with the EXIF orientation applied, and its ICC profile."""
    try:
        with Image.open(io.BytesIO(jpeg)) as opened:
            if opened.format != "JPEG":
                raise ValueError("the image is not a JPEG")
            icc = opened.info.get("icc_profile") or None
            image = ImageOps.exif_transpose(opened)
            image.load()
    except (OSError, Image.DecompressionBombError) as exc:
        raise ValueError(f"the image could not be read ({type(exc).__name__})") from None
    if image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    return image, icc


def _fit(
    image: Image.Image, limit: int, encode: Callable[[Image.Image, int], bytes], content_type: str
) -> FittedDocument:
    for quality in QUALITIES:
        data = encode(image, quality)
        if len(data) < limit:
            return FittedDocument(data, content_type, image.width, image.height, quality, 1.0)
    scale = 1.0
    while True:
        scale *= SCALE_STEP
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        if min(size) < MIN_SIDE:
            raise ValueError(f"the image could not be made smaller than {limit} bytes")
        smaller = image.resize(size, Image.Resampling.LANCZOS)
        data = encode(smaller, SCALE_QUALITY)
        if len(data) < limit:
            return FittedDocument(data, content_type, smaller.width, smaller.height, SCALE_QUALITY, scale)


def _to_srgb(image: Image.Image, icc: bytes) -> Image.Image:
    """The pixels converted from the photo's ICC profile to sRGB; unchanged when the profile is unusable."""
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        converted = ImageCms.profileToProfile(image, source, ImageCms.createProfile("sRGB"))
    except (ImageCms.PyCMSError, OSError, ValueError):
        return image
    return converted if isinstance(converted, Image.Image) else image
