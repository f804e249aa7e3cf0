"""Verify and normalise an uploaded photo into the one form the system stores.

`normalise` turns whatever a phone uploaded (JPEG, PNG, WebP, HEIC/HEIF) into an upright, sRGB, baseline JPEG
with no metadata at all (no EXIF, GPS, XMP, IPTC, comments or ICC profile), plus a thumbnail and quality
figures; `inspect` checks the header first and estimates what decoding will cost. Nothing here touches
storage or the database.
"""

from __future__ import annotations

import hashlib
import io
import math
import re
from dataclasses import dataclass
from typing import Any

import pillow_heif
from PIL import ExifTags, Image, ImageCms, ImageFile, PngImagePlugin

from consultcam.analysis.quality import assess
from consultcam.images.processing.formats import (
    FAMILY,
    MAX_METADATA_BYTES,
    check_type,
    metadata_too_large,
    too_many_pixels,
    unreadable,
)

# Only the primary image of a HEIF file is ever used: its thumbnails, depth maps and auxiliary images are
# neither listed nor decoded.
pillow_heif.register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)


# Pillow keeps a PNG's text chunks (tEXt, zTXt, iTXt) in memory, 64 MB of them by default, and zTXt
# compresses about 1000:1: a small file could make it inflate all of that. The photo's text is dropped anyway.
PngImagePlugin.MAX_TEXT_MEMORY = MAX_METADATA_BYTES


# A big JPEG is decoded at 1/2, 1/4 or 1/8 scale straight from its DCT coefficients (Pillow's draft mode),
# which is 2-4x faster than decoding in full and resampling. We accept a draft whose long edge is a little
# under max_edge_px (a 4032 px photo becomes 2016 px rather than 2048) to get that speed.
_DRAFT_SLACK = 0.95
_THUMBNAIL_QUALITY = 80
_WHITE = (255, 255, 255)

# EXIF Orientation (CIPA DC-008 §4.6.4) as the transpose that shows the photo upright (as ImageOps does).
_ORIENT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

# Decode memory (`_decode_cost`). Measured as the growth of peak RSS (VmHWM) of a fresh process normalising
# flat 45-megapixel files (Pillow 13, libwebp through Pillow, libheif 1.23), bytes per source pixel:
# PNG RGB 5.4, RGBA or LA 8.0, palette 5.4, 16-bit grey 10.0, grey 1.4; WebP 16.0; HEIC 7.3 (RGBA 8.3);
# JPEG 1.8 baseline (decoded at 1/2 scale), 4.0 progressive 4:2:0, 7.0 progressive 4:4:4. The estimate is
# 1.1 to 1.7 times those; tests/images/test_processing.py checks it still bounds them. What a decoder
# holds per pixel beside Pillow's own image: libwebp the canvas and the previous frame (WebPAnimDecoder)
# and Pillow a bytes copy of the frame; libheif its decoded planes.
_DECODER_BYTES_PER_PIXEL = {"WEBP": 12, "HEIF": 4}
# The full-size copy `_flatten` makes, per pixel, by mode (modes not listed: 4).
_FLATTEN_BYTES_PER_PIXEL = {"P": 4, "I": 8, "I;16": 8, "I;16B": 8, "I;16L": 8, "F": 8}
# Per output pixel: the resized image, its sRGB copy, the thumbnail, the quality figures and the encoders.
_OUTPUT_BYTES_PER_PIXEL = 8
#: Memory every decode or render holds besides its pixels (interpreter, libraries, buffers), in bytes.
FIXED_DECODE_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class NormalisedImage:
    """An uploaded photo in stored form: `jpeg` is upright, sRGB, baseline, metadata-free; `thumbnail` is a
    JPEG with long edge <= thumb_edge_px; `width`/`height` (pixels) and `sha256` (hex) describe `jpeg`;
    `source_content_type` is what the uploaded bytes really were; `quality` comes from
    `consultcam.analysis.quality.assess`."""

    jpeg: bytes
    thumbnail: bytes
    width: int
    height: int
    sha256: str
    source_content_type: str
    quality: dict[str, Any]


@dataclass(frozen=True)
class ImageHeader:
    """What an upload's header says, read before any pixel is decoded (see `inspect`).

    `content_type` is what the bytes really are (one of ACCEPTED_CONTENT_TYPES); `width` and `height` are the
    stored pixels, before orientation; `decode_bytes` is an upper estimate of the memory `normalise` holds at
    once for this file (see `_decode_cost`): what the server's decode admission weighs it by.
    """

    content_type: str
    width: int
    height: int
    decode_bytes: int


def inspect(
    data: bytes, *, declared_content_type: str, max_pixels: int = 50_000_000, max_edge_px: int = 2048
) -> ImageHeader:
    """Verify an upload from its header (steps 1-3 of `normalise`) and estimate what decoding it costs.

    Parses headers only: milliseconds, and no pixel buffer, whatever the image's size. Raises ImageRejected
    as `normalise` does for steps 1-3.
    """
    sniffed, limit = check_type(data, declared_content_type, max_pixels)
    family = FAMILY[sniffed]
    image, source_size = _open(data, family, limit, max_edge_px)
    with image:
        cost = _decode_cost(data, image, source_size, family, max_edge_px)
    return ImageHeader(sniffed, source_size[0], source_size[1], cost)


def normalise(
    data: bytes,
    *,
    declared_content_type: str,
    max_pixels: int = 50_000_000,
    max_edge_px: int = 2048,
    thumb_edge_px: int = 384,
    jpeg_quality: int = 88,
) -> NormalisedImage:
    """Verify an uploaded photo, then store it in one canonical form.

    Verification, in order (DESIGN.md "The main job", step 4):
    1. magic bytes must be an accepted type, else ImageRejected 415 UnsupportedImageType;
    2. they must match `declared_content_type` (parameters and case ignored; image/jpg and image/pjpeg are
       JPEG; HEIC and HEIF are one family), else 422 ImageTypeMismatch;
    3. from the header, before any pixel is decoded: the pixel count must not exceed `max_pixels` (nor
       Pillow's own Image.MAX_IMAGE_PIXELS), else 422 ImageTooManyPixels; an ICC profile or EXIF block
       must not exceed MAX_METADATA_BYTES, else 422 ImageMetadataTooLarge; PNG text chunks must stay
       within Pillow's limits (PngImagePlugin.MAX_TEXT_CHUNK, MAX_TEXT_MEMORY), else 422
       ImageMetadataTooLarge. A decompression bomb, in the pixels or in the metadata, is never expanded;
    4. the decoder named by the magic bytes must decode it in full, else 422 ImageUndecodable.

    Normalisation: EXIF orientation applied (HEIF's irot/imir transforms are applied by libheif); alpha
    flattened on white; converted to sRGB from an embedded ICC profile (Display P3 on iPhones), so colours
    survive the profile being dropped (untagged images are read as sRGB); long edge reduced to at most
    `max_edge_px` (never enlarged); re-encoded as a baseline JPEG at `jpeg_quality` with no metadata.
    Only the first frame of an animated PNG/WebP or the primary image of a HEIF collection is kept.
    The thumbnail has long edge <= `thumb_edge_px`. Quality figures are measured on the normalised pixels.

    Memory: besides the decoded pixels, at most one full-size copy (to flatten alpha, a palette or 16-bit
    samples); orientation, colour conversion and encoding work at the output size. `inspect` estimates the
    peak (`ImageHeader.decode_bytes`) before any of it is spent.
    """
    sniffed, limit = check_type(data, declared_content_type, max_pixels)
    image = _decode(data, FAMILY[sniffed], limit, max_edge_px)
    orientation = _orientation(image)
    image = _flatten(image)  # each step rebinds `image`, so the bigger copy it came from is freed at once
    target = _fit(image.size, max_edge_px)
    if target != image.size:
        image = image.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
    if orientation in _ORIENT:
        image = image.transpose(_ORIENT[orientation])
    image = _to_srgb(image)
    image.info = {}  # Pillow copies a source JPEG comment (and more) into the output unless told otherwise

    jpeg = _encode(image, jpeg_quality)
    thumbnail = image.resize(_fit(image.size, thumb_edge_px), Image.Resampling.LANCZOS, reducing_gap=2.0)
    return NormalisedImage(
        jpeg=jpeg,
        thumbnail=_encode(thumbnail, _THUMBNAIL_QUALITY),
        width=image.width,
        height=image.height,
        sha256=hashlib.sha256(jpeg).hexdigest(),
        source_content_type=sniffed,
        quality=assess(image),
    )


def _open(
    data: bytes, family: str, limit: int, max_edge_px: int
) -> tuple[ImageFile.ImageFile, tuple[int, int]]:
    """Open with the one decoder the magic bytes name and check the header: pixel count and metadata sizes.
    Nothing is decoded yet. A JPEG is set to decode straight at the smallest DCT scale (1/2, 1/4, 1/8) that
    still gives `max_edge_px` (Pillow's draft mode). Returns the image and its full size (before a draft)."""
    try:
        image = Image.open(io.BytesIO(data), formats=[family])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's own guard fires in open() above Image.MAX_IMAGE_PIXELS (a warning, an error at twice it);
        # its message is the only place the header's pixel count is given.
        found = re.search(r"\((\d+) pixels\)", str(exc))
        raise too_many_pixels(int(found.group(1)) if found else None, limit) from exc
    except Exception as exc:
        raise unreadable(exc) from exc
    source_size = image.size
    try:
        if image.width * image.height > limit:
            raise too_many_pixels(image.size, limit)
        for key, what in (("icc_profile", "colour profile (ICC)"), ("exif", "EXIF")):
            block = image.info.get(key)
            if isinstance(block, bytes | bytearray) and len(block) > MAX_METADATA_BYTES:
                raise metadata_too_large(what, len(block))
        if family == "JPEG":
            wanted = _fit(image.size, max_edge_px)
            if wanted != image.size:
                image.draft("RGB", (math.ceil(wanted[0] * _DRAFT_SLACK), math.ceil(wanted[1] * _DRAFT_SLACK)))
    except BaseException:
        image.close()
        raise
    return image, source_size


def _decode(data: bytes, family: str, limit: int, max_edge_px: int) -> Image.Image:
    """Open (see `_open`), then decode every pixel. Text chunks after a PNG's image data are read here."""
    image, _ = _open(data, family, limit, max_edge_px)
    with image:
        try:
            image.load()
        except Exception as exc:  # truncated, corrupt, or a decoder bug: any of these is the upload's fault
            raise unreadable(exc) from exc
        return image


def _decode_cost(
    data: bytes, image: ImageFile.ImageFile, source_size: tuple[int, int], family: str, max_edge_px: int
) -> int:
    """Upper estimate, in bytes, of the memory `normalise` holds at once for `image` (opened by `_open`,
    so a JPEG is at its draft size): the file itself, the decoded pixels with what each decoder keeps beside
    them, the one full-size working copy `_flatten` may make, the resampling pass, and the work at the
    output size. The figures per pixel are measured ones with a margin (see _DECODER_BYTES_PER_PIXEL)."""
    width, height = image.size
    pixels = width * height
    cost = len(data) + pixels * (_DECODER_BYTES_PER_PIXEL.get(family, 0) + _bytes_per_pixel(image.mode))
    if image.mode not in ("RGB", "L", "CMYK"):
        cost += pixels * _FLATTEN_BYTES_PER_PIXEL.get(image.mode, 4)
        if image.mode == "P" and "transparency" in image.info:
            cost += pixels * 4  # to RGBA, then flattened
    if family == "JPEG" and _jpeg_scans(data) > 1:
        # A progressive or multi-scan JPEG is decoded through libjpeg's whole-image coefficient buffer: one
        # 16-bit coefficient per sample of every component at full size (ITU-T T.81 Annex G), draft or not.
        layers = image.layer  # type: ignore[attr-defined]  # (id, h, v, table) per component
        h_max, v_max = max(layer[1] for layer in layers), max(layer[2] for layer in layers)
        samples = sum(layer[1] * layer[2] for layer in layers) / (h_max * v_max)
        cost += math.ceil(source_size[0] * source_size[1] * samples * 2)
    out_width, out_height = _fit((width, height), max_edge_px)
    if (out_width, out_height) != (width, height):
        cost += 4 * max(out_width * height, width * out_height)  # Pillow resamples in two passes
    return cost + _OUTPUT_BYTES_PER_PIXEL * max(out_width * out_height, 1) + FIXED_DECODE_BYTES


def _bytes_per_pixel(mode: str) -> int:
    """Bytes Pillow stores per pixel (its Storage.c: RGB is padded to four)."""
    if mode in ("1", "L", "P"):
        return 1
    return 2 if mode.startswith("I;16") else 4


def _jpeg_scans(data: bytes) -> int:
    """How many scans (SOS markers) the first image of a JPEG has: 1 for baseline sequential, more for
    progressive or non-interleaved. Marker segments before the first scan are skipped by their lengths, so
    an EXIF thumbnail is not counted; within entropy-coded data 0xFF is always stuffed (T.81 §B.1.1.5), so
    every FF DA up to the first EOI (FF D9) is a scan header. Returns 0 when there is no scan."""
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xDA:
            end = data.find(b"\xff\xd9", pos)
            return 1 + data.count(b"\xff\xda", pos + 2, end if end >= 0 else len(data))
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    return 0


def _orientation(image: Image.Image) -> int:
    """The EXIF Orientation tag (1-8; CIPA DC-008 §4.6.4, TIFF 6.0), 1 when absent or unreadable."""
    try:
        value = image.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:  # a broken EXIF block: shown as stored, as viewers do
        return 1
    return value if isinstance(value, int) else 1


def _flatten(image: Image.Image) -> Image.Image:
    """Reduce any mode to RGB, L or CMYK (what an ICC transform takes), alpha composited on white. At most
    one full-size copy is alive beside `image` (alpha is pasted straight from the source, not split out)."""
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("PA", "La", "RGBa"):
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA"):
        flat = Image.new("RGB", image.size, _WHITE)
        flat.paste(image, mask=image)  # RGBA and LA paste onto RGB directly, their alpha as the mask
        flat.info = image.info
        return flat
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        flat = image.convert("I").point(lambda v: v / 257).convert("L")  # 16-bit grey, e.g. a 16-bit PNG
        flat.info = image.info
        return flat
    if image.mode in ("RGB", "L", "CMYK"):
        return image
    return image.convert("RGB")


def _to_srgb(image: Image.Image) -> Image.Image:
    icc = image.info.get("icc_profile")
    if icc:
        try:
            profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            if "srgb" not in ImageCms.getProfileDescription(profile).lower():
                converted = ImageCms.profileToProfile(
                    image,
                    profile,
                    ImageCms.createProfile("sRGB"),  # per call: LittleCMS profiles are not thread-safe
                    renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC,
                    outputMode="RGB",
                )
                if converted is not None:
                    return converted
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass  # a broken or mismatched profile: keep the pixels as they are, the usual viewer behaviour
    return image if image.mode == "RGB" else image.convert("RGB")


def _fit(size: tuple[int, int], max_edge: int) -> tuple[int, int]:
    width, height = size
    scale = max_edge / max(width, height)
    if scale >= 1:
        return size
    return max(1, round(width * scale)), max(1, round(height * scale))


def _encode(image: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality, optimize=True, progressive=False, subsampling="4:2:0")
    return out.getvalue()
