"""A photo as a TIFF or a PDF under a byte limit, for EMR inboxes that file only those (Medtech's Inbox Scan
takes TIFF for images and PDF for documents, each under 1 MB: shared/DESIGN.md, "Medtech ALEX facts").

Pure functions of the JPEG's bytes: nothing here touches storage, the database or the network.

* TIFF: one image, compression 7 (JPEG in TIFF, TIFF Technical Note 2). JPEG compression keeps a phone photo
  at its pixel size under 1 MB where LZW or Deflate cannot (a 2048 × 1536 photo is about 9 MB uncompressed
  and 5 MB as LZW). First choice: the photo's own baseline JPEG stream, unchanged, as the TIFF's one strip
  (Photometric YCbCr with the JPEG's chroma subsampling, or grayscale), so the TIFF's pixels are exactly the
  JPEG's (libtiff and Pillow decode both with libjpeg) and it is only about 200 bytes larger (`wrap_jpeg`).
  Otherwise (a progressive, CMYK or Adobe-coded JPEG, an EXIF orientation to apply, or too large): Pillow
  re-encodes the pixels as a baseline JPEG, quality stepped down, and that stream goes in the same way.
  (Pillow's own TIFF writer, through libtiff, JPEG-compresses only as Photometric RGB without chroma
  subsampling: about twice the bytes at the same quality, so a noisy 2048-pixel photo lost its size.)
* PDF: one page the size of the photo at 150 dpi with the photo as a DCT (JPEG) image (PDF 1.4 §4.8.6),
  written by Pillow; colours converted to sRGB first when the photo carries another ICC profile (a PDF
  image without one is read as device RGB).
* Fitting (the re-encoded TIFF and the PDF): the quality is stepped down first (95 … 60) so the photo keeps
  its pixel size whenever it can; only then is it scaled down (by 0.8 at a time, quality 80, never below
  64 px a side, never up).
* The photo's EXIF orientation is applied to the pixels (nothing reads an orientation tag from here on)
  and its ICC profile kept in the TIFF.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageCms, ImageOps

__all__ = ["FittedDocument", "fit_jpeg", "fit_pdf", "fit_tiff", "wrap_jpeg"]

QUALITIES = (95, 90, 85, 80, 75, 70, 65, 60)
SCALE_QUALITY = 80
SCALE_STEP = 0.8
MIN_SIDE = 64


@dataclass(frozen=True)
class FittedDocument:
    """The converted photo: `data` (bytes, fewer than the limit), its MIME type, its pixel size, the JPEG
    quality used (1–100; None when the photo's own JPEG stream went in unchanged) and the scale applied (1.0
    when the photo kept its size)."""

    data: bytes
    content_type: str
    width: int
    height: int
    quality: int | None
    scale: float


def fit_tiff(jpeg: bytes, limit: int) -> FittedDocument:
    """The photo as a JPEG-compressed TIFF of fewer than `limit` bytes (strictly `len(data) < limit`).

    The photo's own JPEG stream when it can be (`wrap_jpeg`); else its pixels (orientation applied)
    re-encoded by Pillow as a baseline JPEG, quality 95 first, stepped down to 60, then scaled down, each
    wrapped the same way (see the module docstring). Raises ValueError when `jpeg` is not a readable JPEG or
    cannot be made to fit.
    """
    image, icc = _open(jpeg)
    wrapped = wrap_jpeg(jpeg)
    if wrapped is not None and len(wrapped) < limit:
        return FittedDocument(wrapped, "image/tiff", image.width, image.height, None, 1.0)

    as_jpeg = _jpeg_encoder(icc)

    def encode(picture: Image.Image, quality: int) -> bytes:
        tiff = wrap_jpeg(as_jpeg(picture, quality))
        if tiff is None:  # pragma: no cover - Pillow writes baseline YCbCr or grayscale JPEG
            raise ValueError("the re-encoded photo could not be put in a TIFF")
        return tiff

    return _fit(image, limit, encode, "image/tiff")


def fit_jpeg(jpeg: bytes, limit: int) -> FittedDocument:
    """The photo re-encoded as a baseline JPEG of fewer than `limit` bytes (for a destination with a size
    limit that takes JPEG, e.g. ALEX's Media): its pixels with the EXIF orientation applied, the ICC profile
    kept, quality and then size stepped down as for `fit_tiff` (never larger). Raises ValueError when `jpeg`
    is not a readable JPEG or cannot be made to fit."""
    image, icc = _open(jpeg)
    return _fit(image, limit, _jpeg_encoder(icc), "image/jpeg")


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


def wrap_jpeg(jpeg: bytes) -> bytes | None:
    """A little-endian TIFF whose one strip is `jpeg`'s own stream (TIFF 6.0 and Technical Note 2:
    Compression 7, a strip may be a complete JPEG stream with its own tables), APPn and COM segments left
    out; the ICC profile, if any, in tag 34675. None when the JPEG is not one a TIFF reader can take as it
    is: not baseline (SOF0/SOF1), not 1 or 3 components, chroma not 1 × 1 with luma 1–2 × 1–2, an Adobe
    (APP14) colour transform, or an EXIF orientation other than 1 (to be applied to the pixels instead)."""
    try:
        with Image.open(io.BytesIO(jpeg)) as opened:
            if opened.format != "JPEG" or opened.getexif().get(0x0112, 1) != 1:
                return None
            icc: bytes | None = opened.info.get("icc_profile") or None
        stream, frame = _bare_stream(jpeg)
    except (OSError, ValueError, IndexError, struct.error, Image.DecompressionBombError):
        return None
    if frame is None:
        return None
    width, height, components = frame
    tags: list[tuple[int, int, list[int] | bytes]] = [  # (tag, type, values): 3 SHORT, 4 LONG, 5 RATIONAL
        (256, 4, [width]),
        (257, 4, [height]),
        (259, 3, [7]),  # Compression: JPEG (TIFF TN2)
        (273, 4, [0]),  # StripOffsets: set below
        (278, 4, [height]),  # RowsPerStrip: the whole image in one strip
        (279, 4, [len(stream)]),
        (282, 5, [72, 1]),
        (283, 5, [72, 1]),
        (284, 3, [1]),
        (296, 3, [2]),  # ResolutionUnit: inch
    ]
    if len(components) == 1:
        tags += [(258, 3, [8]), (262, 3, [1]), (277, 3, [1])]  # grayscale, BlackIsZero
    else:
        (luma_h, luma_v), chroma = components[0], components[1:]
        if any(factors != (1, 1) for factors in chroma) or luma_h not in (1, 2) or luma_v not in (1, 2):
            return None
        tags += [
            (258, 3, [8, 8, 8]),
            (262, 3, [6]),  # Photometric: YCbCr, as a JFIF stream is
            (277, 3, [3]),
            (530, 3, [luma_h, luma_v]),  # YCbCrSubSampling
            (532, 5, [0, 1, 255, 1, 128, 1, 255, 1, 128, 1, 255, 1]),  # ReferenceBlackWhite: full range
        ]
    if icc:
        tags.append((34675, 7, icc))
    return _tiff(sorted(tags, key=lambda tag: tag[0]), stream)


def _bare_stream(jpeg: bytes) -> tuple[bytes, tuple[int, int, list[tuple[int, int]]] | None]:
    """The JPEG stream without its APPn and COM segments, and its frame (width, height, the components'
    (H, V) sampling factors) when it is baseline; frame None for any other kind or an Adobe transform."""
    if not jpeg.startswith(b"\xff\xd8"):
        raise ValueError("not a JPEG stream")
    kept = [b"\xff\xd8"]
    frame: tuple[int, int, list[tuple[int, int]]] | None = None
    baseline = True
    index = 2
    while True:
        if jpeg[index] != 0xFF:
            raise ValueError("a JPEG marker was expected")
        marker = jpeg[index + 1]
        if marker == 0xFF:  # fill byte
            index += 1
            continue
        length = struct.unpack(">H", jpeg[index + 2 : index + 4])[0]
        segment = jpeg[index : index + 2 + length]
        if marker == 0xDA:  # start of scan: the rest is entropy-coded data and what follows it
            kept.append(jpeg[index:])
            break
        if marker == 0xEE and segment[4:9] == b"Adobe":
            baseline = False  # its transform flag may say the components are RGB or CMYK
        if marker in (0xC0, 0xC1):
            height, width, count = struct.unpack(">HHB", segment[5:10])
            factors = [(segment[11 + 3 * k] >> 4, segment[11 + 3 * k] & 15) for k in range(count)]
            if count in (1, 3):
                frame = (width, height, factors)
        elif 0xC2 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            baseline = False  # progressive, lossless or arithmetic-coded
        if not (0xE0 <= marker <= 0xEF or marker == 0xFE):
            kept.append(segment)
        index += 2 + length
    return b"".join(kept), frame if baseline else None


def _tiff(tags: list[tuple[int, int, list[int] | bytes]], strip: bytes) -> bytes:
    """A little-endian TIFF: header, one IFD with `tags` (sorted), their values that do not fit in four bytes,
    then the strip (StripOffsets, tag 273, pointed at it)."""
    formats = {3: "H", 4: "I", 5: "I"}
    ifd_end = 8 + 2 + 12 * len(tags) + 4
    entries, extra = [], b""
    values: list[bytes] = []
    for tag, kind, items in tags:
        data = items if isinstance(items, bytes) else struct.pack(f"<{len(items)}{formats[kind]}", *items)
        count = len(items) // 2 if kind == 5 else len(items)
        values.append(data)
        entries.append((tag, kind, count, data))
    strip_offset = ifd_end + sum(len(v) + len(v) % 2 for v in values if len(v) > 4)
    ifd = struct.pack("<H", len(tags))
    for tag, kind, count, data in entries:
        if tag == 273:
            data = struct.pack("<I", strip_offset)
        if len(data) <= 4:
            ifd += struct.pack("<HHI", tag, kind, count) + data.ljust(4, b"\0")
        else:
            ifd += struct.pack("<HHII", tag, kind, count, ifd_end + len(extra))
            extra += data + b"\0" * (len(data) % 2)  # values start on a word boundary
    return b"II*\0" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + extra + strip


def _jpeg_encoder(icc: bytes | None) -> Callable[[Image.Image, int], bytes]:
    """Pillow's baseline JPEG at a given quality (optimised Huffman tables), carrying `icc` when given."""

    def encode(picture: Image.Image, quality: int) -> bytes:
        out = io.BytesIO()
        options: dict[str, Any] = {"format": "JPEG", "quality": quality, "optimize": True}
        if icc:
            options["icc_profile"] = icc
        picture.save(out, **options)
        return out.getvalue()

    return encode


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
