"""Which DICOM IOD a photo becomes, and the modules only the Dermoscopic Photography Image has.

A photo whose view is "dermoscopy" is a Dermoscopic Photography Image (PS3.3 A.32.11, from Supplement 221:
SOP Class 1.2.840.10008.5.1.4.1.1.77.1.7, Modality DMS); every other photo (overview, close-up, no view) is a
VL Photographic Image (PS3.3 A.32.4: SOP Class 1.2.840.10008.5.1.4.1.1.77.1.4, Modality XC). Both share the
Patient, Study, Series, General Image, Image Pixel, Acquisition Context and VL Image modules
(`consultcam.commits.dicom`). A Series holds one Modality (PS3.3 C.7.3.1), so a session's dermoscopy photos
go in a Series of their own beside its XC Series.

The Dermoscopic Photography Image adds:

- Enhanced General Equipment (C.7.5.2), Usage M: Manufacturer, Manufacturer's Model Name, Device Serial
  Number and Software Versions, all Type 1. The equipment that makes the instance is consultcam, software
  with no serial number; its name stands in for one, and Software Versions carries the installed version.
- Frame of Reference (C.7.4.1), Usage U: dciodvfy (dicom3tools) checks it in every DMS instance, so it is
  sent: a Frame of Reference UID of the photo's own (its coordinates relate to no other image's) and an
  empty Position Reference Indicator (Type 2, no anatomical reference point).
- Dermoscopic Image (C.8.12.13), Usage M. Recognizable Visual Features (0028,0302), Type 1, YES/NO, "YES if
  the image contains the patient's fingerprints": YES when the body site is a finger, thumb, hand or palm,
  or when no site was chosen (a dermoscopy photo might then be of a fingertip), NO otherwise. Light Source
  Polarization (0016,1001), Emitter Color Temperature (0016,1002), Contact Method (0016,1003) and Optical
  Magnification Factor (0016,1005) are Type 2: consultcam is not told how the dermatoscope was used, so they
  are present and empty, as PS3.5 7.4.3 says for a Type 2 value that is unknown. Immersion Media
  (0016,1004) is Type 2C, required only for CONTACT, so it is absent. Tracking ID/UID (1C) are absent: no
  lesion tracking.

pydicom before 3.1 does not know the Supplement 221 elements (0016,1002)-(0016,1005); they are added to its
data dictionary here, with the VR and VM of PS3.6 Table 6-1, so they are written with their VR and can be
read back by keyword.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata

from pydicom.datadict import add_dict_entries, dictionary_has_tag
from pydicom.dataset import Dataset
from pydicom.uid import UID

from consultcam.terminology.metadata import PhotoTerms

__all__ = [
    "DERMOSCOPIC_PHOTOGRAPHY_IMAGE",
    "DERMOSCOPIC_PHOTOGRAPHY_IMAGE_STORAGE",
    "VL_PHOTOGRAPHIC_IMAGE",
    "VL_PHOTOGRAPHIC_IMAGE_STORAGE",
    "PhotoIod",
    "add_dermoscopy_modules",
    "photo_iod",
]

VL_PHOTOGRAPHIC_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.77.1.4")
DERMOSCOPIC_PHOTOGRAPHY_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.77.1.7")
MANUFACTURER = "consultcam"

#: PS3.6 Table 6-1 entries of Supplement 221 that pydicom 3.0 lacks: tag → (VR, VM, name, retired, keyword).
_SUPPLEMENT_221 = {
    0x00161002: ("DS", "1", "Emitter Color Temperature", "", "EmitterColorTemperature"),
    0x00161003: ("CS", "1", "Contact Method", "", "ContactMethod"),
    0x00161004: ("CS", "1-n", "Immersion Media", "", "ImmersionMedia"),
    0x00161005: ("DS", "1", "Optical Magnification Factor", "", "OpticalMagnificationFactor"),
}
add_dict_entries({tag: entry for tag, entry in _SUPPLEMENT_221.items() if not dictionary_has_tag(tag)})

#: Words in a body site's preferred term where a dermoscopy photo may show friction ridges (fingerprints).
_FINGERPRINT_WORDS = ("finger", "thumb", "hand", "palm")


@dataclass(frozen=True)
class PhotoIod:
    """One kind of DICOM photo: its Storage SOP Class, Modality and the Series it goes in within a session.

    `series_key` is "" for XC (the Series UID every earlier commit of a session used) and names the extra
    Series otherwise; `series_number` and `series_description` are what a PACS lists for that Series."""

    name: str
    sop_class_uid: UID
    modality: str
    series_key: str
    series_number: int
    series_description: str


VL_PHOTOGRAPHIC_IMAGE = PhotoIod(
    "VL Photographic Image", VL_PHOTOGRAPHIC_IMAGE_STORAGE, "XC", "", 1, "Clinical photographs"
)
DERMOSCOPIC_PHOTOGRAPHY_IMAGE = PhotoIod(
    "Dermoscopic Photography Image",
    DERMOSCOPIC_PHOTOGRAPHY_IMAGE_STORAGE,
    "DMS",
    "dms",
    2,
    "Dermoscopic photographs",
)


def photo_iod(terms: PhotoTerms) -> PhotoIod:
    """The IOD of a photo with these terms: Dermoscopic Photography Image for the view "dermoscopy", VL
    Photographic Image otherwise."""
    if terms.view is not None and terms.view.value == "dermoscopy":
        return DERMOSCOPIC_PHOTOGRAPHY_IMAGE
    return VL_PHOTOGRAPHIC_IMAGE


def add_dermoscopy_modules(ds: Dataset, terms: PhotoTerms, *, frame_of_reference_uid: str) -> None:
    """Add the Frame of Reference (PS3.3 C.7.4.1), Enhanced General Equipment (C.7.5.2) and Dermoscopic
    Image (C.8.12.13) modules to a dataset that already has the General Equipment module; see the module
    docstring for each value."""
    ds.FrameOfReferenceUID = frame_of_reference_uid
    ds.PositionReferenceIndicator = ""

    ds.Manufacturer = ds.get("Manufacturer") or MANUFACTURER
    ds.ManufacturerModelName = ds.get("ManufacturerModelName") or MANUFACTURER
    ds.DeviceSerialNumber = MANUFACTURER
    ds.SoftwareVersions = _software_version()

    ds.RecognizableVisualFeatures = "YES" if _may_show_fingerprints(terms) else "NO"
    ds.LightSourcePolarization = ""
    ds.EmitterColorTemperature = None
    ds.ContactMethod = ""
    ds.OpticalMagnificationFactor = None


def _may_show_fingerprints(terms: PhotoTerms) -> bool:
    if terms.site is None:
        return True
    words = terms.site.display.lower()
    return any(word in words for word in _FINGERPRINT_WORDS)


def _software_version() -> str:
    try:
        return f"consultcam {metadata.version('consultcam')}"[:64]
    except metadata.PackageNotFoundError:
        return "consultcam"
