"""What a JPEG's frame header says, and which DICOM transfer syntax carries that JPEG as it is.

The photo is encapsulated, never re-encoded (PS3.5 A.4.1): JPEG Baseline 1.2.840.10008.1.2.4.50, or
JPEG Extended 1.2.840.10008.1.2.4.51 for a 12-bit-capable SOF1 stream holding 8-bit data. Rows, Columns,
Samples per Pixel and Photometric Interpretation are read from the JPEG's own frame header (ITU-T T.81
B.2.2), so the DICOM header always describes the pixel data it carries (PS3.5 8.2.1).
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.uid import UID

__all__ = ["JPEG_BASELINE", "JPEG_EXTENDED", "JpegFrame", "jpeg_frame"]

JPEG_BASELINE = UID("1.2.840.10008.1.2.4.50")
JPEG_EXTENDED = UID("1.2.840.10008.1.2.4.51")


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
