"""Verify and normalise an uploaded photo into the one form the system stores.

`normalise` turns whatever a phone uploaded (JPEG, PNG, WebP, HEIC/HEIF) into an upright, sRGB JPEG with no
metadata at all (no EXIF, GPS, XMP, IPTC, comments or ICC profile), plus a thumbnail and quality figures;
`inspect` checks the header first and estimates what decoding will cost. A JPEG that is already in that form
but for its metadata (what the consultcam phone pages send) is stored without re-encoding: its metadata
segments are removed and its pixels kept exactly (issue 15, `processing.lossless`). Nothing here touches
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

from consultcam.analysis.quality import ANALYSIS_EDGE_PX, assess
from consultcam.images.processing.decode_cost import decode_cost, fit
from consultcam.images.processing.formats import (
    FAMILY,
    MAX_METADATA_BYTES,
    check_type,
    metadata_too_large,
    too_many_pixels,
    unreadable,
)
from consultcam.images.processing.lossless import strip_metadata

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


@dataclass(frozen=True)
class NormalisedImage:
    """An uploaded photo in stored form: `jpeg` is upright, sRGB, metadata-free, sequential (SOF0, or SOF1
    when an extended-sequential upload was kept as it was); `thumbnail` is a
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
        cost = decode_cost(data, image, source_size, family, max_edge_px)
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

    Except a conforming JPEG (issue 15): 8-bit, Huffman-coded, sequential (baseline), three components,
    long edge within `max_edge_px`, upright (EXIF orientation absent or 1), untagged or tagged sRGB, with a
    structure `lossless.strip_metadata` fully understands. It is stored as uploaded less its metadata
    segments (the same pixels, the same scan bytes), after steps 1-3 and a decode of every scan of the
    stored bytes (step 4); its thumbnail and quality figures come from that decode at a reduced DCT scale.

    Memory: besides the decoded pixels, at most one full-size copy (to flatten alpha, a palette or 16-bit
    samples); orientation, colour conversion and encoding work at the output size. `inspect` estimates the
    peak (`ImageHeader.decode_bytes`) before any of it is spent.
    """
    sniffed, limit = check_type(data, declared_content_type, max_pixels)
    if FAMILY[sniffed] == "JPEG":
        kept = _kept_as_uploaded(data, limit, max_edge_px, thumb_edge_px)
        if kept is not None:
            return kept
    image = _decode(data, FAMILY[sniffed], limit, max_edge_px)
    orientation = _orientation(image)
    image = _flatten(image)  # each step rebinds `image`, so the bigger copy it came from is freed at once
    target = fit(image.size, max_edge_px)
    if target != image.size:
        image = image.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
    if orientation in _ORIENT:
        image = image.transpose(_ORIENT[orientation])
    image = _to_srgb(image)
    image.info = {}  # Pillow copies a source JPEG comment (and more) into the output unless told otherwise

    jpeg = _encode(image, jpeg_quality)
    thumbnail = image.resize(fit(image.size, thumb_edge_px), Image.Resampling.LANCZOS, reducing_gap=2.0)
    return NormalisedImage(
        jpeg=jpeg,
        thumbnail=_encode(thumbnail, _THUMBNAIL_QUALITY),
        width=image.width,
        height=image.height,
        sha256=hashlib.sha256(jpeg).hexdigest(),
        source_content_type=sniffed,
        quality=assess(image),
    )


def _kept_as_uploaded(
    data: bytes, limit: int, max_edge_px: int, thumb_edge_px: int
) -> NormalisedImage | None:
    """A conforming JPEG stored without re-encoding (see `normalise`), or None for the normalising path.

    The decode that verifies it runs at the smallest DCT scale that still gives the thumbnail and the
    quality figures (1/4 for a 2048 px photo): libjpeg parses every Huffman code of every scan whatever the
    output scale (jdhuff.c decodes and discards the coefficients a scaled IDCT does not use), so a corrupt
    or truncated scan fails here as it would at full scale, and only the IDCT and upsampling, which cannot
    fail, are done at the small size. A file that fails is left to the normalising path to refuse.
    """
    image, size = _open(data, "JPEG", limit, max_edge_px)  # refuses as the normalising path does
    with image:
        # Progressive is re-encoded: a stored photo stays sequential (SOF0/SOF1), as DICOM's JPEG Baseline
        # and Extended transfer syntaxes and a TIFF's JPEG strip carry it unchanged (commits.dicom, fitted).
        conforming = (
            max(size) <= max_edge_px
            and image.mode == "RGB"
            and "progression" not in image.info
            and _orientation(image) == 1
            and _srgb(image)
        )
    if not conforming:
        return None
    stored = strip_metadata(data)
    if stored is None:
        return None
    try:
        with Image.open(io.BytesIO(stored), formats=["JPEG"]) as check:
            if check.size != size or check.mode != "RGB":
                return None
            check.draft("RGB", fit(size, max(ANALYSIS_EDGE_PX, thumb_edge_px)))
            check.load()
            reduced: Image.Image = check
    except Exception:
        return None
    thumbnail = reduced.resize(fit(size, thumb_edge_px), Image.Resampling.LANCZOS, reducing_gap=2.0)
    return NormalisedImage(
        jpeg=stored,
        thumbnail=_encode(thumbnail, _THUMBNAIL_QUALITY),
        width=size[0],
        height=size[1],
        sha256=hashlib.sha256(stored).hexdigest(),
        source_content_type="image/jpeg",
        quality=assess(reduced, size=size),
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
            wanted = fit(image.size, max_edge_px)
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


def _srgb(image: Image.Image) -> bool:
    """Whether `image` is untagged or tagged with a profile named sRGB (false for a profile that cannot be
    read): its pixels are shown the same with the profile dropped."""
    icc = image.info.get("icc_profile")
    if not icc:
        return True
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        return "srgb" in ImageCms.getProfileDescription(profile).lower()
    except (ImageCms.PyCMSError, OSError, ValueError):
        return False


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


def _encode(image: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality, optimize=True, progressive=False, subsampling="4:2:0")
    return out.getvalue()
