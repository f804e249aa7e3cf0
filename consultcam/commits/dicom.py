"""One clinical photo as a DICOM instance carrying the JPEG as it is: a VL Photographic Image (PS3.3
A.32.4, Modality XC), or a Dermoscopic Photography Image (A.32.11, Modality DMS) for the view "dermoscopy"
(`consultcam.commits.dicom_iods`).

The JPEG is encapsulated, never re-encoded (`consultcam.commits.dicom_jpeg`): YCbCr is YBR_FULL_422
(subsampled or not: the VL Image module does not allow YBR_FULL), an Adobe "no transform" stream RGB, one
component MONOCHROME2.

The File Meta Information (PS3.10 7.1) is complete in the dataset itself, File Meta Information Group Length
and Version included, so the file is conformant whoever writes it: `to_part10`, or dicomweb-client's
STOW-RS, which writes the dataset with pydicom's default `enforce_file_format=False` (the file meta as it
is). Archives such as Orthanc keep the Part 10 bytes they receive.

Identity (PS3.5 B.2, "2.25." UUID-derived UIDs), stable so a repeated commit never makes a second copy:

- Study = one encounter of one patient: uuid5(namespace, "study:<patient id>:<encounter id>"). The patient
  id is part of it so two practices' encounter "1" can never merge two patients into one study.
- Series = one capture session and one Modality: uuid5(namespace, "series:<session id>") for XC,
  "series:<session id>:dms" for its dermoscopy photos.
- SOP Instance = the image: 2.25.<the image uuid as an integer>.

Dates and times are local to the practice (DICOM DA/TM carry no zone), with Timezone Offset From UTC.
"""

from __future__ import annotations

import io
import re
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, tzinfo
from typing import Any

from pydicom.dataset import Dataset, FileDataset, FileMetaDataset, validate_file_meta
from pydicom.encaps import encapsulate
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID

from consultcam.commits.connectors.base import CommitContext, CommitItem
from consultcam.commits.dicom_iods import (
    DERMOSCOPIC_PHOTOGRAPHY_IMAGE,
    DERMOSCOPIC_PHOTOGRAPHY_IMAGE_STORAGE,
    MANUFACTURER,
    VL_PHOTOGRAPHIC_IMAGE,
    VL_PHOTOGRAPHIC_IMAGE_STORAGE,
    add_dermoscopy_modules,
    photo_iod,
)
from consultcam.commits.dicom_jpeg import JPEG_BASELINE, JPEG_EXTENDED, JpegFrame, jpeg_frame
from consultcam.commits.fhir_media import consent_statement, optional_text
from consultcam.config import PRACTICE_TIMEZONE
from consultcam.sessions.nhi import is_valid_nhi
from consultcam.terminology.metadata import UnknownTerm, photo_terms

__all__ = [
    "DERMOSCOPIC_PHOTOGRAPHY_IMAGE",
    "DERMOSCOPIC_PHOTOGRAPHY_IMAGE_STORAGE",
    "JPEG_BASELINE",
    "JPEG_EXTENDED",
    "PRACTICE_TIMEZONE",
    "VL_PHOTOGRAPHIC_IMAGE",
    "VL_PHOTOGRAPHIC_IMAGE_STORAGE",
    "JpegFrame",
    "build_instance",
    "build_instances",
    "dicom_person_name",
    "jpeg_frame",
    "series_instance_uid",
    "sop_instance_uid",
    "study_instance_uid",
    "taken_at",
    "to_part10",
]

#: Fixed namespace for the uuid5-derived study and series UIDs. Never change it: UIDs must stay stable.
UID_NAMESPACE = uuid.UUID("6f1c3a52-2b8e-5d4a-9c0e-7a1d2c3b4e5f")
#: File Meta Information Version (0002,0001): PS3.10 7.1, "00H 01H".
FILE_META_VERSION = b"\x00\x01"

#: Image Laterality (0020,0062) enumerated values (PS3.3 C.7.6.2): codes, not words.
_LATERALITY = {"left": "L", "right": "R", "bilateral": "B", "not-applicable": "U"}
_PN_FORBIDDEN = re.compile(r"[\\^=\x00-\x1f]")
_NAME_PARTICLES = {"van", "von", "der", "den", "de", "del", "della", "di", "da", "du", "la", "le", "ter"}


# -- UIDs -----------------------------------------------------------------------------------------------


def study_instance_uid(patient_id: str, encounter_id: str) -> str:
    """The Study Instance UID of one encounter of one patient (stable across commits)."""
    return _uid_from(uuid.uuid5(UID_NAMESPACE, f"study:{patient_id}:{encounter_id}"))


def series_instance_uid(session_id: str, series_key: str = "") -> str:
    """The Series Instance UID of one capture session (stable across commits): its XC photos for the
    default `series_key` "", another Series for another key ("dms": its dermoscopy photos)."""
    suffix = f":{series_key}" if series_key else ""
    return _uid_from(uuid.uuid5(UID_NAMESPACE, f"series:{session_id}{suffix}"))


def sop_instance_uid(image_id: str) -> str:
    """The SOP Instance UID of an image: its uuid as 2.25.<integer>; other ids through uuid5."""
    try:
        value = uuid.UUID(str(image_id))
    except ValueError:
        value = uuid.uuid5(UID_NAMESPACE, f"image:{image_id}")
    return _uid_from(value)


def _uid_from(value: uuid.UUID) -> str:
    return f"2.25.{value.int}"


# -- the dataset ----------------------------------------------------------------------------------------


def dicom_person_name(name: str | None) -> str:
    """A display name as DICOM PN "Family^Given^Middle".

    "Family, Given Middle" keeps its comma split; otherwise the last word is the family name, with
    lower-case particles before it ("Jan van der Berg" → "van der Berg^Jan"); one word is a family name.
    Characters PN reserves (^ \\ =) are dropped; each component is cut to 64 characters.
    """
    text = " ".join(_PN_FORBIDDEN.sub(" ", name or "").split())
    if not text:
        return ""
    if "," in text:
        family, _, rest = text.partition(",")
        given_words = rest.split()
        family_words = family.split()
    else:
        words = text.split()
        if len(words) == 1:
            return words[0][:64]
        start = len(words) - 1
        while start > 1 and words[start - 1].lower() in _NAME_PARTICLES:
            start -= 1
        family_words, given_words = words[start:], words[:start]
    parts = [" ".join(family_words)[:64]]
    if given_words:
        parts.append(given_words[0][:64])
        if len(given_words) > 1:
            parts.append(" ".join(given_words[1:])[:64])
    return "^".join(parts)


def build_instances(
    context: CommitContext, items: Sequence[CommitItem], *, timezone: tzinfo = PRACTICE_TIMEZONE
) -> list[FileDataset]:
    """One dataset per item; they share the study date/time (the earliest capture in the commit)."""
    if not items:
        raise ValueError("there are no photos to commit")
    study_at = min(taken_at(item) for item in items)
    return [
        build_instance(context, item, instance_number=n, study_at=study_at, timezone=timezone)
        for n, item in enumerate(items, start=1)
    ]


def build_instance(
    context: CommitContext,
    item: CommitItem,
    *,
    instance_number: int = 1,
    study_at: datetime | None = None,
    timezone: tzinfo = PRACTICE_TIMEZONE,
) -> FileDataset:
    """The DICOM instance for one item as a Part 10 dataset with complete File Meta Information: a
    Dermoscopic Photography Image when its view is "dermoscopy", a VL Photographic Image otherwise.
    ValueError (in words for the GP) when it cannot be made."""
    if not context.patient.id:
        raise ValueError("the patient id is missing; reopen the session from the patient's record")
    if not context.encounter_id:
        raise ValueError("the encounter id is missing; reopen the session from the patient's record")
    metadata: dict[str, Any] = item.metadata or {}
    if not isinstance(metadata, dict):
        raise ValueError("image metadata must be an object")
    frame = jpeg_frame(item.jpeg)
    transfer_syntax = frame.transfer_syntax
    photometric = frame.photometric_interpretation
    taken = taken_at(item).astimezone(timezone)
    study = (study_at or taken_at(item)).astimezone(timezone)
    created = _aware(context.committed_at).astimezone(timezone)
    sop_uid = sop_instance_uid(item.image_id)
    try:
        terms = photo_terms(metadata)  # the data file's codes and words; a client's words are never read
    except UnknownTerm as exc:
        raise ValueError(str(exc)) from None
    iod = photo_iod(terms)

    meta = FileMetaDataset()
    # Group Length is a placeholder: pydicom writes the real length whenever the element is present.
    meta.FileMetaInformationGroupLength = 0
    meta.FileMetaInformationVersion = FILE_META_VERSION
    meta.MediaStorageSOPClassUID = iod.sop_class_uid
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.TransferSyntaxUID = transfer_syntax
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "CONSULTCAM"
    validate_file_meta(meta, enforce_standard=True)  # PS3.10 Table 7.1-1 Type 1 elements all present
    # pydicom takes None for a dataset made in memory rather than read from a file; its stubs do not say so.
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)  # type: ignore[arg-type]

    # SOP Common
    ds.SpecificCharacterSet = "ISO_IR 192"  # UTF-8: Māori names keep their macrons
    ds.SOPClassUID = iod.sop_class_uid
    ds.SOPInstanceUID = sop_uid
    ds.InstanceCreationDate = _da(created)
    ds.InstanceCreationTime = _tm(created)
    ds.TimezoneOffsetFromUTC = _offset(taken)

    # Patient
    patient = context.patient
    nhi = (patient.nhi or "").strip().upper()
    if nhi:
        if not is_valid_nhi(nhi):
            raise ValueError(f"NHI {patient.nhi!r} is not a valid NHI number (format or check character)")
        ds.PatientID = nhi
        ds.IssuerOfPatientID = "NHI"
    else:
        ds.PatientID = _lo(patient.id, "patient id")
    ds.PatientName = dicom_person_name(patient.name)
    ds.PatientBirthDate = _birth_date(patient.birth_date)
    ds.PatientSex = ""

    # General Study (+ Patient Study: the encounter as the admission id, which LO can hold in full)
    ds.StudyInstanceUID = study_instance_uid(patient.id, context.encounter_id)
    ds.StudyDate = _da(study)
    ds.StudyTime = _tm(study)
    ds.ReferringPhysicianName = ""
    ds.StudyID = context.encounter_id[:16]
    ds.AccessionNumber = context.encounter_id if len(context.encounter_id) <= 16 else ""
    ds.StudyDescription = "Clinical photography"
    ds.AdmissionID = _lo(context.encounter_id, "encounter id")

    # General Series
    ds.Modality = iod.modality
    ds.SeriesInstanceUID = series_instance_uid(context.session_id, iod.series_key)
    ds.SeriesNumber = iod.series_number
    ds.SeriesDescription = iod.series_description

    # General Equipment
    ds.Manufacturer = MANUFACTURER
    ds.ManufacturerModelName = MANUFACTURER

    # General Image, General Acquisition, VL Image
    ds.InstanceNumber = instance_number
    ds.PatientOrientation = ""
    ds.ContentDate = _da(taken)
    ds.ContentTime = _tm(taken)
    ds.AcquisitionDateTime = _dt(taken)
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionMethod = "ISO_10918_1"
    comments = [
        text
        for text in (
            optional_text(metadata.get("label"), "label"),
            optional_text(metadata.get("notes"), "notes"),
            consent_statement(context.consent) if context.consent is not None else None,
        )
        if text
    ]
    if comments:
        ds.ImageComments = "\n".join(comments)[:10240]
    laterality = metadata.get("laterality")
    if laterality is not None:
        ds.ImageLaterality = _LATERALITY[laterality]
    else:
        ds.Laterality = ""  # General Series 2C: unknown, said as an empty value rather than guessed
    if terms.site is not None:
        region = _code(terms.site.code, "SCT", terms.site.display)
        if terms.side is not None and terms.side.code and terms.side.preferred_term:
            # DICOM CID 244 "Laterality": the SNOMED CT qualifier and its preferred term, from the data file.
            region.AnatomicRegionModifierSequence = [_code(terms.side.code, "SCT", terms.side.preferred_term)]
        ds.AnatomicRegionSequence = [region]

    # Acquisition Context (Type 2: present, empty)
    ds.AcquisitionContextSequence = []

    if iod is DERMOSCOPIC_PHOTOGRAPHY_IMAGE:  # Enhanced General Equipment, Dermoscopic Image
        reference = _uid_from(uuid.uuid5(UID_NAMESPACE, f"frame-of-reference:{item.image_id}"))
        add_dermoscopy_modules(ds, terms, frame_of_reference_uid=reference)

    # Image Pixel
    ds.SamplesPerPixel = 1 if photometric == "MONOCHROME2" else 3
    ds.PhotometricInterpretation = photometric
    if ds.SamplesPerPixel == 3:
        ds.PlanarConfiguration = 0
    ds.Rows = frame.rows
    ds.Columns = frame.columns
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = encapsulate([item.jpeg])
    ds["PixelData"].VR = "OB"
    ds.set_original_encoding(False, True)  # explicit VR little endian, as the transfer syntax says
    return ds


def to_part10(ds: FileDataset) -> bytes:
    """The dataset as a DICOM Part 10 file (preamble, DICM, file meta)."""
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = " ".join(meaning.split())[:64]
    return item


def taken_at(item: CommitItem) -> datetime:
    """When the photo was taken (captured_at, else created_at), aware; naive means UTC."""
    return _aware(item.captured_at or item.created_at)


def _aware(value: datetime) -> datetime:
    if not isinstance(value, datetime):
        raise ValueError("a photo has no capture time")
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)  # naive means UTC


def _da(value: datetime | date) -> str:
    return value.strftime("%Y%m%d")


def _tm(value: datetime) -> str:
    return value.strftime("%H%M%S")


def _dt(value: datetime) -> str:
    return value.strftime("%Y%m%d%H%M%S") + _offset(value)


def _offset(value: datetime) -> str:
    return value.strftime("%z") or "+0000"


def _birth_date(value: date | None) -> str:
    if value is None:
        return ""
    if not isinstance(value, date):
        raise ValueError("the patient's birth date is not a date")
    return _da(value)


def _lo(value: str, what: str) -> str:
    text = value.strip() if isinstance(value, str) else ""
    if not text or len(text) > 64 or "\\" in text or any(ord(c) < 32 for c in text):
        raise ValueError(f"{what} {value!r} cannot be stored in DICOM (1–64 characters, no backslash)")
    return text
