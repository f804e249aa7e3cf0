"""What the DICOM tests share: photos as commit items, dciodvfy (dicom3tools) on a Part 10 file, and the file
Orthanc keeps for an instance (`GET /instances/{id}/file`), byte for byte as the archive stores it."""

from __future__ import annotations

import dataclasses
import subprocess
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames

from consultcam.commits.connectors.base import CommitContext, CommitItem
from consultcam.commits.dicom import to_part10
from tests.commits.factories import PATIENT, PHOTOS, commit_context, photo_item
from tests.commits.orthanc import OrthancServer

SNOMED = "http://snomed.info/sct"
ARM = {"system": SNOMED, "code": "40983000", "display": "Left upper arm, as a client put it"}


def make_context(**changes: Any) -> CommitContext:
    defaults = {
        "session_id": str(uuid.uuid4()),
        "encounter_id": f"enc-{uuid.uuid4().hex[:8]}",
        "patient": dataclasses.replace(PATIENT, birth_date=date(1980, 2, 29)),
    }
    return commit_context(**{**defaults, **changes})


def make_item(photo: str, **metadata: Any) -> CommitItem:
    """A photo of tests/photos taken 15 Jan 2025 02:13:07 UTC, with exactly `metadata`."""
    return dataclasses.replace(
        photo_item((PHOTOS / photo).read_bytes()),
        captured_at=datetime(2025, 1, 15, 2, 13, 7, tzinfo=UTC),
        created_at=datetime(2025, 1, 15, 2, 13, 9, tzinfo=UTC),
        metadata=metadata,
    )


@dataclass(frozen=True)
class Verified:
    """dciodvfy's verdict on one file: the IOD it recognised (its first line) and its error/warning lines."""

    iod: str
    errors: list[str]
    warnings: list[str]


def dciodvfy_file(path: Path) -> Verified:
    """Run dciodvfy on a Part 10 file."""
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False)
    lines = [line for line in (run.stdout + run.stderr).splitlines() if line.strip()]
    return Verified(
        iod=lines[0].strip() if lines else "",
        errors=[line for line in lines if line.startswith("Error")],
        warnings=[line for line in lines if line.startswith("Warning")],
    )


def dciodvfy(ds: Dataset, tmp_path: Path) -> tuple[list[str], list[str]]:
    """(error lines, warning lines) of dciodvfy for the dataset written by `to_part10` (our own encoding)."""
    path = tmp_path / f"{ds.SOPInstanceUID}.dcm"
    path.write_bytes(to_part10(ds))
    verified = dciodvfy_file(path)
    return verified.errors, verified.warnings


def archived_file(orthanc: OrthancServer, sop_instance_uid: str) -> bytes:
    """The Part 10 file Orthanc stores for an instance: its id from `POST /tools/lookup`, then
    `GET /instances/{id}/file`."""
    found = httpx.post(f"{orthanc.url}/tools/lookup", content=sop_instance_uid, timeout=10).json()
    ids = [entry["ID"] for entry in found if entry["Type"] == "Instance"]
    assert len(ids) == 1, found
    response = httpx.get(f"{orthanc.url}/instances/{ids[0]}/file", timeout=30)
    response.raise_for_status()
    return response.content


def meta_group(part10: bytes) -> bytes:
    """The File Meta Information elements after (0002,0000) in a Part 10 file, walked element by element in
    Explicit VR Little Endian (PS3.10 7.1, PS3.5 7.1.2), so a test can check the Group Length against them."""
    assert part10[128:132] == b"DICM", "no DICM prefix after the 128-byte preamble"
    pos = 132
    start = None
    while part10[pos : pos + 2] == b"\x02\x00":
        element = int.from_bytes(part10[pos + 2 : pos + 4], "little")
        vr = part10[pos + 4 : pos + 6]
        if vr in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN", b"UC", b"UR", b"OD", b"OL", b"OV"):
            length, header = int.from_bytes(part10[pos + 8 : pos + 12], "little"), 12
        else:
            length, header = int.from_bytes(part10[pos + 6 : pos + 8], "little"), 8
        pos += header + length
        if element == 0x0000:
            start = pos
    assert start is not None, "no (0002,0000) File Meta Information Group Length"
    return part10[start:pos]


def frame_of(ds: Dataset) -> bytes:
    frames = list(generate_frames(ds.PixelData, number_of_frames=1))
    assert len(frames) == 1
    return frames[0]


def same_jpeg(frame: bytes, jpeg: bytes) -> bool:
    """The encapsulated frame is the JPEG byte for byte (plus the one 0x00 that pads an odd length)."""
    return frame == jpeg or (len(jpeg) % 2 == 1 and frame == jpeg + b"\x00")
