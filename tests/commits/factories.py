"""Test objects the connector tests share: a commit context, a progress recorder and photos to commit."""

from __future__ import annotations

import dataclasses
import io
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from PIL import Image

from consultcam.commits.connectors.base import CommitContext, CommitItem, PatientRef

PATIENT = PatientRef(id="pat-77", name="Aroha Ngata", nhi="ZZZ0016")
COMMITTED_AT = datetime(2025, 1, 15, 2, 30, 5, tzinfo=UTC)


def commit_context(**changes: Any) -> CommitContext:
    """A commit for Aroha Ngata (NHI ZZZ0016) by practitioner prac-9 with a fresh commit id; `changes`
    replace any field."""
    context = CommitContext(
        session_id="s-1",
        commit_id=uuid.uuid4().hex,
        encounter_id="enc-1",
        patient=PATIENT,
        practitioner_id="prac-9",
        facility_id=None,
        committed_at=COMMITTED_AT,
    )
    return dataclasses.replace(context, **changes)


class Progress:
    """Records the (done, total) calls a connector makes."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    async def __call__(self, done: int, total: int) -> None:
        self.calls.append((done, total))


PHOTOS = Path(__file__).resolve().parents[1] / "photos"
PHOTO_FILES = ("fundus-left-eye.jpg", "coffee.jpg", "cat.jpg", "rocket.jpg")
FOREARM = {"system": "http://snomed.info/sct", "code": "14975008", "display": "Forearm structure"}


def photo_item(jpeg: bytes, index: int = 0, **metadata: Any) -> CommitItem:
    """One photo to commit: `jpeg` with its real size, taken 15 Jan 2025 in NZDT, labelled "Lesion A", "Lesion
    B", … by `index`, with `metadata` (body site, laterality, view, notes) on top."""
    with Image.open(io.BytesIO(jpeg)) as image:
        width, height = image.size
    return CommitItem(
        image_id=str(uuid.uuid4()),
        jpeg=jpeg,
        width=width,
        height=height,
        captured_at=datetime(2025, 1, 15, 15, 12, 40, tzinfo=timezone(timedelta(hours=13))),
        created_at=datetime(2025, 1, 15, 2, 13, 0, tzinfo=UTC),
        metadata={"label": f"Lesion {chr(65 + index)}", **metadata},
    )


def photo_items(count: int, **metadata: Any) -> list[CommitItem]:
    """`count` of the real test photos (tests/photos, in turn), see `photo_item`."""
    return [
        photo_item((PHOTOS / PHOTO_FILES[index % len(PHOTO_FILES)]).read_bytes(), index, **metadata)
        for index in range(count)
    ]


def megabyte_photo(index: int, limit: int = 1024 * 1024) -> bytes:
    """A real photo (tests/photos, in turn by `index`) re-encoded at 2048 px, the largest JPEG quality that
    stays within `limit` bytes: what a phone sends at CAPTURE_MAX_BYTES (about 1 MB)."""
    with Image.open(PHOTOS / PHOTO_FILES[index % len(PHOTO_FILES)]) as original:
        image = original.convert("RGB")
    scale = 2048 / max(image.size)
    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
    for quality in range(98, 10, -4):
        out = io.BytesIO()
        image.save(out, "JPEG", quality=quality, subsampling=0)
        if out.tell() <= limit:
            return out.getvalue()
    raise AssertionError("no quality fits")
