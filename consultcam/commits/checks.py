"""The checks a commit makes before it claims the session: every chosen photo carries the metadata the
practice requires (`CONSULTCAM_REQUIRED_METADATA`, issue 5)."""

from __future__ import annotations

from collections.abc import Sequence

from consultcam.errors import Unprocessable
from consultcam.models import ClinicalImage

#: How the commit check names a missing field to the user.
_FIELD_WORDS = {"bodySite": "a body site", "laterality": "a side", "view": "a view", "label": "a label"}


def check_required_metadata(
    gallery: Sequence[ClinicalImage], chosen: Sequence[ClinicalImage], required: Sequence[str]
) -> None:
    """Raise Unprocessable (422 `MetadataMissing`) when a chosen photo lacks a field of `required`
    (`CONSULTCAM_REQUIRED_METADATA`: bodySite, laterality, view, label). Photos are named by their number
    in `gallery` (the session's ready photos, oldest first, as the desktop shows them): "Photo 2 and photo
    5 need a body site: add it on the desktop, then commit." The error's body also carries
    `missing: [{imageId, fields}]`, in gallery order."""
    if not required:
        return
    number = {image.id: n for n, image in enumerate(gallery, start=1)}
    missing = []
    for image in sorted(chosen, key=lambda i: number[i.id]):
        metadata = image.image_metadata or {}
        fields = [name for name in required if not metadata.get(name)]
        if fields:
            missing.append((number[image.id], image.id, fields))
    if not missing:
        return
    phrases = []
    for field_name in required:
        numbers = [n for n, _, fields in missing if field_name in fields]
        if numbers:
            photos = _and([f"photo {n}" for n in numbers])
            verb = "needs" if len(numbers) == 1 else "need"
            phrases.append(f"{photos} {verb} {_FIELD_WORDS.get(field_name, field_name)}")
    sentence = "; ".join(phrases)
    pronoun = "it" if len(phrases) == 1 else "them"
    raise Unprocessable(
        f"{sentence[0].upper()}{sentence[1:]}: add {pronoun} on the desktop, then commit.",
        error="MetadataMissing",
        extra={"missing": [{"imageId": image_id, "fields": fields} for _, image_id, fields in missing]},
    )


def _and(words: list[str]) -> str:
    """["a"] → "a"; ["a", "b"] → "a and b"; ["a", "b", "c"] → "a, b and c"."""
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"
