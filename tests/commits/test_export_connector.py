"""The export connector writes one private, complete transaction Bundle file per commit, or nothing."""

from __future__ import annotations

import base64
import dataclasses
import errno
import json
import os
import stat
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle
from PIL import Image

from consultcam.commits.connectors.base import (
    CommitContext,
    CommitFailed,
    CommitItem,
    Connector,
    ConnectorUnavailable,
    PatientRef,
)
from consultcam.commits.connectors.export import ExportConnector, export_filename
from consultcam.commits.connectors.registry import connector_from_url
from consultcam.commits.fhir_media import IMAGE_IDENTIFIER_SYSTEM
from consultcam.config import Settings
from tests.commits.factories import Progress, commit_context

PHOTOS = Path(__file__).resolve().parents[1] / "photos"
SNOMED = "http://snomed.info/sct"


def make_context(**changes: Any) -> CommitContext:
    return commit_context(**{"encounter_id": "enc-2025.0042", **changes})


def make_item(photo: str, **metadata: Any) -> CommitItem:
    path = PHOTOS / photo
    with Image.open(path) as image:
        width, height = image.size
    return CommitItem(
        image_id=str(uuid.uuid4()),
        jpeg=path.read_bytes(),
        width=width,
        height=height,
        captured_at=None,
        created_at=datetime(2025, 1, 15, 2, 13, tzinfo=UTC),
        metadata=metadata,
    )


def three_items() -> list[CommitItem]:
    return [
        make_item("fundus-left-eye.jpg", bodySite={"system": SNOMED, "code": "371398005"}, laterality="left"),
        make_item("cat.jpg", label="Rash"),
        make_item("coffee.jpg"),
    ]


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


async def test_commit_writes_one_private_bundle_file(tmp_path: Path) -> None:
    outbox = tmp_path / "records" / "outbox"
    connector = ExportConnector(outbox)
    context, items, progress = make_context(), three_items(), Progress()

    results = await connector.commit(context, items, progress)

    assert [(r.image_id, r.status, r.resource_id) for r in results] == [
        (item.image_id, "committed", f"urn:uuid:{item.image_id}") for item in items
    ]
    assert progress.calls == [(1, 3), (2, 3), (3, 3)]
    [name] = listing(outbox)  # no temp file beside it
    assert name == f"20250115T023005Z-enc-2025.0042-{context.commit_id}.json"
    assert stat.S_IMODE((outbox / name).stat().st_mode) == 0o600
    assert stat.S_IMODE(outbox.stat().st_mode) == 0o700

    bundle = json.loads((outbox / name).read_text(encoding="utf-8"))
    Bundle.model_validate(bundle)
    assert bundle["type"] == "transaction"
    for entry, item in zip(bundle["entry"], items, strict=True):
        assert entry["request"]["ifNoneExist"] == f"identifier={IMAGE_IDENTIFIER_SYSTEM}|{item.image_id}"
        assert entry["resource"]["subject"]["identifier"]["value"] == "ZZZ0016"
        assert base64.b64decode(entry["resource"]["content"]["data"]) == item.jpeg


def test_file_name_cannot_leave_the_folder() -> None:
    context = make_context(encounter_id="../../etc/passwd x", committed_at=datetime(2025, 1, 15, 2, 30, 5))
    name = export_filename(context)
    assert name == f"20250115T023005Z-.._.._etc_passwd_x-{context.commit_id}.json"
    assert "/" not in name


async def test_existing_folder_keeps_its_permissions(tmp_path: Path) -> None:
    tmp_path.chmod(0o750)
    await ExportConnector(tmp_path).commit(make_context(), [make_item("cat.jpg")], Progress())
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o750
    assert len(listing(tmp_path)) == 1


@pytest.mark.parametrize("failing", ["fsync", "replace"])
async def test_a_failed_write_leaves_no_file_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    def disk_full(*args: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, failing, disk_full)
    items = three_items()

    with pytest.raises(CommitFailed) as failure:
        await ExportConnector(tmp_path).commit(make_context(), items, Progress())

    assert "disk is full" in failure.value.detail
    assert [(r.image_id, r.status) for r in failure.value.results] == [(i.image_id, "failed") for i in items]
    assert listing(tmp_path) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
async def test_read_only_folder(tmp_path: Path) -> None:
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(CommitFailed, match="permission denied"):
            await ExportConnector(tmp_path).commit(make_context(), [make_item("cat.jpg")], Progress())
        assert listing(tmp_path) == []
    finally:
        tmp_path.chmod(0o700)


async def test_an_outbox_that_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(CommitFailed, match="could not be saved to the export folder") as failure:
        await ExportConnector(tmp_path / "file" / "outbox").commit(make_context(), three_items(), Progress())
    assert [r.status for r in failure.value.results] == ["failed"] * 3
    assert listing(tmp_path) == ["file"]


async def test_an_invalid_photo_fails_the_whole_commit(tmp_path: Path) -> None:
    items = three_items()
    items[1] = dataclasses.replace(
        items[1], metadata={"label": "Rash", "bodySite": {"system": SNOMED, "code": "99"}}
    )
    progress = Progress()

    with pytest.raises(CommitFailed) as failure:
        await ExportConnector(tmp_path / "outbox").commit(make_context(), items, progress)

    assert "photo 'Rash': body site code '99' is not one of the practice's body sites" in failure.value.detail
    results = failure.value.results
    assert [r.status for r in results] == ["failed"] * 3
    assert "/api/terminology/body-sites" in (results[1].error or "")
    assert "another photo" in (results[0].error or "")
    assert progress.calls == [(1, 3)]
    assert listing(tmp_path / "outbox") == []


@pytest.mark.parametrize(
    ("context", "items", "message"),
    [
        pytest.param(
            make_context(patient=PatientRef(id="", name="Aroha Ngata")),
            [make_item("cat.jpg")],
            "patient id is missing",
            id="no-patient",
        ),
        pytest.param(make_context(), [], "no photos to commit", id="no-items"),
    ],
)
async def test_bad_commit_input(
    tmp_path: Path, context: CommitContext, items: list[CommitItem], message: str
) -> None:
    with pytest.raises(CommitFailed, match=message) as failure:
        await ExportConnector(tmp_path).commit(context, items, Progress())
    assert all(r.status == "failed" for r in failure.value.results)
    assert listing(tmp_path) == []


async def test_check(tmp_path: Path) -> None:
    connector = ExportConnector(tmp_path / "new")
    assert isinstance(connector, Connector)
    await connector.check()
    assert (tmp_path / "new").is_dir()
    assert listing(tmp_path / "new") == []

    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(ConnectorUnavailable, match="not writable"):
        await ExportConnector(tmp_path / "file").check()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("export:///srv/consultcam/outbox", "/srv/consultcam/outbox"),
        ("export://outbox", "{cwd}/outbox"),
        ("export://./outbox", "{cwd}/outbox"),
        ("export://../shared/out%20box", "{cwd}/../shared/out box"),
        ("EXPORT://outbox", "{cwd}/outbox"),
        ("export://", "{data}/outbox"),
    ],
)
def test_export_url_rule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, expected: str) -> None:
    monkeypatch.chdir(tmp_path)
    data_dir = tmp_path / "data"
    want = Path(expected.format(cwd=tmp_path, data=data_dir))

    assert ExportConnector.from_url(url, data_dir=data_dir).directory == want
    connector = connector_from_url(url, Settings(data_dir=data_dir))
    assert isinstance(connector, ExportConnector)
    assert connector.name == "export"
    assert connector.directory == want


def test_relative_export_url_does_not_follow_a_later_chdir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    connector = ExportConnector.from_url("export://outbox")
    monkeypatch.chdir("/")
    assert connector.directory == tmp_path / "outbox"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("fhir+https://user:s3cret@emr.example/fhir", "user name or password"),
        ("alex+https://user:s3cret@alex.example/FHIR", "user name or password"),
        ("ftp://host/dir", "unsupported EMR URL scheme 'ftp'"),
        ("outbox", "scheme://"),
        ("export://outbox?mode=fast", "directory only"),
    ],
)
def test_other_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as refused:
        connector_from_url(url, Settings())
    assert "s3cret" not in str(refused.value)


async def test_every_attempt_of_a_commit_writes_the_same_one_file(tmp_path: Path) -> None:
    """Issue 10: a retry after a crash (the Bundle was written, the outcome never recorded) must not leave a
    second Bundle: an identical one is left untouched, a changed one replaced in place, and a temp file a
    killed process left behind is removed."""
    outbox = tmp_path / "outbox"
    connector = ExportConnector(outbox)
    context, items = make_context(), three_items()
    await connector.commit(context, items, Progress())
    [first] = outbox.iterdir()
    written = first.stat().st_mtime_ns
    half = outbox / f".{first.stem}.k1ll3d.tmp"
    half.write_bytes(b'{"resourceType": "Bun')

    await connector.commit(context, items, Progress())  # the retry after the crash

    assert listing(outbox) == [first.name]
    assert first.stat().st_mtime_ns == written  # not rewritten: an importer sees nothing new

    later = dataclasses.replace(context, committed_at=datetime(2025, 1, 15, 3, 0, tzinfo=UTC))
    results = await connector.commit(later, items[:2], Progress())  # a photo deleted before the retry

    assert listing(outbox) == [first.name]
    bundle = json.loads(first.read_text())
    assert [e["resource"]["identifier"][0]["value"] for e in bundle["entry"]] == [
        i.image_id for i in items[:2]
    ]
    assert [r.status for r in results] == ["committed", "committed"]
