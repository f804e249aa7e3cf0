"""Removing a JPEG's metadata without touching its pixels (issue 15, "Encode once").

`strip_metadata` walks a JPEG's marker segments (ITU-T T.81 Annex B) and writes them out again without the
ones that carry metadata: APP1 (EXIF, XMP), APP2 (ICC), APP13 (IPTC), every other APPn and COM. Only what
libjpeg reads to decode colours is kept: the JFIF APP0 and the Adobe APP14 (libjpeg-turbo's jdmarker.c
looks at no other APPn). Tables, frame and scan headers and the entropy-coded data are copied byte for
byte, so the stored file decodes to exactly the uploaded pixels; nothing after the end of the image (an
MPF second image, a maker's trailer) is kept.

Why our own walker and not a library: libjpeg-turbo's lossless copy (jpegtran `-copy none`, which
`lossless_edits` runs for rotations and crops, PyTurboJPEG's `transform`, pyvips) re-writes the
entropy-coded data with its own Huffman tables, so the scan data would not stay byte for byte (Pillow
bundles only libjpeg's decoder and encoder, with no marker copy).

Anything the walker is not sure of (arithmetic coding, 12-bit, lossless or hierarchical frames, a DNL
segment, an Adobe colour transform other than YCbCr, a frame that is not three components, a truncated or
malformed structure) gives None: the caller then re-encodes the photo as before.
"""

from __future__ import annotations

import re

SOI, EOI, SOS, DHT, DQT, DRI = 0xD8, 0xD9, 0xDA, 0xC4, 0xDB, 0xDD
APP0, APP14, COM = 0xE0, 0xEE, 0xFE
#: Frames stored as they are: baseline (SOF0), extended sequential (SOF1) and progressive (SOF2), Huffman
#: coded. The others (lossless, hierarchical, arithmetic; T.81 Table B.1) go through re-encoding.
LOSSLESS_FRAMES = frozenset({0xC0, 0xC1, 0xC2})
_TABLES = frozenset({DHT, DQT, DRI})
# Inside entropy-coded data a 0xFF is followed by 0x00 (stuffing) or an RSTn marker (0xD0-0xD7); 0xFF 0xFF
# is fill before a marker (T.81 §B.1.1.2-B.1.1.5). Anything else is the next marker.
_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def strip_metadata(data: bytes) -> bytes | None:
    """`data` (a whole JPEG file) with every metadata segment removed and its scans kept byte for byte.

    Returns the new file (SOI, the kept segments in their order, each scan with its entropy-coded data,
    EOI), or None when the file is not a three-component, 8-bit, Huffman-coded JPEG whose structure the
    walker fully understands. Does not decode anything; the caller verifies the pixels.
    """
    if not data.startswith(b"\xff\xd8"):
        return None
    out = [b"\xff\xd8"]
    pos, frame_seen, jfif_seen, tables_seen = 2, False, False, False
    while True:
        while pos < len(data) and data[pos] == 0xFF and pos + 1 < len(data) and data[pos + 1] == 0xFF:
            pos += 1  # fill bytes before a marker
        if pos + 2 > len(data) or data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == EOI:
            return b"".join(out) + b"\xff\xd9" if frame_seen else None
        if pos + 4 > len(data):
            return None
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        end = pos + 2 + length
        if length < 2 or end > len(data):
            return None
        segment, payload = data[pos:end], data[pos + 4 : end]
        if marker in LOSSLESS_FRAMES:
            if frame_seen or not _plain_frame(payload):
                return None
            frame_seen = True
            out.append(segment)
        elif marker == SOS:
            if not (frame_seen and tables_seen):  # no DHT: a motion-JPEG frame relying on default tables
                return None
            found = _NEXT_MARKER.search(data, end)
            if found is None:
                return None  # truncated: no marker ends the scan
            out.append(data[pos : found.start()])
            end = found.start()
        elif marker in _TABLES:
            tables_seen = tables_seen or marker == DHT
            out.append(segment)
        elif marker == APP0:
            if payload.startswith(b"JFIF\x00") and len(payload) >= 14 and not jfif_seen and not frame_seen:
                # Version, units and density only: the thumbnail JFIF allows after them (JFIF 1.02, "JFIF
                # APP0 marker") could be any picture, so it goes, as a JFXX extension does with the APPn.
                jfif_seen = True
                out.append(b"\xff\xe0\x00\x10" + payload[:12] + b"\x00\x00")
        elif marker == APP14:
            if payload.startswith(b"Adobe"):
                if len(payload) < 12 or payload[11] != 1:  # transform 1: YCbCr (Adobe TN 5116 §18)
                    return None
                out.append(segment)
        elif 0xE1 <= marker <= 0xEF or marker == COM:
            pass  # metadata: EXIF, XMP, ICC, IPTC, maker notes, comments
        else:
            return None  # SOF3/5-15, DAC, DNL, DHP, EXP, TEM, a stray RSTn, reserved markers
        pos = end


def _plain_frame(payload: bytes) -> bool:
    """A frame header (T.81 §B.2.2) of 8-bit precision with three components, each listed in full, that
    are not named R, G, B (libjpeg decodes those as RGB, not YCbCr, when there is no JFIF or Adobe
    segment; what we store is always YCbCr)."""
    if not (len(payload) == 6 + 3 * 3 and payload[0] == 8 and payload[5] == 3):
        return False
    return bytes(payload[6:15:3]).upper() != b"RGB"
