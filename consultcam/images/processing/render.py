"""Burn a clinician's edits (schema: `edits.validate_edits`) into a copy of a stored photo, for download
and commit. The stored photo is never modified.

Edits without annotations (rotation, crop) are burned in losslessly where the JPEG allows it
(`lossless_edits.transform`: jpegtran on the DCT coefficients); everything else is decoded and encoded
once, from the stored copy, at quality 95 (issue 15, "Encode once").
"""

from __future__ import annotations

import functools
import io
import math
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from consultcam.images.processing.decode_cost import FIXED_DECODE_BYTES
from consultcam.images.processing.edits import validate_edits
from consultcam.images.processing.lossless_edits import read_frame, transform

# PIL's ROTATE_* turn counter-clockwise; edits rotate clockwise.
_TRANSPOSE = {90: Image.Transpose.ROTATE_270, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_90}


class StoredPhotoDamaged(ValueError):
    """The stored JPEG no longer decodes (storage corruption): it was verified when it was registered."""


def render_cost(width: int, height: int, size_bytes: int) -> int:
    """Upper estimate, in bytes, of the memory `render` holds at once for a stored JPEG of `width` x
    `height` pixels and `size_bytes`: the decoded photo, its RGB, rotated and cropped copies, the encoder's
    output (4 bytes per pixel each). A lossless transform holds less (jpegtran, in a process of its own,
    keeps the DCT coefficients, about 3 bytes per pixel for 4:2:0, and the two files), so the estimate
    stays an upper bound for either path."""
    return size_bytes + 16 * max(1, width * height) + FIXED_DECODE_BYTES


def render(jpeg: bytes, edits: dict[str, Any] | None, *, jpeg_quality: int = 95) -> bytes:
    """Return a JPEG of `jpeg` with `edits` (schema: validate_edits) burned in, for download and commit.

    Order: rotate clockwise, crop (fractions of the rotated image, rounded to the nearest pixel), then
    draw annotations (fractions of the rotated and cropped image) with a stroke about 1/300 of the long
    edge, a contrasting halo so they read on any background, and text about 1/32 of the long edge high.
    Without annotations, a rotation and a crop whose top-left corner is on the JPEG's block grid are done
    without re-encoding (`lossless_edits.transform`); otherwise the photo is decoded and encoded once at
    `jpeg_quality`, 4:2:0 only when the stored photo is 4:2:0 and has no annotations (a thin coloured line
    needs full-resolution chroma). The output has no metadata. None, {} or edits that change nothing return
    `jpeg` itself, byte for byte. Raises ValueError for invalid edits, including a crop that is smaller
    than one pixel of this image; StoredPhotoDamaged (a ValueError) for a stored photo that cannot be
    decoded (damaged or truncated).
    """
    if not edits:
        return jpeg
    clean = validate_edits(edits)
    crop, rotation = clean["crop"], clean["rotation"]
    full_crop = crop is None or (crop["x"], crop["y"], crop["width"], crop["height"]) == (0, 0, 1, 1)
    if rotation == 0 and full_crop and not clean["annotations"]:
        return jpeg

    frame = read_frame(jpeg)
    if frame is not None and not clean["annotations"]:
        size = (frame.height, frame.width) if rotation in (90, 270) else (frame.width, frame.height)
        box = None if full_crop else _crop_box(crop, size)
        lossless = transform(jpeg, frame, rotation, box)
        if lossless is not None:
            return lossless

    try:
        with Image.open(io.BytesIO(jpeg)) as source:
            image = source.convert("RGB")
    except OSError as exc:  # Pillow's UnidentifiedImageError and "image file is truncated" are OSErrors
        raise StoredPhotoDamaged("the stored photo is damaged and cannot be decoded") from exc
    if rotation:
        image = image.transpose(_TRANSPOSE[rotation])
    if not full_crop:
        image = image.crop(_crop_box(crop, image.size))
    if clean["annotations"]:
        _draw_annotations(image, clean["annotations"])
    image.info = {}
    out = io.BytesIO()
    # Full-resolution chroma when annotations are drawn: 4:2:0 would smear a thin coloured line into grey.
    # Otherwise the stored photo's own subsampling, as far as Pillow can write it after a turn.
    keep_420 = frame is not None and frame.subsampled_420 and not clean["annotations"]
    subsampling = "4:2:0" if keep_420 else "4:4:4"
    image.save(out, "JPEG", quality=jpeg_quality, optimize=True, subsampling=subsampling)
    return out.getvalue()


def _crop_box(crop: dict[str, float], size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The crop's (left, top, right, bottom) in pixels of an image of `size` (the rotated photo)."""
    width, height = size
    box = (
        round(crop["x"] * width),
        round(crop["y"] * height),
        min(width, round((crop["x"] + crop["width"]) * width)),
        min(height, round((crop["y"] + crop["height"]) * height)),
    )
    if box[2] <= box[0] or box[3] <= box[1]:
        raise ValueError("edits.crop is smaller than one pixel of this image")
    return box


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
