"""What an upload is: the accepted photo types, sniffing them from their magic bytes, and the rejections
(`ImageRejected`) that tell the user what was wrong with a file. No pixel is decoded here.
"""

from __future__ import annotations

from PIL import Image

#: Largest ICC profile or EXIF block accepted, in bytes. Phones write a few hundred bytes of ICC (Display P3)
#: and tens of KB of EXIF (in a JPEG it cannot pass one 64 KB APP1 segment, CIPA DC-008 §4.7.2); a bigger
#: block is refused from the header, before LittleCMS or Pillow's EXIF reader parse it.
MAX_METADATA_BYTES = 1024 * 1024

ACCEPTED_CONTENT_TYPES: frozenset[str] = frozenset(
    {"image/jpeg", "image/png", "image/webp", "image/heic", "image/heif"}
)

# Other spellings clients send for the accepted types (IANA registry; image/jpg and image/pjpeg are common
# non-standard ones). HEIC is the HEVC-coded brand of HEIF, so the two are one family.
_ALIASES = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg", "image/x-png": "image/png"}
FAMILY = {
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


def check_type(data: bytes, declared_content_type: str, max_pixels: int) -> tuple[str, int]:
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
    if declared is None or FAMILY[declared] != FAMILY[sniffed]:
        raise ImageRejected(
            422,
            "ImageTypeMismatch",
            f"The file was sent as {declared_content_type or 'an unknown type'} but it is a "
            f"{_LABEL[FAMILY[sniffed]]} image. Upload it again with its real type.",
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


def too_many_pixels(size: tuple[int, int] | int | None, limit: int) -> ImageRejected:
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


def metadata_too_large(what: str, size: int | None = None) -> ImageRejected:
    amount = f" ({size / 1e6:.1f} MB)" if size else ""
    return ImageRejected(
        422,
        "ImageMetadataTooLarge",
        f"The image carries an oversized {what} block{amount}, more than a photo ever needs "
        f"(the limit is {MAX_METADATA_BYTES // 1024} KB). Take the photo with the phone camera, or export "
        "it again without extra metadata.",
    )


def unreadable(exc: Exception) -> ImageRejected:
    """The rejection for an exception from Pillow's open() or load(): its PNG plugin raises ValueError
    for text chunks over PngImagePlugin.MAX_TEXT_CHUNK or MAX_TEXT_MEMORY; anything else is corruption."""
    if isinstance(exc, ValueError) and "text" in str(exc).lower():
        return metadata_too_large("text")
    return _undecodable()


def _undecodable() -> ImageRejected:
    return ImageRejected(
        422,
        "ImageUndecodable",
        "The image could not be read: the file is truncated or corrupt. "
        "Upload it again; if that fails, take the photo again.",
    )
