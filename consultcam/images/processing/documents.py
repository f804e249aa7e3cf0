"""A photo in the document formats an EMR inbox may insist on (PDF, TIFF), for the connectors."""

from __future__ import annotations

import io

from PIL import Image

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
