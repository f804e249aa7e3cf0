"""What decoding an upload will cost in memory, estimated from its header before any pixel is decoded
(`decode_cost`, for `consultcam.images.admission`), and the size a photo is stored at (`fit`)."""

from __future__ import annotations

import math

from PIL import ImageFile

# Decode memory (`decode_cost`). Measured as the growth of peak RSS (VmHWM) of a fresh process normalising
# flat 45-megapixel files (Pillow 13, libwebp through Pillow, libheif 1.23), bytes per source pixel:
# PNG RGB 5.4, RGBA or LA 8.0, palette 5.4, 16-bit grey 10.0, grey 1.4; WebP 16.0; HEIC 7.3 (RGBA 8.3);
# JPEG 1.8 baseline (decoded at 1/2 scale), 4.0 progressive 4:2:0, 7.0 progressive 4:4:4. The estimate is
# 1.1 to 1.7 times those; tests/images/test_processing.py checks it still bounds them. What a decoder
# holds per pixel beside Pillow's own image: libwebp the canvas and the previous frame (WebPAnimDecoder)
# and Pillow a bytes copy of the frame; libheif its decoded planes.
_DECODER_BYTES_PER_PIXEL = {"WEBP": 12, "HEIF": 4}
# The full-size copy `normalise._flatten` makes, per pixel, by mode (modes not listed: 4).
_FLATTEN_BYTES_PER_PIXEL = {"P": 4, "I": 8, "I;16": 8, "I;16B": 8, "I;16L": 8, "F": 8}
# Per output pixel: the resized image, its sRGB copy, the thumbnail, the quality figures and the encoders.
_OUTPUT_BYTES_PER_PIXEL = 8
#: Memory every decode or render holds besides its pixels (interpreter, libraries, buffers), in bytes.
FIXED_DECODE_BYTES = 8 * 1024 * 1024


def decode_cost(
    data: bytes, image: ImageFile.ImageFile, source_size: tuple[int, int], family: str, max_edge_px: int
) -> int:
    """Upper estimate, in bytes, of the memory `normalise` holds at once for `image` (opened by
    `normalise._open`, so a JPEG is at its draft size): the file itself, the decoded pixels with what each
    decoder keeps beside them, the one full-size working copy `_flatten` may make, the resampling pass, and
    the work at the output size. The figures per pixel are measured ones with a margin (see
    _DECODER_BYTES_PER_PIXEL)."""
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
    out_width, out_height = fit((width, height), max_edge_px)
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


def fit(size: tuple[int, int], max_edge: int) -> tuple[int, int]:
    """`size` (width, height in pixels) scaled down to a long edge of at most `max_edge`, never enlarged."""
    width, height = size
    scale = max_edge / max(width, height)
    if scale >= 1:
        return size
    return max(1, round(width * scale)), max(1, round(height * scale))
