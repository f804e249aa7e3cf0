"""The dicomweb connector: VL Photographic Images built from the photos as they are, stored all or nothing
into a real Orthanc (DICOMweb plugin) and read back with QIDO-RS/WADO-RS; dciodvfy finds no error in our
encoding nor in the file Orthanc keeps. Dermoscopy: tests/commits/test_dicom_dermoscopy.py."""

from __future__ import annotations

import dataclasses
import io
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from PIL import Image
from pydicom.dataset import Dataset

from consultcam.commits.connectors import dicomweb as dicomweb_module
from consultcam.commits.connectors.base import (
    CommitContext,
    CommitFailed,
    CommitItem,
    Connector,
    ConnectorUnavailable,
    PatientRef,
)
from consultcam.commits.connectors.dicomweb import DicomWebConnector
from consultcam.commits.connectors.registry import connector_from_url
from consultcam.commits.dicom import (
    JPEG_BASELINE,
    VL_PHOTOGRAPHIC_IMAGE_STORAGE,
    build_instance,
    build_instances,
    dicom_person_name,
    series_instance_uid,
    sop_instance_uid,
    study_instance_uid,
    to_part10,
)
from consultcam.config import Settings
from tests.commits.dicom_files import (
    ARM,
    PHOTOS,
    SNOMED,
    archived_file,
    dciodvfy,
    dciodvfy_file,
    frame_of,
    make_context,
    make_item,
    meta_group,
    same_jpeg,
)
from tests.commits.factories import Progress
from tests.commits.orthanc import OrthancServer, start_orthanc


def two_items() -> list[CommitItem]:
    return [
        make_item("fundus-left-eye.jpg", bodySite=ARM, laterality="left", label="Rash"),
        make_item("cat.jpg"),
    ]


# -- the dataset, without Orthanc ---------------------------------------------------------------------


def test_builder_makes_a_valid_vl_photographic_image_carrying_the_jpeg(tmp_path: Path) -> None:
    context = make_context()
    items = [*two_items(), make_item("rocket.jpg", laterality="not-applicable")]  # rocket is 4:4:4
    datasets = build_instances(context, items)

    study = study_instance_uid("pat-77", context.encounter_id)
    for number, (ds, item) in enumerate(zip(datasets, items, strict=True), start=1):
        assert ds.SOPClassUID == VL_PHOTOGRAPHIC_IMAGE_STORAGE
        assert ds.file_meta.TransferSyntaxUID == JPEG_BASELINE
        assert ds.Modality == "XC"
        assert ds.SOPInstanceUID == sop_instance_uid(item.image_id) == f"2.25.{uuid.UUID(item.image_id).int}"
        assert ds.StudyInstanceUID == study
        assert ds.SeriesInstanceUID == series_instance_uid(context.session_id)
        assert ds.InstanceNumber == number
        assert (ds.Rows, ds.Columns) == (item.height, item.width)
        assert (ds.SamplesPerPixel, ds.BitsAllocated, ds.PlanarConfiguration) == (3, 8, 0)
        assert ds.PhotometricInterpretation == "YBR_FULL_422"
        assert ds.PatientID == "ZZZ0016"
        assert ds.IssuerOfPatientID == "NHI"
        assert str(ds.PatientName) == "Ngata^Aroha"
        assert ds.PatientBirthDate == "19800229"
        assert ds.Manufacturer == "consultcam"
        # 02:13:07 UTC on 15 January is 15:13:07 NZDT (+13:00)
        assert (ds.StudyDate, ds.StudyTime, ds.ContentDate, ds.ContentTime) == (
            "20250115",
            "151307",
            "20250115",
            "151307",
        )
        assert ds.AcquisitionDateTime == "20250115151307+1300"
        assert same_jpeg(frame_of(ds), item.jpeg)
        errors, _ = dciodvfy(ds, tmp_path)
        assert errors == [], errors

    arm, cat, rocket = datasets
    region = arm.AnatomicRegionSequence[0]
    assert (region.CodingSchemeDesignator, region.CodeValue, region.CodeMeaning) == (
        "SCT",
        "40983000",
        "Upper arm structure",  # the data file's term, not the words stored with the code
    )
    modifier = region.AnatomicRegionModifierSequence[0]
    assert (modifier.CodeValue, modifier.CodeMeaning) == ("7771000", "Left")
    assert arm.ImageLaterality == "L"
    assert arm.ImageComments == "Rash"
    assert "AnatomicRegionSequence" not in cat
    assert "ImageLaterality" not in cat
    assert rocket.ImageLaterality == "U"

    # a Part 10 round trip keeps it all
    again = pydicom.dcmread(io.BytesIO(to_part10(arm)))
    assert again.SOPInstanceUID == arm.SOPInstanceUID
    assert same_jpeg(frame_of(again), items[0].jpeg)

    # dicomweb-client's STOW-RS writes each dataset with pydicom's defaults (file meta as it is): same file
    for ds in datasets:
        sent = io.BytesIO()
        pydicom.dcmwrite(sent, ds)
        assert sent.getvalue() == to_part10(ds)
        meta = pydicom.dcmread(io.BytesIO(sent.getvalue())).file_meta
        assert meta.FileMetaInformationGroupLength == len(meta_group(sent.getvalue()))
        assert meta.FileMetaInformationVersion == b"\x00\x01"


def test_uids_are_stable_and_patient_scoped() -> None:
    assert study_instance_uid("p", "e") == study_instance_uid("p", "e")
    assert study_instance_uid("p", "e") != study_instance_uid("q", "e")
    assert series_instance_uid("s") == series_instance_uid("s") != series_instance_uid("t")
    for uid in (study_instance_uid("p", "e"), series_instance_uid("s"), sop_instance_uid("not-a-uuid")):
        assert uid.startswith("2.25.")
        assert len(uid) <= 64


@pytest.mark.parametrize(
    ("name", "pn"),
    [
        ("Aroha Ngata", "Ngata^Aroha"),
        ("Mere Anne Tester", "Tester^Mere^Anne"),
        ("Jan van der Berg", "van der Berg^Jan"),
        ("Tester, Mere", "Tester^Mere"),
        ("Cher", "Cher"),
        ("  ", ""),
        ("Bad^Name\\X", "X^Bad^Name"),
    ],
)
def test_person_names(name: str, pn: str) -> None:
    assert dicom_person_name(name) == pn


def test_builder_without_nhi_uses_the_emr_patient_id_and_refuses_bad_input() -> None:
    context = make_context(patient=PatientRef(id="pat-77", name="Aroha Ngata"))
    ds = build_instance(context, two_items()[1])
    assert ds.PatientID == "pat-77"
    assert "IssuerOfPatientID" not in ds
    assert ds.PatientBirthDate == ""

    with pytest.raises(ValueError, match="not a JPEG"):
        build_instance(context, dataclasses.replace(two_items()[1], jpeg=b"GIF89a..."))
    with pytest.raises(ValueError, match="laterality"):
        build_instance(context, make_item("cat.jpg", laterality="up"))
    with pytest.raises(ValueError, match="not one of the practice's body sites"):
        build_instance(context, make_item("cat.jpg", bodySite={"system": SNOMED, "code": "123"}))
    with pytest.raises(ValueError, match="not one of the practice's body sites"):  # a disorder
        build_instance(context, make_item("cat.jpg", bodySite={"system": SNOMED, "code": "22298006"}))
    png = io.BytesIO()
    Image.open(PHOTOS / "cat.jpg").save(png, "JPEG", progressive=True)
    with pytest.raises(ValueError, match="not a baseline JPEG"):
        build_instance(context, dataclasses.replace(two_items()[1], jpeg=png.getvalue()))


def test_connector_url() -> None:
    connector = connector_from_url("dicomweb+http://pacs.example:8042/dicom-web/", Settings())
    assert isinstance(connector, DicomWebConnector)
    assert isinstance(connector, Connector)
    assert connector.base_url == "http://pacs.example:8042/dicom-web"
    secure = DicomWebConnector.from_url("dicomweb+https://u%40x:s3cret@pacs.example/dicom-web")
    assert secure.base_url == "https://pacs.example/dicom-web"
    assert secure._auth == ("u@x", "s3cret")
    with pytest.raises(ValueError, match="no \\?query") as refused:
        connector_from_url("dicomweb+http://u:s3cret@pacs/dicom-web?x=1", Settings())
    assert "s3cret" not in str(refused.value)


# -- retries and all-or-nothing, against a scripted client --------------------------------------------


def http_error(status: int) -> requests.HTTPError:
    response = requests.Response()
    response.status_code = status
    response._content = b""
    return requests.HTTPError(f"{status}", response=response)


class ScriptedClient:
    """Answers store_instances from a script: an exception to raise, or "ok" to accept all."""

    def __init__(self, script: list[Any], *, deletable: bool = False) -> None:
        self.script, self.deletable = script, deletable
        self.stores = 0
        self.deleted: list[str] = []

    def store_instances(self, datasets: Sequence[Dataset]) -> Dataset:
        self.stores += 1
        step = self.script.pop(0)
        if isinstance(step, BaseException):
            raise step
        response = Dataset()
        refused = step if isinstance(step, set) else set()
        response.ReferencedSOPSequence = [
            _ref(ds.SOPInstanceUID) for ds in datasets if ds.SOPInstanceUID not in refused
        ]
        if refused:
            response.FailedSOPSequence = [_ref(uid, reason=0xA700) for uid in refused]
        return response

    def delete_instance(self, study: str, series: str, sop: str) -> None:
        if not self.deletable:
            raise http_error(405)
        self.deleted.append(sop)

    def search_for_studies(self, *, limit: int | None = None) -> list[dict[str, Any]]:
        step = self.script.pop(0)
        if isinstance(step, BaseException):
            raise step
        return []


def _ref(uid: str, reason: int | None = None) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = VL_PHOTOGRAPHIC_IMAGE_STORAGE
    item.ReferencedSOPInstanceUID = uid
    if reason is not None:
        item.FailureReason = reason
    return item


def scripted(client: ScriptedClient) -> DicomWebConnector:
    return DicomWebConnector(
        "http://pacs.invalid/dicom-web",
        backoff_initial=0.001,
        backoff_max=0.01,
        client_factory=lambda: client,
    )


async def test_5xx_and_timeouts_are_retried_4xx_never() -> None:
    items = two_items()
    client = ScriptedClient([http_error(503), requests.Timeout(), "ok"])
    results = await scripted(client).commit(make_context(), items, Progress())
    assert client.stores == 3
    assert [r.status for r in results] == ["committed", "committed"]

    client = ScriptedClient([http_error(401), "ok"])
    with pytest.raises(CommitFailed, match="not allowed to store there") as failed:
        await scripted(client).commit(make_context(), items, Progress())
    assert client.stores == 1
    assert [r.status for r in failed.value.results] == ["failed", "failed"]

    client = ScriptedClient([http_error(500)] * 4)
    with pytest.raises(CommitFailed, match="will not make duplicate copies"):
        await scripted(client).commit(make_context(), items, Progress())
    assert client.stores == 4


async def test_partial_failure_deletes_what_it_can_and_says_what_remains() -> None:
    items = two_items()
    refused = {sop_instance_uid(items[1].image_id)}
    client = ScriptedClient([refused], deletable=True)
    with pytest.raises(CommitFailed, match="removed again, so nothing was saved") as failed:
        await scripted(client).commit(make_context(), items, Progress())
    assert client.deleted == [sop_instance_uid(items[0].image_id)]
    assert "out of storage space" in failed.value.results[1].error

    client = ScriptedClient([refused], deletable=False)
    with pytest.raises(CommitFailed) as failed:
        await scripted(client).commit(make_context(), items, Progress())
    assert "1 of them remains" in failed.value.detail
    assert sop_instance_uid(items[0].image_id) in failed.value.detail
    assert "'Rash'" in failed.value.detail
    assert [r.status for r in failed.value.results] == ["failed", "failed"]


async def test_check() -> None:
    await scripted(ScriptedClient([[]])).check()
    with pytest.raises(ConnectorUnavailable, match="HTTP 503"):
        await scripted(ScriptedClient([http_error(503)])).check()
    with pytest.raises(ConnectorUnavailable, match="cannot be reached"):
        await DicomWebConnector("http://127.0.0.1:9/dicom-web", timeout=2).check()


# -- a real Orthanc -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrthancServer]:
    server = start_orthanc(tmp_path_factory.mktemp("orthanc"))
    try:
        yield server
    finally:
        server.stop()


def reader(orthanc: OrthancServer) -> DICOMwebClient:
    return DICOMwebClient(url=f"{orthanc.url}/dicom-web")


def study_instances(orthanc: OrthancServer, study: str) -> list[Dataset]:
    client = reader(orthanc)
    found = client.search_for_instances(study_instance_uid=study)
    return [
        client.retrieve_instance(
            study,
            Dataset.from_json(entry).SeriesInstanceUID,
            Dataset.from_json(entry).SOPInstanceUID,
        )
        for entry in found
    ]


async def test_commit_into_orthanc_and_read_back(orthanc: OrthancServer, tmp_path: Path) -> None:
    connector = connector_from_url(orthanc.dicomweb_url, Settings(data_dir=tmp_path))
    await connector.check()
    context = make_context()
    items = two_items()
    progress = Progress()

    results = await connector.commit(context, items, progress)

    study = study_instance_uid(context.patient.id, context.encounter_id)
    series = series_instance_uid(context.session_id)
    assert [r.status for r in results] == ["committed", "committed"]
    assert progress.calls == [(1, 2), (2, 2)]
    for result, item in zip(results, items, strict=True):
        assert (
            result.resource_id
            == f"studies/{study}/series/{series}/instances/{sop_instance_uid(item.image_id)}"
        )

    client = reader(orthanc)
    assert [
        Dataset.from_json(s).StudyInstanceUID
        for s in client.search_for_studies(search_filters={"StudyInstanceUID": study})
    ] == [study]
    assert len(client.search_for_series(study_instance_uid=study)) == 1
    stored = {ds.SOPInstanceUID: ds for ds in study_instances(orthanc, study)}
    assert len(stored) == 2
    for item in items:
        ds = stored[sop_instance_uid(item.image_id)]
        assert ds.SeriesInstanceUID == series
        assert ds.file_meta.TransferSyntaxUID == JPEG_BASELINE
        assert same_jpeg(frame_of(ds), item.jpeg)
        assert ds.PatientID == "ZZZ0016"
        assert ds.IssuerOfPatientID == "NHI"
        assert str(ds.PatientName) == "Ngata^Aroha"
        assert ds.PatientBirthDate == "19800229"
        # the file as the archive keeps it, not our own encoding of what we read back
        path = tmp_path / f"{ds.SOPInstanceUID}.archived.dcm"
        path.write_bytes(archived_file(orthanc, ds.SOPInstanceUID))
        verified = dciodvfy_file(path)
        assert verified.iod == "VLPhotographicImage"
        assert verified.errors == [], verified.errors
        meta = pydicom.dcmread(path).file_meta
        assert meta.FileMetaInformationVersion == b"\x00\x01"
        assert meta.FileMetaInformationGroupLength == len(meta_group(path.read_bytes()))
    arm = stored[sop_instance_uid(items[0].image_id)]
    assert arm.AnatomicRegionSequence[0].CodeValue == "40983000"
    assert arm.AnatomicRegionSequence[0].CodingSchemeDesignator == "SCT"
    assert arm.ImageLaterality == "L"

    # a second commit for the same encounter (another session) lands in the same study
    later = dataclasses.replace(context, session_id=str(uuid.uuid4()), commit_id=uuid.uuid4().hex)
    extra = make_item("coffee.jpg")
    await connector.commit(later, [extra], Progress())
    assert len(client.search_for_studies(search_filters={"StudyInstanceUID": study})) == 1
    assert len(client.search_for_series(study_instance_uid=study)) == 2
    assert len(client.search_for_instances(study_instance_uid=study)) == 3

    # committing the same image again does not make a second instance
    again = await connector.commit(
        dataclasses.replace(later, commit_id=uuid.uuid4().hex), [extra], Progress()
    )
    assert again[0].status == "committed"
    assert len(client.search_for_instances(study_instance_uid=study)) == 3


async def test_orthanc_refusing_one_instance_fails_the_commit_and_names_what_remains(
    orthanc: OrthancServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Orthanc stores the good instance and refuses one without a Study Instance UID (HTTP 400 with a
    FailedSOPSequence); it allows no DICOMweb DELETE, so the connector says which instance remains."""
    real_build = dicomweb_module.build_instance

    def break_second(context: CommitContext, item: CommitItem, **options: Any) -> Dataset:
        ds = real_build(context, item, **options)
        if options["instance_number"] == 2:
            del ds.StudyInstanceUID
        return ds

    monkeypatch.setattr(dicomweb_module, "build_instance", break_second)
    context = make_context()
    items = two_items()
    with pytest.raises(CommitFailed) as failed:
        await DicomWebConnector.from_url(orthanc.dicomweb_url).commit(context, items, Progress())

    kept = sop_instance_uid(items[0].image_id)
    assert "refused 1 of 2 photos" in failed.value.detail
    assert f"remains in the patient's imaging record (photo 'Rash'; SOP Instance UID {kept})" in (
        failed.value.detail
    )
    assert [r.status for r in failed.value.results] == ["failed", "failed"]
    assert "could not be removed" in failed.value.results[0].error
    assert "refused by the imaging archive" in failed.value.results[1].error
    study = study_instance_uid(context.patient.id, context.encounter_id)
    found = reader(orthanc).search_for_instances(study_instance_uid=study)
    assert [Dataset.from_json(entry).SOPInstanceUID for entry in found] == [kept]
