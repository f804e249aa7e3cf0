"""Dermoscopy photos as DICOM Dermoscopic Photography Images (PS3.3 A.32.11, Supplement 221: SOP Class
1.2.840.10008.5.1.4.1.1.77.1.7, Modality DMS), other photos as VL Photographic Images (XC), in one commit
into a real Orthanc; the files Orthanc keeps pass dciodvfy (which knows both IODs) with no error, and the
Dermoscopic Image (C.8.12.13) and Enhanced General Equipment (C.7.5.2) modules are checked attribute by
attribute."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pydicom
import pytest
from pydicom.dataset import Dataset

from consultcam.commits.connectors.base import CommitItem
from consultcam.commits.connectors.dicomweb import DicomWebConnector
from consultcam.commits.dicom import (
    DERMOSCOPIC_PHOTOGRAPHY_IMAGE_STORAGE,
    VL_PHOTOGRAPHIC_IMAGE_STORAGE,
    build_instances,
    series_instance_uid,
    sop_instance_uid,
    study_instance_uid,
)
from tests.commits.dicom_files import (
    ARM,
    SNOMED,
    archived_file,
    dciodvfy,
    dciodvfy_file,
    frame_of,
    make_context,
    make_item,
    same_jpeg,
)
from tests.commits.factories import Progress
from tests.commits.orthanc import OrthancServer, start_orthanc

FINGER = {"system": SNOMED, "code": "7569003"}
#: Dermoscopic Image Module attributes of Type 2 that consultcam cannot know: present, zero length.
UNKNOWN_TYPE_2 = (
    "LightSourcePolarization",
    "EmitterColorTemperature",
    "ContactMethod",
    "OpticalMagnificationFactor",
)


def photos() -> list[CommitItem]:
    return [
        make_item("fundus-left-eye.jpg", bodySite=ARM, laterality="left", view="overview"),
        make_item("rocket.jpg", bodySite=ARM, laterality="left", view="dermoscopy", label="Mole 1"),
        make_item("cat.jpg", view="dermoscopy"),
        make_item("coffee.jpg", bodySite=FINGER, view="dermoscopy"),
        make_item("cat.jpg", view="close-up"),
    ]


def assert_dermoscopic(ds: Dataset) -> None:
    """The attributes the Dermoscopic Photography Image IOD requires beyond a VL Photographic Image."""
    assert ds.SOPClassUID == DERMOSCOPIC_PHOTOGRAPHY_IMAGE_STORAGE
    assert ds.file_meta.MediaStorageSOPClassUID == DERMOSCOPIC_PHOTOGRAPHY_IMAGE_STORAGE
    assert ds.Modality == "DMS"
    # Enhanced General Equipment: all Type 1, with a value
    for keyword in ("Manufacturer", "ManufacturerModelName", "DeviceSerialNumber", "SoftwareVersions"):
        assert ds.get(keyword), keyword
    assert str(ds.SoftwareVersions).startswith("consultcam")
    # Dermoscopic Image: Type 1 with an enumerated value; Type 2 present and empty; Type 2C absent
    assert ds.RecognizableVisualFeatures in ("YES", "NO")
    for keyword in UNKNOWN_TYPE_2:
        assert keyword in ds, keyword
        assert ds[keyword].is_empty, keyword
    assert "ImmersionMedia" not in ds  # required only when Contact Method is CONTACT
    assert "TrackingID" not in ds
    assert "TrackingUID" not in ds
    # Frame of Reference, sent whole: a UID of its own and an empty Position Reference Indicator
    assert ds.FrameOfReferenceUID.startswith("2.25.")
    assert "PositionReferenceIndicator" in ds
    assert ds["PositionReferenceIndicator"].is_empty
    # VL Image, as for XC
    assert ds.ImageType == ["ORIGINAL", "PRIMARY"]
    assert ds.LossyImageCompression == "01"


def test_builder_makes_dermoscopy_photos_dms_and_the_others_xc(tmp_path: Path) -> None:
    context = make_context()
    items = photos()
    overview, arm, unsited, finger, close_up = build_instances(context, items)

    for ds in (overview, close_up):
        assert ds.SOPClassUID == VL_PHOTOGRAPHIC_IMAGE_STORAGE
        assert ds.Modality == "XC"
        assert ds.SeriesInstanceUID == series_instance_uid(context.session_id)
        assert "RecognizableVisualFeatures" not in ds
        assert "DeviceSerialNumber" not in ds
    for ds in (arm, unsited, finger):
        assert_dermoscopic(ds)
        # one Modality per Series: the session's dermoscopy photos have a Series of their own
        assert ds.SeriesInstanceUID == series_instance_uid(context.session_id, "dms")
        assert ds.SeriesInstanceUID != overview.SeriesInstanceUID
        assert (ds.SeriesNumber, ds.SeriesDescription) == (2, "Dermoscopic photographs")
        assert ds.StudyInstanceUID == overview.StudyInstanceUID
        errors, _ = dciodvfy(ds, tmp_path)
        assert errors == [], errors
    assert arm.RecognizableVisualFeatures == "NO"  # an upper arm shows no fingerprints
    assert finger.RecognizableVisualFeatures == "YES"  # a finger may
    assert unsited.RecognizableVisualFeatures == "YES"  # no site: it may be a fingertip
    assert arm.AnatomicRegionSequence[0].CodeValue == "40983000"
    assert arm.ImageLaterality == "L"
    assert len({arm.FrameOfReferenceUID, unsited.FrameOfReferenceUID, finger.FrameOfReferenceUID}) == 3
    assert build_instances(context, items)[1].FrameOfReferenceUID == arm.FrameOfReferenceUID  # stable


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrthancServer]:
    server = start_orthanc(tmp_path_factory.mktemp("orthanc-dms"))
    try:
        yield server
    finally:
        server.stop()


async def test_orthanc_stores_dms_and_xc_and_what_it_keeps_passes_dciodvfy(
    orthanc: OrthancServer, tmp_path: Path
) -> None:
    context = make_context()
    items = photos()
    results = await DicomWebConnector.from_url(orthanc.dicomweb_url).commit(context, items, Progress())
    assert [r.status for r in results] == ["committed"] * 5

    study = study_instance_uid(context.patient.id, context.encounter_id)
    series = httpx.get(f"{orthanc.url}/dicom-web/studies/{study}/series", timeout=10).json()
    by_modality = {Dataset.from_json(s).Modality: Dataset.from_json(s).SeriesInstanceUID for s in series}
    assert by_modality == {
        "XC": series_instance_uid(context.session_id),
        "DMS": series_instance_uid(context.session_id, "dms"),
    }

    expected = ["VLPhotographicImage"] + ["DermoscopicPhotographyImage"] * 3 + ["VLPhotographicImage"]
    for item, iod in zip(items, expected, strict=True):
        uid = sop_instance_uid(item.image_id)
        path = tmp_path / f"{uid}.dcm"
        path.write_bytes(archived_file(orthanc, uid))
        verified = dciodvfy_file(path)
        assert verified.iod == iod
        assert verified.errors == [], verified.errors
        stored = pydicom.dcmread(path)
        assert stored.file_meta.FileMetaInformationVersion == b"\x00\x01"
        assert "FileMetaInformationGroupLength" in stored.file_meta
        assert same_jpeg(frame_of(stored), item.jpeg)
        if iod == "DermoscopicPhotographyImage":
            assert_dermoscopic(stored)
        else:
            assert (stored.SOPClassUID, stored.Modality) == (VL_PHOTOGRAPHIC_IMAGE_STORAGE, "XC")
    # Orthanc itself files the dermoscopy photos under Modality DMS
    found = httpx.post(
        f"{orthanc.url}/tools/find",
        json={"Level": "Series", "Query": {"StudyInstanceUID": study, "Modality": "DMS"}, "Expand": True},
        timeout=10,
    ).json()
    assert [s["MainDicomTags"]["Modality"] for s in found] == ["DMS"]
    assert len(found[0]["Instances"]) == 3
