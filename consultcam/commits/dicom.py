"""One clinical photo as a DICOM VL Photographic Image (PS3.3 A.33.4), carrying the JPEG as it is.

The JPEG is encapsulated, never re-encoded (Transfer Syntax JPEG Baseline 1.2.840.10008.1.2.4.50, or
JPEG Extended 1.2.840.10008.1.2.4.51 for a 12-bit-capable SOF1 stream holding 8-bit data). Rows, Columns,
Samples per Pixel and Photometric Interpretation are read from the JPEG's own frame header, so the DICOM
header always describes the pixel data it carries (PS3.5 8.2.1): YCbCr is YBR_FULL_422 (subsampled or
not: the VL Image module does not allow YBR_FULL), an Adobe "no transform" stream RGB, one component
MONOCHROME2.

Identity (PS3.5 B.2, "2.25." UUID-derived UIDs), stable so a repeated commit never makes a second copy:

- Study = one encounter of one patient: uuid5(namespace, "study:<patient id>:<encounter id>"). The patient
  id is part of it so two practices' encounter "1" can never merge two patients into one study.
- Series = one capture session: uuid5(namespace, "series:<session id>").
- SOP Instance = the image: 2.25.<the image uuid as an integer>.

Dates and times are local to the practice (DICOM DA/TM carry no zone), with Timezone Offset From UTC.
"""

from __future__ import annotations

import io
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from typing import Any

from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID

from consultcam.commits.connectors.base import CommitContext, CommitItem
from consultcam.commits.fhir_media import consent_statement, optional_text
from consultcam.config import PRACTICE_TIMEZONE
from consultcam.sessions.nhi import is_valid_nhi
from consultcam.terminology.metadata import UnknownTerm, photo_terms

__all__ = [
    "JPEG_BASELINE",
    "JPEG_EXTENDED",
    "PRACTICE_TIMEZONE",
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

VL_PHOTOGRAPHIC_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.77.1.4")
JPEG_BASELINE = UID("1.2.840.10008.1.2.4.50")
JPEG_EXTENDED = UID("1.2.840.10008.1.2.4.51")
#: Fixed namespace for the uuid5-derived study and series UIDs. Never change it: UIDs must stay stable.
UID_NAMESPACE = uuid.UUID("6f1c3a52-2b8e-5d4a-9c0e-7a1d2c3b4e5f")
MANUFACTURER = "consultcam"

#: Image Laterality (0020,0062) enumerated values (PS3.3 C.7.6.2): codes, not words.
_LATERALITY = {"left": "L", "right": "R", "bilateral": "B", "not-applicable": "U"}
_PN_FORBIDDEN = re.compile(r"[\\^=\x00-\x1f]")
_NAME_PARTICLES = {"van", "von", "der", "den", "de", "del", "della", "di", "da", "du", "la", "le", "ter"}


# -- UIDs -----------------------------------------------------------------------------------------------


def study_instance_uid(patient_id: str, encounter_id: str) -> str:
    """The Study Instance UID of one encounter of one patient (stable across commits)."""
    return _uid_from(uuid.uuid5(UID_NAMESPACE, f"study:{patient_id}:{encounter_id}"))


def series_instance_uid(session_id: str) -> str:
    """The Series Instance UID of one capture session (stable across commits)."""
    return _uid_from(uuid.uuid5(UID_NAMESPACE, f"series:{session_id}"))


def sop_instance_uid(image_id: str) -> str:
    """The SOP Instance UID of an image: its uuid as 2.25.<integer>; other ids through uuid5."""
    try:
        value = uuid.UUID(str(image_id))
    except ValueError:
        value = uuid.uuid5(UID_NAMESPACE, f"image:{image_id}")
    return _uid_from(value)


def _uid_from(value: uuid.UUID) -> str:
    return f"2.25.{value.int}"


# -- the JPEG -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JpegFrame:
    """What the JPEG's frame header (SOFn) says about the pixels it encodes."""

    sof: int  # 0 baseline, 1 extended sequential, 2 progressive, …
    precision: int
    rows: int
    columns: int
    components: int
    subsampled: bool  # chroma sampled below luma (4:2:0, 4:2:2, …)
    adobe_transform: int | None  # APP14 "Adobe" transform flag: 0 = RGB/CMYK as is, 1 = YCbCr

    @property
    def transfer_syntax(self) -> UID:
        if self.sof == 0:
            return JPEG_BASELINE
        if self.sof == 1 and self.precision == 8:
            return JPEG_EXTENDED
        raise ValueError(
            "the photo is not a baseline JPEG (progressive or lossless JPEG cannot be stored as it is)"
        )

    @property
    def photometric_interpretation(self) -> str:
        if self.components == 1:
            return "MONOCHROME2"
        if self.components != 3:
            raise ValueError(f"the photo has {self.components} colour channels (CMYK?); expected 3")
        if self.adobe_transform == 0:
            return "RGB"
        # The VL Image module (PS3.3 C.8.12.1.1.2) allows YBR_FULL_422 but not YBR_FULL for 3 samples, so a
        # 4:4:4 YCbCr stream is labelled YBR_FULL_422 too; JPEG decoders take the sampling from the stream.
        return "YBR_FULL_422"


_SOF_MARKERS = {0xC0 + n for n in range(16)} - {0xC4, 0xC8, 0xCC}


def jpeg_frame(jpeg: bytes) -> JpegFrame:
    """Read the frame header of a JPEG; ValueError when it is not one."""
    if len(jpeg) < 4 or jpeg[:2] != b"\xff\xd8":
        raise ValueError("the photo is not a JPEG file")
    adobe: int | None = None
    pos, end = 2, len(jpeg)
    while pos + 4 <= end:
        if jpeg[pos] != 0xFF:
            raise ValueError("the photo is a damaged JPEG file (bad marker)")
        marker = jpeg[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # standalone markers
            pos += 2
            continue
        length = int.from_bytes(jpeg[pos + 2 : pos + 4], "big")
        segment = jpeg[pos + 4 : pos + 2 + length]
        if length < 2 or len(segment) != length - 2:
            raise ValueError("the photo is a damaged JPEG file (truncated header)")
        if marker == 0xEE and segment[:5] == b"Adobe" and len(segment) >= 12:
            adobe = segment[11]
        elif marker in _SOF_MARKERS:
            if len(segment) < 6:
                raise ValueError("the photo is a damaged JPEG file (short frame header)")
            precision = segment[0]
            rows = int.from_bytes(segment[1:3], "big")
            columns = int.from_bytes(segment[3:5], "big")
            count = segment[5]
            specs = segment[6 : 6 + 3 * count]
            if len(specs) != 3 * count or count == 0:
                raise ValueError("the photo is a damaged JPEG file (bad frame header)")
            sampling = [specs[3 * i + 1] for i in range(count)]
            if rows == 0 or columns == 0:
                raise ValueError("the photo's JPEG header has no image size")
            return JpegFrame(
                sof=marker - 0xC0,
                precision=precision,
                rows=rows,
                columns=columns,
                components=count,
                subsampled=len(set(sampling)) > 1,
                adobe_transform=adobe,
            )
        elif marker == 0xDA:
            break
        pos += 2 + length
    raise ValueError("the photo is a damaged JPEG file (no frame header)")


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
    """The VL Photographic Image for one item, as a Part 10 dataset; ValueError when it cannot be made."""
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

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = VL_PHOTOGRAPHIC_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.TransferSyntaxUID = transfer_syntax
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "CONSULTCAM"
    # pydicom takes None for a dataset made in memory rather than read from a file; its stubs do not say so.
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)  # type: ignore[arg-type]

    # SOP Common
    ds.SpecificCharacterSet = "ISO_IR 192"  # UTF-8: Māori names keep their macrons
    ds.SOPClassUID = VL_PHOTOGRAPHIC_IMAGE_STORAGE
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
    ds.Modality = "XC"
    ds.SeriesInstanceUID = series_instance_uid(context.session_id)
    ds.SeriesNumber = 1
    ds.SeriesDescription = "Clinical photographs"

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
    try:
        terms = photo_terms(metadata)  # the data file's codes and words; a client's words are never read
    except UnknownTerm as exc:
        raise ValueError(str(exc)) from None
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
