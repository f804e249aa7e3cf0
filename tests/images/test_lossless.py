"""Issue 15, "Encode once": a conforming JPEG is stored without re-encoding (the same pixels, the same scan
bytes, no metadata segment left); every other upload is still normalised."""

import io
import struct

import numpy as np
import pytest
from PIL import Image, ImageCms

from consultcam.images.processing.lossless import strip_metadata
from consultcam.images.processing.normalise import normalise
from tests.images.test_processing import BLUE, RED, corner_colours, encode, near, phone_exif, photo

# Markers a stored JPEG may hold (ITU-T T.81 Table B.1): SOI, EOI, SOF0-2, DHT, DQT, DRI, SOS, RSTn inside
# scans, and APP0 (JFIF) / APP14 (Adobe), which libjpeg reads to decode colours.
ALLOWED = {0xD8, 0xD9, 0xC0, 0xC1, 0xC2, 0xC4, 0xDB, 0xDD, 0xDA, 0xE0, 0xEE}


def segments(data: bytes) -> list[tuple[int, bytes]]:
    """Every marker segment of a whole JPEG file, scans included, as (marker, payload), up to EOI; the bytes
    after EOI are returned as marker -1. Entropy-coded data is skipped as T.81 §B.1.1.5 defines it."""
    assert data[:2] == b"\xff\xd8"
    found, pos = [(0xD8, b"")], 2
    while True:
        assert data[pos] == 0xFF, f"bad marker at {pos}"
        marker = data[pos + 1]
        if marker == 0xD9:
            found.append((0xD9, b""))
            if pos + 2 < len(data):
                found.append((-1, data[pos + 2 :]))
            return found
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        found.append((marker, data[pos + 4 : pos + 2 + length]))
        pos += 2 + length
        if marker == 0xDA:
            while not (data[pos] == 0xFF and data[pos + 1] not in (0x00, *range(0xD0, 0xD8))):
                pos += 1


def scans(data: bytes) -> bytes:
    """The frame's scans: from the first SOS to EOI (headers and entropy-coded data), less any APPn/COM."""
    start = data.index(b"\xff\xda")
    end = data.index(b"\xff\xd9", start) + 2
    return data[start:end]


def pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def icc(description: str, red: tuple, green: tuple, blue: tuple) -> bytes:
    """A minimal ICC v2 matrix/TRC display profile (ICC.1:2001-04 §6), gamma 2.2, D50-adapted primaries."""

    def xyz(values: tuple) -> bytes:
        return b"XYZ \0\0\0\0" + b"".join(struct.pack(">i", round(v * 65536)) for v in values)

    text = description.encode() + b"\0"
    desc = b"desc\0\0\0\0" + struct.pack(">I", len(text)) + text + b"\0" * 8 + b"\0\0\0" + b"\0" * 67
    tags = [
        (b"desc", desc),
        (b"wtpt", xyz((0.9642, 1.0, 0.8249))),
        (b"rXYZ", xyz(red)),
        (b"gXYZ", xyz(green)),
        (b"bXYZ", xyz(blue)),
        (b"rTRC", b"curv\0\0\0\0" + struct.pack(">IH", 1, 0x0233) + b"\0\0"),
        (b"cprt", b"text\0\0\0\0no copyright\0\0\0\0"),
    ]
    tags += [(b"gTRC", tags[5][1]), (b"bTRC", tags[5][1])]
    offset = 128 + 4 + 12 * len(tags)
    table, body = struct.pack(">I", len(tags)), b""
    for signature, data in tags:
        table += signature + struct.pack(">II", offset + len(body), len(data))
        body += data + b"\0" * (-len(data) % 4)
    size = offset + len(body)
    header = (
        struct.pack(">I", size)
        + b"\0" * 4
        + bytes([2, 0x10, 0, 0])
        + b"mntrRGB XYZ "
        + b"\0" * 12
        + b"acsp"
        + b"\0" * 24
        + struct.pack(">I", 0)
        + b"".join(struct.pack(">i", round(v * 65536)) for v in (0.9642, 1.0, 0.8249))
        + b"\0" * 48
    )
    assert len(header) == 128
    return header + table + body


DISPLAY_P3 = icc("Display P3", (0.5151, 0.2412, -0.0011), (0.2919, 0.6922, 0.0419), (0.1572, 0.0666, 0.7841))
ADOBE_RGB = icc(
    "Adobe RGB (1998)", (0.6097, 0.3111, 0.0195), (0.2053, 0.6257, 0.0609), (0.1492, 0.0632, 0.7446)
)
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@pytest.fixture(scope="module")
def marked_2048() -> Image.Image:
    """A 2048 x 1536 photo (what the phone uploads) with a red marker top-left and a blue one top-right."""
    image = photo().resize((2048, 1536), Image.Resampling.LANCZOS)
    image.paste(RED, (0, 0, 200, 200))
    image.paste(BLUE, (2048 - 200, 0, 2048, 200))
    return image


def with_metadata(jpeg: bytes) -> bytes:
    """`jpeg` with an XMP APP1, an IPTC APP13, a maker's APP9 and a comment inserted after its headers,
    and an MPF-like second image (with EXIF) after its end."""

    def segment(marker: int, payload: bytes) -> bytes:
        return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload

    extra = (
        segment(0xE1, b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta>J Smith NHI ABC1234</x:xmpmeta>")
        + segment(0xED, b"Photoshop 3.0\08BIM\x04\x04\0\0\0\0\0\x10J Smith NHI ABC1234")
        + segment(0xE9, b"MAKER serial 12345")
        + segment(0xFE, b"J Smith NHI ABC1234")
    )
    at = jpeg.index(b"\xff\xdb")
    second = encode(Image.new("RGB", (64, 48)), "JPEG", exif=phone_exif(1))
    return jpeg[:at] + extra + jpeg[at:] + second


def assert_kept(upload: bytes, stored: bytes) -> None:
    assert np.array_equal(pixels(stored), pixels(upload))  # PSNR infinite
    assert scans(stored) == scans(strip_metadata(upload) or b"")
    found = segments(stored)
    assert {marker for marker, _ in found} <= ALLOWED, [hex(m) for m, _ in found]
    assert [payload[:5] for marker, payload in found if marker == 0xE0] in ([], [b"JFIF\0"])
    for text in (b"NHI", b"Apple", b"MAKER", b"Exif", b"ICC_PROFILE"):
        assert text not in stored


def test_a_conforming_jpeg_is_stored_with_its_pixels_and_scans_unchanged(marked_2048):
    plain = encode(marked_2048, "JPEG", quality=90)
    upload = with_metadata(
        encode(marked_2048, "JPEG", quality=90, exif=phone_exif(1), icc_profile=SRGB, comment=b"J Smith")
    )

    result = normalise(upload, declared_content_type="image/jpeg")

    assert_kept(upload, result.jpeg)
    assert scans(result.jpeg) == scans(plain)  # the encoder's own scan bytes, byte for byte
    assert (result.width, result.height) == (2048, 1536)
    assert result.source_content_type == "image/jpeg"
    with Image.open(io.BytesIO(result.thumbnail)) as thumb:
        assert thumb.size == (384, 288)
        assert dict(thumb.getexif()) == {}
    assert (result.quality["width"], result.quality["height"]) == (2048, 1536)
    assert result.quality["warnings"] == []


def test_the_walker_removes_metadata_between_the_scans_of_a_progressive_jpeg(marked_2048):
    upload = encode(marked_2048, "JPEG", quality=90, progressive=True, exif=phone_exif(1))
    second_scan = upload.index(b"\xff\xda", upload.index(b"\xff\xda") + 2)
    upload = upload[:second_scan] + b"\xff\xfe\x00\x15J Smith NHI ABC1234" + upload[second_scan:]

    stripped = strip_metadata(upload)

    assert stripped is not None
    assert_kept(upload, stripped)
    assert 0xC2 in {marker for marker, _ in segments(stripped)}


def recoded(upload: bytes, stored: bytes) -> bool:
    return scans(stored) != scans(upload) and 0xC0 in {marker for marker, _ in segments(stored)}


def test_a_thumbnail_in_the_jfif_header_is_removed(marked_2048):
    """JFIF 1.02 lets APP0 carry an uncompressed thumbnail, which could be any picture (the uncropped
    original, another patient): only version, units and density are kept."""
    upload = encode(marked_2048, "JPEG", quality=90)
    assert upload[2:4] == b"\xff\xe0"
    length = int.from_bytes(upload[4:6], "big")
    thumbnail = bytes([2, 1]) + b"\xee" * (2 * 1 * 3)  # 2 x 1 pixels of RGB
    app0 = upload[6 : 4 + length - 2] + thumbnail
    upload = upload[:2] + b"\xff\xe0" + struct.pack(">H", len(app0) + 2) + app0 + upload[4 + length :]

    result = normalise(upload, declared_content_type="image/jpeg")

    assert_kept(upload, result.jpeg)
    jfif = [payload for marker, payload in segments(result.jpeg) if marker == 0xE0]
    assert jfif == [upload[6:18] + b"\x00\x00"]
    assert b"\xee\xee\xee\xee\xee\xee" not in result.jpeg


def test_a_progressive_jpeg_is_stored_baseline_by_reencoding(marked_2048):
    """A stored photo stays sequential: DICOM and TIFF connectors carry its JPEG stream as it is."""
    upload = encode(marked_2048, "JPEG", quality=90, progressive=True)

    result = normalise(upload, declared_content_type="image/jpeg")

    assert recoded(upload, result.jpeg)
    assert 0xC2 not in {marker for marker, _ in segments(result.jpeg)}


def test_a_rotated_jpeg_is_still_turned_upright_by_reencoding(marked_2048):
    upload = encode(marked_2048, "JPEG", quality=90, exif=phone_exif(6))

    result = normalise(upload, declared_content_type="image/jpeg")

    assert recoded(upload, result.jpeg)
    assert (result.width, result.height) == (1536, 2048)
    colours = corner_colours(result.jpeg)
    assert near(colours["top-right"], RED), colours
    assert near(colours["bottom-right"], BLUE), colours


@pytest.mark.parametrize("profile", [DISPLAY_P3, ADOBE_RGB], ids=["display-p3", "adobe-rgb"])
def test_a_wide_gamut_jpeg_is_converted_to_srgb_by_reencoding(profile):
    parsed = ImageCms.ImageCmsProfile(io.BytesIO(profile))
    assert "srgb" not in ImageCms.getProfileDescription(parsed).lower()
    image = Image.new("RGB", (1200, 900), (40, 200, 60))
    upload = encode(image, "JPEG", quality=95, icc_profile=profile)

    result = normalise(upload, declared_content_type="image/jpeg")

    assert recoded(upload, result.jpeg)
    shown = pixels(result.jpeg)[450, 600]
    assert not near(tuple(int(v) for v in shown), (40, 200, 60), 12)  # converted, not merely relabelled
    assert b"ICC_PROFILE" not in result.jpeg


@pytest.mark.parametrize(
    ("image", "fmt"),
    [
        (Image.new("CMYK", (600, 400), (0, 255, 255, 0)), "JPEG"),
        (Image.new("L", (600, 400), 90), "JPEG"),
        (Image.new("RGB", (2100, 1000), (10, 120, 200)), "JPEG"),
        (Image.new("RGB", (600, 400), (10, 120, 200)), "PNG"),
    ],
    ids=["cmyk-jpeg", "grey-jpeg", "over-the-edge-cap", "png"],
)
def test_everything_else_is_normalised_as_before(image, fmt):
    upload = encode(image, fmt)

    result = normalise(upload, declared_content_type=f"image/{fmt.lower()}")

    assert max(result.width, result.height) <= 2048
    with Image.open(io.BytesIO(result.jpeg)) as stored:
        assert (stored.mode, stored.info.get("progressive")) == ("RGB", None)
    if fmt == "JPEG":
        assert recoded(upload, result.jpeg)


def test_a_truncated_conforming_jpeg_is_still_refused(marked_2048):
    upload = encode(marked_2048, "JPEG", quality=90)[:-20_000]
    with pytest.raises(Exception, match="truncated or corrupt"):
        normalise(upload, declared_content_type="image/jpeg")


def rgb_component_ids(data: bytes) -> bytes:
    """Without JFIF, components named R, G, B are decoded as RGB (libjpeg-turbo jdapimin.c)."""
    data = bytearray(data[:2] + data[4 + int.from_bytes(data[4:6], "big") :])  # JFIF APP0 removed
    frame, scan = data.index(b"\xff\xc0") + 4, data.index(b"\xff\xda") + 4
    data[frame + 6 : frame + 15 : 3] = data[scan + 1 : scan + 7 : 2] = b"RGB"
    return bytes(data)


@pytest.mark.parametrize(
    "change",
    [
        lambda data: data.replace(b"\xff\xc0", b"\xff\xc9", 1),  # arithmetic coding
        lambda data: (
            data[: data.index(b"\xff\xc0") + 4] + b"\x0c" + data[data.index(b"\xff\xc0") + 5 :]
        ),  # 12-bit
        lambda data: (
            data[:2] + b"\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00\x00" + data[2:]
        ),  # RGB transform
        lambda data: data[:2] + b"\xff\xcc\x00\x06\x00\x10" + data[2:],  # DAC: arithmetic conditioning
        lambda data: data.replace(b"\xff\xc4", b"\xff\xe9"),  # no Huffman tables (defaults assumed)
        rgb_component_ids,
    ],
    ids=["arithmetic-frame", "12-bit", "adobe-rgb-transform", "dac", "no-dht", "rgb-component-ids"],
)
def test_the_walker_leaves_what_it_is_not_sure_of_to_reencoding(marked_2048, change):
    assert strip_metadata(change(encode(marked_2048, "JPEG", quality=90))) is None


def test_the_quality_figures_match_those_of_the_full_decode(marked_2048):
    """The figures from the 1/4-scale decode are those of the full-size photo within a few per cent."""
    from consultcam.analysis.quality import assess

    for name in ("rocket.jpg", "coffee.jpg", "fundus-left-eye.jpg", "cat.jpg"):
        upload = encode(photo(name).resize((2048, 1536), Image.Resampling.LANCZOS), "JPEG", quality=90)
        kept = normalise(upload, declared_content_type="image/jpeg").quality
        with Image.open(io.BytesIO(upload)) as full:
            expected = assess(full.convert("RGB"))
        assert kept["warnings"] == expected["warnings"], name
        assert kept["sharpness"] == pytest.approx(expected["sharpness"], rel=0.02), name
        assert kept["meanLuma"] == pytest.approx(expected["meanLuma"], abs=1.0), name
        for share in ("underexposed", "overexposed"):
            assert kept[share] == pytest.approx(expected[share], abs=0.005), name
