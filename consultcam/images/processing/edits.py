"""The clinician's non-destructive edits (rotation, crop, annotations): their model and its validation.

The same conventions are in the editor page (consultcam/web/static/js/edit-geometry.js); `render` burns
edits in.
"""

from __future__ import annotations

import math
import re
from typing import Any

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
