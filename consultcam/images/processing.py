"""Verify, normalise and render clinical photos.

`normalise` turns whatever a phone uploaded (JPEG, PNG, WebP, HEIC/HEIF) into the one form the rest of the
system stores: an upright, sRGB, baseline JPEG with no metadata at all (no EXIF, GPS, XMP, IPTC, comments or
ICC profile), plus a thumbnail and quality figures. `render` burns the clinician's non-destructive edits
(rotation, crop, annotations) into a copy for download and commit; `validate_edits` checks them first.
Nothing here touches storage or the database.
"""

from __future__ import annotations

import functools
import hashlib
import io
import math
import re
from dataclasses import dataclass
from typing import Any

import pillow_heif
from PIL import ExifTags, Image, ImageCms, ImageDraw, ImageFile, ImageFont, PngImagePlugin

from consultcam.analysis.quality import assess

# Only the primary image of a HEIF file is ever used: its thumbnails, depth maps and auxiliary images are
# neither listed nor decoded.
pillow_heif.register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)

#: Largest ICC profile or EXIF block accepted, in bytes. Phones write a few hundred bytes of ICC (Display P3)
#: and tens of KB of EXIF (in a JPEG it cannot pass one 64 KB APP1 segment, CIPA DC-008 §4.7.2); a bigger
#: block is refused from the header, before LittleCMS or Pillow's EXIF reader parse it.
MAX_METADATA_BYTES = 1024 * 1024

# Pillow keeps a PNG's text chunks (tEXt, zTXt, iTXt) in memory, 64 MB of them by default, and zTXt
# compresses about 1000:1: a small file could make it inflate all of that. The photo's text is dropped anyway.
PngImagePlugin.MAX_TEXT_MEMORY = MAX_METADATA_BYTES

ACCEPTED_CONTENT_TYPES: frozenset[str] = frozenset(
    {"image/jpeg", "image/png", "image/webp", "image/heic", "image/heif"}
)

# Other spellings clients send for the accepted types (IANA registry; image/jpg and image/pjpeg are common
# non-standard ones). HEIC is the HEVC-coded brand of HEIF, so the two are one family.
_ALIASES = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg", "image/x-png": "image/png"}
_FAMILY = {
    "image/jpeg": "JPEG",
    "image/png": "PNG",
    "image/webp": "WEBP",
    "image/heic": "HEIF",
    "image/heif": "HEIF",
}
_LABEL = {"JPEG": "JPEG", "PNG": "PNG", "WEBP": "WebP", "HEIF": "HEIC/HEIF"}

# ISO/IEC 23008-12 (HEIF) brands in the `ftyp` box: HEVC-coded still images, and the generic image brands.
# AVIF shares the container but is not accepted (no AV1 decoder is guaranteed here).
_HEIC_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis"})
_HEIF_BRANDS = frozenset({b"mif1", b"mif2"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})

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
_FIXED_DECODE_BYTES = 8 * 1024 * 1024


class ImageRejected(Exception):
    """Bytes that are not an acceptable photo.

    `status` is the HTTP status (415 unsupported type, 422 type mismatch, too many pixels or undecodable),
    `error` a short CamelCase name ('UnsupportedImageType', 'ImageTypeMismatch', 'ImageTooManyPixels',
    'ImageUndecodable') and `detail` a sentence telling the user what went wrong and what to do; together
    they make the `{error, detail}` error body.
    """

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail


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


def sniff_content_type(head: bytes) -> str | None:
    """Identify an image from its magic bytes.

    `head` is the start of the file; 32 bytes identify every accepted type, more lets a HEIF `ftyp` box
    with a long brand list be read in full. Returns one of ACCEPTED_CONTENT_TYPES, or None for anything
    else (GIF, SVG, PDF, AVIF, TIFF, text, empty...). Sources: JPEG SOI marker (ITU-T T.81), PNG signature
    (RFC 2083 §3.1), RIFF/WEBP header (RFC 9649 §2), ISO BMFF `ftyp` brands (ISO/IEC 23008-12 Annex B).
    """
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[4:8] == b"ftyp" and len(head) >= 12:
        box_end = min(len(head), max(16, int.from_bytes(head[:4], "big")))
        brands = {head[8:12]} | {head[i : i + 4] for i in range(16, box_end - 3, 4)}
        if brands & _HEIC_BRANDS:
            return "image/heic"
        if brands & _HEIF_BRANDS and not brands & _AVIF_BRANDS:
            return "image/heif"
    return None


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
    sniffed, limit = _check_type(data, declared_content_type, max_pixels)
    family = _FAMILY[sniffed]
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
    sniffed, limit = _check_type(data, declared_content_type, max_pixels)
    image = _decode(data, _FAMILY[sniffed], limit, max_edge_px)
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


def _check_type(data: bytes, declared_content_type: str, max_pixels: int) -> tuple[str, int]:
    """Steps 1 and 2 of `normalise`: the type the magic bytes name, and the pixel limit that applies."""
    sniffed = sniff_content_type(data[:256])
    if sniffed is None:
        raise ImageRejected(
            415,
            "UnsupportedImageType",
            f"This file is {_describe(data[:256])}, not a photo we can accept. "
            "Take the photo with the camera, or choose a JPEG, PNG, WebP or HEIC image.",
        )
    declared = _canonical_type(declared_content_type)
    if declared is None or _FAMILY[declared] != _FAMILY[sniffed]:
        raise ImageRejected(
            422,
            "ImageTypeMismatch",
            f"The file was sent as {declared_content_type or 'an unknown type'} but it is a "
            f"{_LABEL[_FAMILY[sniffed]]} image. Upload it again with its real type.",
        )
    limit = max_pixels if Image.MAX_IMAGE_PIXELS is None else min(max_pixels, Image.MAX_IMAGE_PIXELS)
    return sniffed, limit


def _canonical_type(content_type: str) -> str | None:
    media_type = content_type.split(";", 1)[0].strip().lower()
    media_type = _ALIASES.get(media_type, media_type)
    return media_type if media_type in ACCEPTED_CONTENT_TYPES else None


def _describe(head: bytes) -> str:
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if not head:
        return "empty"
    for prefix, what in (
        (b"gif8", "a GIF image"),
        (b"%pdf", "a PDF document"),
        (b"<svg", "an SVG drawing"),
        (b"<?xml", "an XML or SVG document"),
        (b"ii*\x00", "a TIFF image"),
        (b"mm\x00*", "a TIFF image"),
        (b"bm", "a BMP image"),
    ):
        if stripped.startswith(prefix):
            return what
    if head[4:8] == b"ftyp":
        return "an AVIF or video file" if b"avi" in head[8:64] else "a video or unsupported HEIF file"
    if all(32 <= byte < 127 or byte in b"\t\r\n" for byte in head):
        return "a text file"
    return "an unrecognised file"


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
        raise _too_many_pixels(int(found.group(1)) if found else None, limit) from exc
    except Exception as exc:
        raise _unreadable(exc) from exc
    source_size = image.size
    try:
        if image.width * image.height > limit:
            raise _too_many_pixels(image.size, limit)
        for key, what in (("icc_profile", "colour profile (ICC)"), ("exif", "EXIF")):
            block = image.info.get(key)
            if isinstance(block, bytes | bytearray) and len(block) > MAX_METADATA_BYTES:
                raise _metadata_too_large(what, len(block))
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
            raise _unreadable(exc) from exc
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
    return cost + _OUTPUT_BYTES_PER_PIXEL * max(out_width * out_height, 1) + _FIXED_DECODE_BYTES


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


def _too_many_pixels(size: tuple[int, int] | int | None, limit: int) -> ImageRejected:
    if isinstance(size, tuple):
        what = f"{size[0]} × {size[1]} pixels ({size[0] * size[1] / 1e6:.0f} megapixels)"
    else:
        what = f"{size / 1e6:.0f} megapixels" if size else "too large"
    return ImageRejected(
        422,
        "ImageTooManyPixels",
        f"The image is {what}, more than the {limit / 1e6:.0f}-megapixel limit. "
        "Take the photo with the phone camera, or resize it before uploading.",
    )


def _metadata_too_large(what: str, size: int | None = None) -> ImageRejected:
    amount = f" ({size / 1e6:.1f} MB)" if size else ""
    return ImageRejected(
        422,
        "ImageMetadataTooLarge",
        f"The image carries an oversized {what} block{amount}, more than a photo ever needs "
        f"(the limit is {MAX_METADATA_BYTES // 1024} KB). Take the photo with the phone camera, or export "
        "it again without extra metadata.",
    )


def _unreadable(exc: Exception) -> ImageRejected:
    """The rejection for an exception from Pillow's open() or load(): its PNG plugin raises ValueError
    for text chunks over PngImagePlugin.MAX_TEXT_CHUNK or MAX_TEXT_MEMORY; anything else is corruption."""
    if isinstance(exc, ValueError) and "text" in str(exc).lower():
        return _metadata_too_large("text")
    return _undecodable()


def _undecodable() -> ImageRejected:
    return ImageRejected(
        422,
        "ImageUndecodable",
        "The image could not be read: the file is truncated or corrupt. "
        "Upload it again; if that fails, take the photo again.",
    )


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


# --- edits ------------------------------------------------------------------------------------------------

ROTATIONS = (0, 90, 180, 270)
ANNOTATION_TYPES = ("arrow", "circle", "text")
DEFAULT_ANNOTATION_COLOR = "#ffcc00"  # high-visibility yellow: stands out on skin, blood and drapes alike
MAX_ANNOTATIONS = 50
MAX_TEXT_LENGTH = 200

#: The smallest crop side, as a fraction: 1 % of a 2048 px photo is 20 px. Edits are validated without the
#: photo's size, so `render` still refuses a crop under one pixel of a tiny photo.
MIN_CROP_FRACTION = 0.01
_EDIT_KEYS = frozenset({"rotation", "crop", "annotations"})
_CROP_KEYS = ("x", "y", "width", "height")
_ANNOTATION_KEYS = frozenset({"id", "type", "x1", "y1", "x2", "y2", "text", "color"})
_COLOR = re.compile(r"#[0-9a-fA-F]{6}")
# PIL's ROTATE_* turn counter-clockwise; edits rotate clockwise.
_TRANSPOSE = {90: Image.Transpose.ROTATE_270, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_90}
_EPSILON = 1e-9


def validate_edits(edits: dict[str, Any]) -> dict[str, Any]:
    """Check a clinician's edits and return them in canonical form.

    Input (all keys optional; unknown keys are errors so that a client's typo is not silently ignored):
    ``rotation``: clockwise degrees, a multiple of 90 (stored as 0, 90, 180 or 270; -90 becomes 270);
    ``crop``: ``{x, y, width, height}``, fractions 0..1 of the rotated image, non-empty, inside it, or null;
    ``annotations``: up to MAX_ANNOTATIONS of ``{type: "arrow"|"circle"|"text", x1, y1, x2, y2, text?,
    color?: "#rrggbb", id?}`` with coordinates as fractions 0..1 of the final (rotated, cropped) image.
    An arrow goes from (x1, y1) to its head at (x2, y2); a circle is the ellipse in the box they span; text
    is drawn with its top-left at (x1, y1) and needs non-empty ``text`` (x2/y2 are optional for it).

    Returns ``{"rotation": int, "crop": dict | None, "annotations": [dict]}`` with floats for coordinates
    and a lower-case colour (default DEFAULT_ANNOTATION_COLOR). Raises ValueError with a message naming
    the offending field, fit to show to the client (the PATCH endpoint returns it as a 422 detail).
    """
    if not isinstance(edits, dict):
        raise ValueError("edits must be an object with rotation, crop and annotations")
    unknown = sorted(set(edits) - _EDIT_KEYS)
    if unknown:
        raise ValueError(
            f"edits has unknown field(s) {', '.join(unknown)}; allowed: annotations, crop, rotation"
        )

    rotation = edits.get("rotation", 0)
    if rotation is None:
        rotation = 0
    if not _is_number(rotation) or rotation % 90 != 0:
        raise ValueError(f"edits.rotation must be 0, 90, 180 or 270 (clockwise degrees), got {rotation!r}")
    rotation = int(rotation) % 360

    return {
        "rotation": rotation,
        "crop": _validate_crop(edits.get("crop")),
        "annotations": _validate_annotations(edits.get("annotations")),
    }


def _validate_crop(crop: Any) -> dict[str, float] | None:
    if crop is None:
        return None
    if not isinstance(crop, dict):
        raise ValueError("edits.crop must be an object {x, y, width, height} or null")
    unknown = sorted(set(crop) - set(_CROP_KEYS))
    if unknown:
        raise ValueError(
            f"edits.crop has unknown field(s) {', '.join(unknown)}; allowed: x, y, width, height"
        )
    values = {key: _fraction(crop.get(key), f"edits.crop.{key}") for key in _CROP_KEYS}
    if values["width"] < MIN_CROP_FRACTION or values["height"] < MIN_CROP_FRACTION:
        raise ValueError(
            f"edits.crop is too small: width and height must be at least {MIN_CROP_FRACTION:g} "
            f"({MIN_CROP_FRACTION:.0%} of the photo); draw a larger crop"
        )
    if values["x"] + values["width"] > 1 + _EPSILON or values["y"] + values["height"] > 1 + _EPSILON:
        raise ValueError("edits.crop goes outside the image: x + width and y + height must be at most 1")
    return values


def _validate_annotations(annotations: Any) -> list[dict[str, Any]]:
    if annotations is None:
        return []
    if not isinstance(annotations, list):
        raise ValueError("edits.annotations must be a list")
    if len(annotations) > MAX_ANNOTATIONS:
        raise ValueError(
            f"edits.annotations has {len(annotations)} items; at most {MAX_ANNOTATIONS} are allowed"
        )
    return [_validate_annotation(item, f"edits.annotations[{i}]") for i, item in enumerate(annotations)]


def _validate_annotation(item: Any, where: str) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise ValueError(f"{where} must be an object")
    unknown = sorted(set(item) - _ANNOTATION_KEYS)
    if unknown:
        raise ValueError(f"{where} has unknown field(s) {', '.join(unknown)}")
    kind = item.get("type")
    if kind not in ANNOTATION_TYPES:
        raise ValueError(f"{where}.type must be one of arrow, circle, text; got {kind!r}")
    clean: dict[str, Any] = {"type": kind}
    if item.get("id") is not None:
        if not isinstance(item["id"], str) or len(item["id"]) > 64:
            raise ValueError(f"{where}.id must be a string of at most 64 characters")
        clean["id"] = item["id"]
    needs_end = kind != "text"
    for key in ("x1", "y1", "x2", "y2"):
        if key in ("x2", "y2") and not needs_end and item.get(key) is None:
            continue
        clean[key] = _fraction(item.get(key), f"{where}.{key}")
    if needs_end and (clean["x1"], clean["y1"]) == (clean["x2"], clean["y2"]):
        raise ValueError(f"{where}: {kind} needs two different points (x1, y1) and (x2, y2)")
    text = item.get("text")
    if text is not None:
        if not isinstance(text, str) or len(text) > MAX_TEXT_LENGTH:
            raise ValueError(f"{where}.text must be a string of at most {MAX_TEXT_LENGTH} characters")
        clean["text"] = text
    if kind == "text" and not (text or "").strip():
        raise ValueError(f"{where}: a text annotation needs some text")
    color = item.get("color")
    if color is None:
        color = DEFAULT_ANNOTATION_COLOR
    if not isinstance(color, str) or not _COLOR.fullmatch(color):
        raise ValueError(f"{where}.color must look like #rrggbb, got {color!r}")
    clean["color"] = color.lower()
    return clean


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _fraction(value: Any, where: str) -> float:
    if not _is_number(value) or not 0 <= value <= 1:
        raise ValueError(f"{where} must be a number from 0 to 1 (a fraction of the image), got {value!r}")
    return float(value)


def render_cost(width: int, height: int, size_bytes: int) -> int:
    """Upper estimate, in bytes, of the memory `render` holds at once for a stored JPEG of `width` x
    `height` pixels and `size_bytes`: the decoded photo, its RGB, rotated and cropped copies, the encoder's
    output (4 bytes per pixel each)."""
    return size_bytes + 16 * max(1, width * height) + _FIXED_DECODE_BYTES


def render(jpeg: bytes, edits: dict[str, Any] | None, *, jpeg_quality: int = 90) -> bytes:
    """Return a JPEG of `jpeg` with `edits` (schema: validate_edits) burned in, for download and commit.

    Order: rotate clockwise, crop (fractions of the rotated image), then draw annotations (fractions of
    the rotated and cropped image) with a stroke about 1/300 of the long edge, a contrasting halo so they
    read on any background, and text about 1/32 of the long edge high. The original is never modified.
    None, {} or edits that change nothing return `jpeg` itself, byte for byte. Raises ValueError for
    invalid edits, including a crop that is smaller than one pixel of this image.
    """
    if not edits:
        return jpeg
    clean = validate_edits(edits)
    crop = clean["crop"]
    full_crop = crop is None or (crop["x"], crop["y"], crop["width"], crop["height"]) == (0, 0, 1, 1)
    if clean["rotation"] == 0 and full_crop and not clean["annotations"]:
        return jpeg

    with Image.open(io.BytesIO(jpeg)) as source:
        image = source.convert("RGB")
    if clean["rotation"]:
        image = image.transpose(_TRANSPOSE[clean["rotation"]])
    if not full_crop:
        width, height = image.size
        box = (
            round(crop["x"] * width),
            round(crop["y"] * height),
            min(width, round((crop["x"] + crop["width"]) * width)),
            min(height, round((crop["y"] + crop["height"]) * height)),
        )
        if box[2] <= box[0] or box[3] <= box[1]:
            raise ValueError("edits.crop is smaller than one pixel of this image")
        image = image.crop(box)
    if clean["annotations"]:
        _draw_annotations(image, clean["annotations"])
    image.info = {}
    out = io.BytesIO()
    # Full-resolution chroma when annotations are drawn: 4:2:0 would smear a thin coloured line into grey.
    subsampling = "4:4:4" if clean["annotations"] else "4:2:0"
    image.save(out, "JPEG", quality=jpeg_quality, optimize=True, subsampling=subsampling)
    return out.getvalue()


def _draw_annotations(image: Image.Image, annotations: list[dict[str, Any]]) -> None:
    draw = ImageDraw.Draw(image)
    width, height = image.size
    long_edge = max(width, height)
    stroke = max(3, round(long_edge / 300))
    halo = max(1, stroke // 2)

    def point(x: float, y: float) -> tuple[float, float]:
        return x * (width - 1), y * (height - 1)

    for item in annotations:
        color = _rgb(item["color"])
        outline = _halo_color(color)
        start = point(item["x1"], item["y1"])
        if item["type"] == "text":
            _draw_text(draw, image.size, start, item["text"], color, outline, max(12, round(long_edge / 32)))
            continue
        end = point(item["x2"], item["y2"])
        if item["type"] == "circle":
            box = (min(start[0], end[0]), min(start[1], end[1]), max(start[0], end[0]), max(start[1], end[1]))
            grown = (box[0] - halo, box[1] - halo, box[2] + halo, box[3] + halo)
            draw.ellipse(grown, outline=outline, width=stroke + 2 * halo)
            draw.ellipse(box, outline=color, width=stroke)
        else:
            shaft_end, head = _arrow(start, end, stroke)
            draw.line([start, shaft_end], fill=outline, width=stroke + 2 * halo)
            draw.polygon(head, fill=outline, outline=outline, width=2 * halo)
            draw.line([start, shaft_end], fill=color, width=stroke)
            draw.polygon(head, fill=color)


def _arrow(
    start: tuple[float, float], end: tuple[float, float], stroke: int
) -> tuple[tuple[float, float], list[tuple[float, float]]]:
    """The shaft's end and the head's triangle of an arrow pointing at `end`."""
    dx, dy = end[0] - start[0], end[1] - start[1]
    length = math.hypot(dx, dy) or 1.0
    ux, uy = dx / length, dy / length
    head_length = min(length, 5.0 * stroke)
    half_width = 0.6 * head_length
    base = (end[0] - ux * head_length, end[1] - uy * head_length)
    head = [
        end,
        (base[0] - uy * half_width, base[1] + ux * half_width),
        (base[0] + uy * half_width, base[1] - ux * half_width),
    ]
    # Stop the shaft inside the head so its square end does not poke out beside the tip.
    shaft_end = (end[0] - ux * head_length * 0.5, end[1] - uy * head_length * 0.5)
    return shaft_end, head


def _draw_text(
    draw: ImageDraw.ImageDraw,
    size: tuple[int, int],
    origin: tuple[float, float],
    text: str,
    color: tuple[int, int, int],
    outline: tuple[int, int, int],
    font_size: int,
) -> None:
    font = _font(font_size)
    outline_width = max(1, round(font_size / 14))
    left, top, right, bottom = draw.textbbox(origin, text, font=font, stroke_width=outline_width)
    # Keep the label inside the picture: a label placed near the right or bottom edge is moved in.
    x = origin[0] - max(0.0, right - size[0] + 1) + max(0.0, -left)
    y = origin[1] - max(0.0, bottom - size[1] + 1) + max(0.0, -top)
    draw.text((x, y), text, fill=color, font=font, stroke_width=outline_width, stroke_fill=outline)


# Pillow's built-in font covers ASCII only; these cover Latin Extended (Māori macrons, accented names).
# Debian/Ubuntu packages: fonts-dejavu-core, fonts-liberation, fonts-noto-core.
_LABEL_FONTS = ("DejaVuSans-Bold.ttf", "LiberationSans-Bold.ttf", "NotoSans-Bold.ttf")


@functools.cache
def _label_font_path() -> str | None:
    for name in _LABEL_FONTS:
        try:
            return str(ImageFont.truetype(name, 12).path)  # Pillow searches the system font folders
        except OSError:
            continue
    return None


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    # A new face per call (under a millisecond): FreeType faces must not be shared between threads.
    path = _label_font_path()
    return ImageFont.truetype(path, size) if path else ImageFont.load_default(size=size)


def _rgb(color: str) -> tuple[int, int, int]:
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


def _halo_color(color: tuple[int, int, int]) -> tuple[int, int, int]:
    luma = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
    return (0, 0, 0) if luma >= 128 else (255, 255, 255)


#: Document formats an EMR inbox may insist on, with their MIME types (FHIR R4 Attachment.contentType).
DOCUMENT_FORMATS = {"jpeg": "image/jpeg", "pdf": "application/pdf", "tiff": "image/tiff"}


def convert_for_document(jpeg: bytes, fmt: str, *, title: str = "Clinical photograph") -> tuple[bytes, str]:
    """The photo as `fmt` ("jpeg": unchanged; "pdf": one page the size of the photo at 150 dpi; "tiff":
    LZW-compressed, lossless from the JPEG's pixels), for inboxes that take only those. Returns (bytes, MIME
    type). Raises ValueError for another format. The PDF embeds the photo as JPEG (Pillow re-encodes it at
    quality 95); no metadata but the title is written."""
    if fmt not in DOCUMENT_FORMATS:
        raise ValueError(f"document format must be one of {', '.join(DOCUMENT_FORMATS)}, not {fmt!r}")
    if fmt == "jpeg":
        return jpeg, DOCUMENT_FORMATS[fmt]
    with Image.open(io.BytesIO(jpeg)) as source:
        image = source.convert("RGB")
    out = io.BytesIO()
    if fmt == "pdf":
        image.save(
            out, "PDF", resolution=150.0, quality=95, title=title, producer="consultcam", creator="consultcam"
        )
    else:
        image.save(out, "TIFF", compression="tiff_lzw")
    return out.getvalue(), DOCUMENT_FORMATS[fmt]
