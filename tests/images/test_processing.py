"""Verification, normalisation and rendering of uploaded photos, on real photos and real hostile inputs."""

import hashlib
import io
import json
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest
from PIL import Image, ImageCms, ImageFilter

from consultcam.images.processing.edits import DEFAULT_ANNOTATION_COLOR, validate_edits
from consultcam.images.processing.formats import ACCEPTED_CONTENT_TYPES, ImageRejected, sniff_content_type
from consultcam.images.processing.normalise import inspect, normalise
from consultcam.images.processing.render import render

PHOTOS = Path(__file__).resolve().parents[1] / "photos"
RED, BLUE = (255, 0, 0), (0, 0, 255)
ROMM_RGB = Path("/usr/share/color/icc/ghostscript/rommrgb.icc")


# --- builders -------------------------------------------------------------------------------------


def photo(name: str = "rocket.jpg") -> Image.Image:
    with Image.open(PHOTOS / name) as image:
        return image.convert("RGB")


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **params)
    return out.getvalue()


def phone_exif(orientation: int) -> Image.Exif:
    """EXIF as a phone writes it: orientation, camera make, and where the patient was photographed."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "Apple"
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2] = "S", (36.0, 50.0, 52.0)
    gps[3], gps[4] = "E", (174.0, 45.0, 40.0)
    return exif


@pytest.fixture(scope="module")
def marked_12mp() -> Image.Image:
    """A 4032 x 3024 phone-sized photo with a red marker top-left and a blue marker top-right."""
    image = photo().resize((4032, 3024), Image.Resampling.LANCZOS)
    image.paste(RED, (0, 0, 400, 400))
    image.paste(BLUE, (4032 - 400, 0, 4032, 400))
    return image


def corner_colours(jpeg: bytes) -> dict[str, tuple[int, int, int]]:
    with Image.open(io.BytesIO(jpeg)) as image:
        rgb = image.convert("RGB")
    w, h = rgb.size
    inset = 40
    return {
        "top-left": rgb.getpixel((inset, inset)),
        "top-right": rgb.getpixel((w - inset, inset)),
        "bottom-left": rgb.getpixel((inset, h - inset)),
        "bottom-right": rgb.getpixel((w - inset, h - inset)),
    }


def near(colour: tuple[int, int, int], expected: tuple[int, int, int], tolerance: int = 40) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(colour, expected, strict=True))


def jpeg_segments(data: bytes) -> list[int]:
    """Marker codes of a JPEG's header segments, up to the start of scan (ITU-T T.81 Annex B)."""
    assert data[:2] == b"\xff\xd8"
    markers, pos = [], 2
    while pos < len(data):
        assert data[pos] == 0xFF, f"bad marker at {pos}"
        marker = data[pos + 1]
        markers.append(marker)
        if marker == 0xDA:  # SOS: entropy-coded data follows
            return markers
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        pos += 2 + length
    raise AssertionError("no start of scan")


def flood_png(width: int, height: int) -> bytes:
    """A valid, fully decodable 1-bit all-black PNG: ~110 KB on disk for 30000 x 30000 (900 megapixels)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    compressor = zlib.compressobj(9)
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def reject(data: bytes, declared: str, **kwargs) -> ImageRejected:
    with pytest.raises(ImageRejected) as caught:
        normalise(data, declared_content_type=declared, **kwargs)
    assert caught.value.detail.endswith(".")
    return caught.value


# --- sniffing -------------------------------------------------------------------------------------


def test_sniff_recognises_each_accepted_type_from_its_first_bytes():
    image = photo("cat.jpg")
    samples = {
        "image/jpeg": encode(image, "JPEG"),
        "image/png": encode(image, "PNG"),
        "image/webp": encode(image, "WEBP"),
        "image/heic": encode(image, "HEIF"),
    }
    for expected, data in samples.items():
        assert sniff_content_type(data[:32]) == expected
    assert set(samples) <= ACCEPTED_CONTENT_TYPES
    generic_heif = b"\x00\x00\x00\x18ftypmif1\x00\x00\x00\x00mif1miaf"
    assert sniff_content_type(generic_heif) == "image/heif"


def test_sniff_returns_none_for_everything_else():
    image = photo("cat.jpg")
    others = [
        b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
        encode(image, "GIF"),
        encode(image, "AVIF"),
        encode(image, "TIFF"),
        encode(image, "BMP"),
        b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj",
        b"just some text that someone renamed to photo.jpg",
        b"",
    ]
    for data in others:
        assert sniff_content_type(data[:32]) is None, data[:16]


# --- normalise: phone photos ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("orientation", "red_at", "blue_at", "portrait"),
    [
        (1, "top-left", "top-right", False),
        (3, "bottom-right", "bottom-left", False),
        (6, "top-right", "bottom-right", True),
        (8, "bottom-left", "top-left", True),
    ],
)
def test_12mp_phone_jpeg_comes_out_upright_small_and_without_metadata(
    marked_12mp, orientation, red_at, blue_at, portrait
):
    data = encode(
        marked_12mp, "JPEG", quality=92, exif=phone_exif(orientation), comment=b"J Smith NHI ABC1234"
    )

    result = normalise(data, declared_content_type="image/jpeg")

    colours = corner_colours(result.jpeg)
    assert near(colours[red_at], RED), colours
    assert near(colours[blue_at], BLUE), colours
    assert (result.height > result.width) is portrait
    assert max(result.width, result.height) <= 2048
    assert max(result.width, result.height) >= 1900  # reduced, not shrunk needlessly
    with Image.open(io.BytesIO(result.jpeg)) as out:
        assert out.format == "JPEG"
        assert out.size == (result.width, result.height)
        assert dict(out.getexif()) == {}
        assert not any(key in out.info for key in ("exif", "comment", "icc_profile", "xmp"))
    markers = jpeg_segments(result.jpeg)
    assert 0xC0 in markers  # baseline DCT
    assert not {0xE1, 0xE2, 0xED, 0xFE} & set(markers)  # no EXIF/XMP, ICC, IPTC or comment segment
    assert b"NHI" not in result.jpeg
    assert b"Apple" not in result.jpeg
    assert result.sha256 == hashlib.sha256(result.jpeg).hexdigest()
    assert result.source_content_type == "image/jpeg"
    with Image.open(io.BytesIO(result.thumbnail)) as thumb:
        assert thumb.format == "JPEG"
        assert max(thumb.size) == 384
        assert (thumb.height > thumb.width) is portrait
        assert dict(thumb.getexif()) == {}
    assert result.quality["width"] == result.width
    assert result.quality["warnings"] == []


def test_12mp_jpeg_is_normalised_quickly(marked_12mp):
    data = encode(marked_12mp, "JPEG", quality=92, exif=phone_exif(6))
    normalise(data, declared_content_type="image/jpeg")  # warm up the codecs
    started = time.perf_counter()
    normalise(data, declared_content_type="image/jpeg")
    assert time.perf_counter() - started < 1.0


def test_heic_from_a_phone_is_upright_and_stored_as_jpeg(marked_12mp):
    data = encode(marked_12mp.resize((2016, 1512)), "HEIF", quality=80, exif=phone_exif(6).tobytes())

    result = normalise(data, declared_content_type="image/heic")

    assert result.source_content_type == "image/heic"
    assert (result.width, result.height) == (1512, 2016)
    colours = corner_colours(result.jpeg)
    assert near(colours["top-right"], RED), colours
    assert near(colours["bottom-right"], BLUE), colours
    assert b"Apple" not in result.jpeg
    assert not {0xE1, 0xE2} & set(jpeg_segments(result.jpeg))


def test_heic_and_heif_are_one_family():
    data = encode(photo("cat.jpg"), "HEIF")
    assert normalise(data, declared_content_type="image/heif").source_content_type == "image/heic"


def test_png_alpha_is_flattened_on_white():
    image = Image.new("RGBA", (1200, 900), (0, 0, 0, 0))
    image.paste(photo("coffee.jpg").convert("RGBA"), (0, 0))
    image.paste((200, 0, 0, 255), (1000, 700, 1200, 900))

    result = normalise(encode(image, "PNG"), declared_content_type="image/png")

    with Image.open(io.BytesIO(result.jpeg)) as out:
        assert out.mode == "RGB"
        assert near(out.getpixel((1100, 100)), (255, 255, 255), 4)  # was transparent
        assert near(out.getpixel((1100, 800)), (200, 0, 0), 12)
        assert near(out.getpixel((300, 200)), photo("coffee.jpg").getpixel((300, 200)), 30)
    assert result.source_content_type == "image/png"


def test_webp_is_accepted_and_never_enlarged():
    image = photo("cat.jpg")
    result = normalise(encode(image, "WEBP", quality=90), declared_content_type="image/webp")
    assert (result.width, result.height) == image.size
    assert result.source_content_type == "image/webp"
    assert "low-resolution" in result.quality["warnings"]


def test_declared_type_may_use_aliases_and_parameters():
    data = encode(photo("cat.jpg"), "JPEG")
    for declared in ("image/jpg", "IMAGE/JPEG; charset=binary", "image/pjpeg"):
        assert normalise(data, declared_content_type=declared).source_content_type == "image/jpeg"


def test_long_edge_and_thumbnail_limits_are_parameters():
    result = normalise(
        encode(photo("fundus-left-eye.jpg"), "PNG"),
        declared_content_type="image/png",
        max_edge_px=1000,
        thumb_edge_px=128,
    )
    assert (result.width, result.height) == (1000, 1000)
    with Image.open(io.BytesIO(result.thumbnail)) as thumb:
        assert thumb.size == (128, 128)


@pytest.mark.parametrize(
    ("image", "fmt", "params", "expected"),
    [
        (Image.new("L", (300, 200), 90), "JPEG", {}, (90, 90, 90)),
        (Image.new("CMYK", (300, 200), (0, 255, 255, 0)), "JPEG", {}, (255, 0, 0)),
        (Image.new("P", (300, 200), 0), "PNG", {"transparency": 0}, (255, 255, 255)),
        (Image.new("LA", (300, 200), (0, 0)), "PNG", {}, (255, 255, 255)),
        (Image.new("I;16", (300, 200), 40000), "PNG", {}, (155, 155, 155)),
        (Image.new("1", (300, 200), 1), "PNG", {}, (255, 255, 255)),
        (Image.new("RGBA", (300, 200), (255, 0, 0, 0)), "WEBP", {"lossless": True}, (255, 255, 255)),
    ],
    ids=[
        "grey-jpeg",
        "cmyk-jpeg",
        "palette-png-transparent",
        "grey-alpha-png",
        "16-bit-png",
        "1-bit-png",
        "transparent-webp",
    ],
)
def test_every_pixel_format_comes_out_as_rgb_with_the_right_colour(image, fmt, params, expected):
    declared = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}[fmt]
    result = normalise(encode(image, fmt, **params), declared_content_type=declared)
    with Image.open(io.BytesIO(result.jpeg)) as out:
        assert out.mode == "RGB"
        assert near(out.getpixel((150, 100)), expected, 4)


@pytest.mark.skipif(not ROMM_RGB.exists(), reason="needs Ghostscript's ROMM RGB ICC profile")
def test_wide_gamut_photo_is_converted_to_srgb_before_its_profile_is_dropped():
    image = Image.new("RGB", (1200, 900), (150, 90, 70))  # a skin tone in ROMM (ProPhoto) RGB
    data = encode(image, "PNG", icc_profile=ROMM_RGB.read_bytes())
    expected = ImageCms.profileToProfile(
        image,
        str(ROMM_RGB),
        ImageCms.createProfile("sRGB"),
        renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC,
    ).getpixel((0, 0))

    result = normalise(data, declared_content_type="image/png")

    with Image.open(io.BytesIO(result.jpeg)) as out:
        assert "icc_profile" not in out.info
        shown = out.getpixel((600, 450))
    assert near(shown, expected, 3), (shown, expected)
    assert not near(shown, (150, 90, 70), 15)  # a viewer would have shown it wrongly without conversion


# --- normalise: rejections ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "declared"),
    [
        (
            b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><rect width="9" height="9"/></svg>',
            "image/svg+xml",
        ),
        (b'<svg xmlns="http://www.w3.org/2000/svg"><rect width="9" height="9"/></svg>', "image/jpeg"),
        (encode(Image.new("RGB", (50, 50), "red"), "GIF"), "image/gif"),
        (b"Patient notes: not a photo at all, just text saved as photo.jpg\n", "image/jpeg"),
        (encode(Image.new("RGB", (50, 50), "red"), "AVIF"), "image/avif"),
        (b"", "image/jpeg"),
    ],
    ids=["svg", "svg-declared-jpeg", "gif", "text-renamed-jpg", "avif", "empty"],
)
def test_non_images_and_unsupported_types_are_415(data, declared):
    rejected = reject(data, declared)
    assert (rejected.status, rejected.error) == (415, "UnsupportedImageType")
    assert "JPEG, PNG, WebP or HEIC" in rejected.detail


def test_jpeg_declared_as_png_is_a_422_mismatch():
    rejected = reject(encode(photo("cat.jpg"), "JPEG"), "image/png")
    assert (rejected.status, rejected.error) == (422, "ImageTypeMismatch")
    assert "image/png" in rejected.detail
    assert "JPEG" in rejected.detail


def test_a_declared_type_that_is_not_an_image_type_is_a_mismatch():
    rejected = reject(encode(photo("cat.jpg"), "PNG"), "application/octet-stream")
    assert (rejected.status, rejected.error) == (422, "ImageTypeMismatch")


def test_truncated_jpeg_is_422_undecodable():
    data = encode(photo("rocket.jpg"), "JPEG", quality=92)
    rejected = reject(data[: len(data) // 2], "image/jpeg")
    assert (rejected.status, rejected.error) == (422, "ImageUndecodable")


def test_corrupt_png_is_422_undecodable():
    data = bytearray(encode(photo("cat.jpg"), "PNG"))
    data[200:260] = b"\x00" * 60  # inside the first IDAT chunk: its CRC no longer matches
    rejected = reject(bytes(data), "image/png")
    assert (rejected.status, rejected.error) == (422, "ImageUndecodable")


def test_more_pixels_than_the_limit_is_rejected_from_the_header():
    rejected = reject(flood_png(8000, 8000), "image/png")  # 64 MP, under Pillow's own guard
    assert (rejected.status, rejected.error) == (422, "ImageTooManyPixels")
    assert "8000 × 8000" in rejected.detail
    assert "50-megapixel" in rejected.detail
    small = reject(encode(photo("cat.jpg"), "JPEG"), "image/jpeg", max_pixels=100_000)
    assert small.error == "ImageTooManyPixels"


def test_pixel_flood_is_rejected_without_decoding(tmp_path):
    """A 110 KB PNG claiming 30000 x 30000 pixels: decoding it would take 900 MB and seconds."""
    bomb = flood_png(30_000, 30_000)
    assert len(bomb) < 200_000
    path = tmp_path / "flood.png"
    path.write_bytes(bomb)
    script = f"""
import json, resource, time
from consultcam.images.processing.formats import ImageRejected
from consultcam.images.processing.normalise import normalise
data = open({str(path)!r}, "rb").read()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
try:
    normalise(data, declared_content_type="image/png")
    outcome = None
except ImageRejected as exc:
    outcome = [exc.status, exc.error, exc.detail]
elapsed = time.perf_counter() - started
grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(json.dumps({{"outcome": outcome, "elapsed": elapsed, "grown_kb": grown_kb}}))
"""
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    report = json.loads(run.stdout)
    status, error, detail = report["outcome"]
    assert (status, error) == (422, "ImageTooManyPixels")
    assert "900 megapixels" in detail
    assert report["elapsed"] < 0.2
    assert report["grown_kb"] < 20_000  # peak memory grew by less than 20 MB


def png_with_chunks(*chunks: tuple[bytes, bytes]) -> bytes:
    """A small valid PNG with extra chunks (kind, body) before its image data."""
    data = encode(Image.new("RGB", (64, 64), (10, 200, 30)), "PNG")
    at = data.index(b"IDAT") - 4
    extra = b"".join(
        struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        for kind, body in chunks
    )
    return data[:at] + extra + data[at:]


FAT_ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes() + b"\0" * 2_000_000
FAT_EXIF = b"Exif\0\0MM\0*\0\0\0\x08" + b"\0" * 2_000_000


def small(fmt: str, **params) -> bytes:
    return encode(Image.new("RGB", (64, 64), (10, 200, 30)), fmt, **params)


@pytest.mark.parametrize(
    ("make", "declared"),
    [
        # 60 zTXt chunks of 1 MB of text each, 61 KB on the wire: Pillow would inflate 60 MB.
        (
            lambda: png_with_chunks(
                *[(b"zTXt", b"Note%d\0\0" % i + zlib.compress(b"A" * 1_000_000, 9)) for i in range(60)]
            ),
            "image/png",
        ),
        (lambda: png_with_chunks((b"iCCP", b"evil\0\0" + zlib.compress(b"\0" * 4_000_000, 9))), "image/png"),
        (lambda: png_with_chunks((b"eXIf", FAT_EXIF[6:])), "image/png"),
        (lambda: small("JPEG", icc_profile=FAT_ICC), "image/jpeg"),
        (lambda: small("WEBP", icc_profile=FAT_ICC), "image/webp"),
        (lambda: small("WEBP", exif=FAT_EXIF), "image/webp"),
        (lambda: small("HEIF", icc_profile=FAT_ICC), "image/heic"),
        (lambda: small("HEIF", exif=FAT_EXIF), "image/heic"),
    ],
    ids=["png-ztxt", "png-iccp", "png-exif", "jpeg-icc", "webp-icc", "webp-exif", "heic-icc", "heic-exif"],
)
def test_oversized_metadata_is_refused_before_it_is_parsed(make, declared):
    rejected = reject(make(), declared)
    assert (rejected.status, rejected.error) == (422, "ImageMetadataTooLarge")
    assert "1024 KB" in rejected.detail


def test_webp_and_heic_claiming_too_many_pixels_are_refused_from_the_header():
    """A 16 x 16 WebP and a 64 x 64 HEIC whose headers (VP8L size, `ispe` box) claim 10000 x 10000."""
    webp = bytearray(small("WEBP", lossless=True))
    at = webp.index(b"VP8L") + 9  # after the chunk header and the 0x2f signature: 14 bits each, minus one
    bits = int.from_bytes(webp[at : at + 4], "little") & ~((1 << 28) - 1)
    webp[at : at + 4] = (bits | 9999 | 9999 << 14).to_bytes(4, "little")
    heic = bytearray(small("HEIF"))
    at = heic.index(b"ispe") + 8  # after the box type, version and flags
    heic[at : at + 8] = struct.pack(">II", 10_000, 10_000)
    for data, declared in ((bytes(webp), "image/webp"), (bytes(heic), "image/heic")):
        started = time.perf_counter()
        rejected = reject(data, declared)
        assert (rejected.error, time.perf_counter() - started < 0.5) == ("ImageTooManyPixels", True)
        assert "100 megapixels" in rejected.detail


def test_inspect_reads_size_type_and_decode_cost_from_the_header():
    data = encode(photo("cat.jpg"), "PNG")
    header = inspect(data, declared_content_type="image/png")
    assert (header.content_type, header.width, header.height) == ("image/png", 451, 300)
    assert 451 * 300 * 4 < header.decode_bytes < 64 * 2**20
    assert inspect(flood_png(7000, 7000), declared_content_type="image/png").decode_bytes > 7000 * 7000 * 4
    assert reject_inspect(flood_png(8000, 8000), "image/png").error == "ImageTooManyPixels"


def reject_inspect(data: bytes, declared: str) -> ImageRejected:
    with pytest.raises(ImageRejected) as caught:
        inspect(data, declared_content_type=declared)
    return caught.value


def _megapixel_file(kind: str) -> tuple[bytes, str]:
    """A flat 24-megapixel image (a few hundred KB) of `kind`, as an attacker would send."""
    image = Image.new("RGB", (6000, 4000), (200, 120, 90))
    if kind == "png-rgba":
        image.putalpha(128)
        return encode(image, "PNG"), "image/png"
    if kind == "jpeg-progressive":
        return encode(image, "JPEG", quality=50, progressive=True, subsampling="4:4:4"), "image/jpeg"
    if kind == "webp":
        return encode(image, "WEBP", lossless=True, quality=0, method=0), "image/webp"
    return encode(image, "PNG"), "image/png"


@pytest.mark.parametrize("kind", ["png-rgb", "png-rgba", "jpeg-progressive", "webp"])
def test_the_decode_cost_estimate_bounds_the_memory_normalise_takes(kind, tmp_path):
    """Peak RSS of a fresh process normalising the file grows by no more than `inspect` estimated, and the
    estimate is not so loose that it would hold back decodes for nothing (under 1.6 times the real peak)."""
    data, declared = _megapixel_file(kind)
    path = tmp_path / "photo"
    path.write_bytes(data)
    script = f"""
import io, json
from PIL import Image
from consultcam.images.processing.normalise import inspect, normalise
def status(key):
    return next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith(key))
data = open({str(path)!r}, "rb").read()
warm = io.BytesIO()
Image.new("RGB", (64, 64)).save(warm, "PNG")
normalise(warm.getvalue(), declared_content_type="image/png")  # libraries loaded, arenas made
estimate = inspect(data, declared_content_type={declared!r}).decode_bytes
open("/proc/self/clear_refs", "w").write("5")  # reset the high-water mark (proc(5))
base = status("VmRSS")
normalise(data, declared_content_type={declared!r})
print(json.dumps({{"estimate": estimate, "peak": status("VmHWM") - base}}))
"""
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    report = json.loads(run.stdout)
    assert report["peak"] <= report["estimate"] < 1.6 * report["peak"], report


# --- edits ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def marked_jpeg() -> bytes:
    """A 1200 x 800 stored photo with a red marker top-left and a blue marker top-right."""
    image = photo().resize((1200, 800))
    image.paste(RED, (0, 0, 200, 200))
    image.paste(BLUE, (1000, 0, 1200, 200))
    return normalise(encode(image, "JPEG"), declared_content_type="image/jpeg").jpeg


@pytest.fixture(scope="module")
def grey_jpeg() -> bytes:
    return encode(Image.new("RGB", (1000, 600), (128, 128, 128)), "JPEG", quality=95)


def size_of(jpeg: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(jpeg)) as image:
        return image.size


def pixels(jpeg: bytes) -> Image.Image:
    with Image.open(io.BytesIO(jpeg)) as image:
        return image.convert("RGB")


@pytest.mark.parametrize(
    "edits", [None, {}, {"rotation": 0}, {"crop": {"x": 0, "y": 0, "width": 1, "height": 1}}]
)
def test_render_without_effective_edits_returns_the_stored_bytes(marked_jpeg, edits):
    assert render(marked_jpeg, edits) is marked_jpeg


@pytest.mark.parametrize(
    ("rotation", "size", "red_at", "blue_at"),
    [
        (90, (800, 1200), "top-right", "bottom-right"),
        (180, (1200, 800), "bottom-right", "bottom-left"),
        (270, (800, 1200), "bottom-left", "top-left"),
    ],
)
def test_render_rotates_clockwise(marked_jpeg, rotation, size, red_at, blue_at):
    out = render(marked_jpeg, {"rotation": rotation})
    assert size_of(out) == size
    colours = corner_colours(out)
    assert near(colours[red_at], RED), colours
    assert near(colours[blue_at], BLUE), colours
    assert not {0xE1, 0xE2, 0xFE} & set(jpeg_segments(out))


def test_render_crops_in_fractions_of_the_rotated_image(marked_jpeg):
    # After a 90-degree turn the 800 x 1200 image has the red marker at its top-right; keep that quarter.
    out = render(marked_jpeg, {"rotation": 90, "crop": {"x": 0.5, "y": 0, "width": 0.5, "height": 0.25}})
    assert size_of(out) == (400, 300)
    image = pixels(out)
    assert near(image.getpixel((399 - 20, 20)), RED)
    assert not near(image.getpixel((20, 280)), RED)


def test_render_draws_each_annotation_where_asked(grey_jpeg):
    edits = {
        "annotations": [
            {"type": "circle", "x1": 0.2, "y1": 0.2, "x2": 0.6, "y2": 0.6, "color": "#00FF00"},
            {"type": "arrow", "x1": 0.1, "y1": 0.9, "x2": 0.9, "y2": 0.9, "color": "#ff0000"},
            {"type": "text", "x1": 0.7, "y1": 0.1, "text": "Lesion A", "color": "#0000ff"},
        ]
    }
    image = pixels(render(grey_jpeg, edits))
    w, h = image.size
    assert image.size == (1000, 600)
    at = lambda fx, fy: image.getpixel((round(fx * (w - 1)), round(fy * (h - 1))))  # noqa: E731
    assert near(at(0.4, 0.2), (0, 255, 0), 60)  # top of the circle
    assert near(at(0.2, 0.4), (0, 255, 0), 60)  # its left side
    assert near(at(0.4, 0.4), (128, 128, 128), 10)  # inside stays untouched
    assert near(at(0.5, 0.9), (255, 0, 0), 60)  # the arrow's shaft
    assert near(at(0.885, 0.9), (255, 0, 0), 60)  # its head, just short of the tip
    assert near(at(0.5, 0.75), (128, 128, 128), 10)
    text_box = image.crop((700, 55, 1000, 160))
    blue = sum(1 for r, g, b in text_box.get_flattened_data() if b > 180 and r < 90 and g < 90)
    assert blue > 300
    left_half = image.crop((0, 0, 500, 600))
    assert not any(b > 180 and r < 90 and g < 90 for r, g, b in left_half.get_flattened_data())


def test_annotations_are_placed_on_the_rotated_and_cropped_image(marked_jpeg):
    edits = {
        "rotation": 180,
        "crop": {"x": 0.5, "y": 0.5, "width": 0.5, "height": 0.5},
        "annotations": [
            {"type": "circle", "x1": 0.25, "y1": 0.25, "x2": 0.75, "y2": 0.75, "color": "#00ff00"}
        ],
    }
    image = pixels(render(marked_jpeg, edits))
    assert image.size == (600, 400)
    assert near(image.getpixel((300, 100)), (0, 255, 0), 60)
    assert near(image.getpixel((570, 370)), RED)  # the red marker, now bottom-right of the kept quarter


def test_stroke_width_scales_with_the_image():
    def stroke(size: int) -> int:
        base = encode(Image.new("RGB", (size, size), (128, 128, 128)), "JPEG", quality=95)
        line = {"type": "arrow", "x1": 0.1, "y1": 0.5, "x2": 0.9, "y2": 0.5, "color": "#ff0000"}
        image = pixels(render(base, {"annotations": [line]}))
        column = [image.getpixel((size // 3, y)) for y in range(size)]
        return sum(1 for r, g, b in column if r > 200 and g < 80)

    small, large = stroke(900), stroke(3000)  # 3.3 times the size
    assert small >= 3
    assert 2.6 <= large / small <= 4.2


def test_text_near_the_edge_stays_inside_the_picture(grey_jpeg):
    label = {"type": "text", "x1": 0.98, "y1": 0.97, "text": "edge", "color": "#0000ff"}
    image = pixels(render(grey_jpeg, {"annotations": [label]}))
    corner = image.crop((800, 480, 1000, 600))
    assert sum(1 for r, g, b in corner.get_flattened_data() if b > 180 and r < 90 and g < 90) > 100


@pytest.mark.skipif(
    not Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf").exists(),
    reason="needs a system font with Latin Extended glyphs (Debian package fonts-dejavu-core)",
)
def test_labels_with_macrons_are_drawn(grey_jpeg):
    def label(text: str) -> bytes:
        note = {"type": "text", "x1": 0.1, "y1": 0.1, "text": text, "color": "#0000ff"}
        return pixels(render(grey_jpeg, {"annotations": [note]})).tobytes()

    # Pillow's built-in font has no glyph for either, so both would come out identical (and blank).
    assert label("Tāne") != label("Tēne")
    assert label("Tāne") != label("Tne")


def test_a_crop_under_one_percent_is_refused_before_it_is_stored(grey_jpeg):
    # Stored, it would fail only later, at download or commit.
    with pytest.raises(ValueError, match=r"edits\.crop is too small"):
        validate_edits({"crop": {"x": 0.5, "y": 0.5, "width": 0.0001, "height": 0.0001}})
    # A valid crop can still be under one pixel of a tiny photo: render says so (never an empty JPEG).
    tiny = io.BytesIO()
    Image.new("RGB", (40, 40), "grey").save(tiny, "JPEG")
    with pytest.raises(ValueError, match="smaller than one pixel"):
        render(tiny.getvalue(), {"crop": {"x": 0.5, "y": 0.5, "width": 0.01, "height": 0.5}})


def test_validate_edits_returns_the_canonical_form():
    clean = validate_edits(
        {
            "rotation": -90,
            "crop": {"x": 0, "y": 0.25, "width": 1, "height": 0.5},
            "annotations": [
                {"type": "arrow", "x1": 0, "y1": 0, "x2": 1, "y2": 1, "id": "a1"},
                {"type": "text", "x1": 0.5, "y1": 0.5, "text": "lesion", "color": "#ABCDEF"},
            ],
        }
    )
    assert clean == {
        "rotation": 270,
        "crop": {"x": 0.0, "y": 0.25, "width": 1.0, "height": 0.5},
        "annotations": [
            {
                "type": "arrow",
                "id": "a1",
                "x1": 0.0,
                "y1": 0.0,
                "x2": 1.0,
                "y2": 1.0,
                "color": DEFAULT_ANNOTATION_COLOR,
            },
            {"type": "text", "x1": 0.5, "y1": 0.5, "text": "lesion", "color": "#abcdef"},
        ],
    }
    assert validate_edits({}) == {"rotation": 0, "crop": None, "annotations": []}


@pytest.mark.parametrize(
    ("edits", "message"),
    [
        ({"rotation": 45}, "edits.rotation"),
        ({"rotation": "90"}, "edits.rotation"),
        ({"rotation": True}, "edits.rotation"),
        ({"crop": {"x": 0.5, "y": 0, "width": 0.6, "height": 1}}, "outside the image"),
        ({"crop": {"x": 0, "y": 0, "width": 0, "height": 1}}, "too small"),
        ({"crop": {"x": -0.1, "y": 0, "width": 0.5, "height": 0.5}}, "edits.crop.x"),
        ({"crop": {"x": 0, "y": 0, "width": 0.5}}, "edits.crop.height"),
        ({"crop": [0, 0, 1, 1]}, "edits.crop"),
        ({"annotations": [{"type": "star", "x1": 0, "y1": 0, "x2": 1, "y2": 1}]}, r"annotations\[0\]\.type"),
        ({"annotations": [{"type": "arrow", "x1": 0, "y1": 0, "x2": 1.5, "y2": 1}]}, r"annotations\[0\]\.x2"),
        ({"annotations": [{"type": "arrow", "x1": 0.5, "y1": 0.5, "x2": 0.5, "y2": 0.5}]}, "two different"),
        (
            {"annotations": [{"type": "circle", "x1": 0, "y1": 0, "x2": 1, "y2": 1, "color": "red"}]},
            "#rrggbb",
        ),
        ({"annotations": [{"type": "text", "x1": 0, "y1": 0, "text": "  "}]}, "needs some text"),
        ({"annotations": [{"type": "text", "x1": 0, "y1": 0, "text": "x" * 201}]}, "at most 200"),
        ({"annotations": {"type": "arrow"}}, "must be a list"),
        ({"annotations": [{"type": "arrow", "x1": 0, "y1": 0, "x2": 1, "y2": 1}] * 51}, "at most 50"),
        ({"rotate": 90}, "unknown field"),
        ({"annotations": [{"type": "text", "x1": 0, "y1": 0, "text": "a", "size": 3}]}, "unknown field"),
        (["rotation", 90], "must be an object"),
    ],
)
def test_invalid_edits_are_explained(edits, message):
    with pytest.raises(ValueError, match=message):
        validate_edits(edits)


def test_render_validates_its_edits(grey_jpeg):
    with pytest.raises(ValueError, match=r"edits\.rotation"):
        render(grey_jpeg, {"rotation": 45})


def test_normalised_blurred_photo_carries_the_blurry_warning():
    blurred = (
        photo("coffee.jpg").resize((2048, 1365), Image.Resampling.LANCZOS).filter(ImageFilter.GaussianBlur(5))
    )
    result = normalise(encode(blurred, "JPEG", quality=90), declared_content_type="image/jpeg")
    assert result.quality["warnings"] == ["blurry"]
