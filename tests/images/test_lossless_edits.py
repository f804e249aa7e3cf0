"""Issue 15, "Encode once": a rotation or a block-aligned crop is burned in without re-encoding (jpegtran on
the DCT coefficients); everything else is re-encoded once, with the right geometry, and no output carries
metadata."""

import io
import os
import stat

import numpy as np
import pytest
from PIL import Image

from consultcam.bootstrap import warn_without_jpegtran
from consultcam.images.processing import lossless_edits
from consultcam.images.processing.lossless_edits import read_frame, transform
from consultcam.images.processing.render import StoredPhotoDamaged, render
from tests.images.test_lossless import segments
from tests.images.test_processing import BLUE, RED, corner_colours, near, phone_exif, photo

# What an edited photo may hold (ITU-T T.81 Table B.1): SOI, EOI, SOF0-2, DHT, DQT, DRI, SOS, and the JFIF
# APP0 / Adobe APP14 libjpeg reads to decode colours. No other APPn (EXIF, XMP, ICC, IPTC), no COM.
ALLOWED = {0xD8, 0xD9, 0xC0, 0xC1, 0xC2, 0xC4, 0xDB, 0xDD, 0xDA, 0xE0, 0xEE}

# Where the red (top-left) and blue (top-right) markers end up after a clockwise turn.
CORNERS = {
    90: ("top-right", "bottom-right"),
    180: ("bottom-right", "bottom-left"),
    270: ("bottom-left", "top-left"),
}
NUMPY_TURNS = {90: -1, 180: 2, 270: 1}  # np.rot90 turns counter-clockwise


def phone_jpeg(width: int, height: int) -> bytes:
    """A phone-like stored photo: a real photo at `width` x `height`, quality 90, 4:2:0, a red marker
    top-left and a blue one top-right, with EXIF (GPS) and a comment that no rendering may carry over."""
    image = photo().resize((width, height), Image.Resampling.LANCZOS)
    image.paste(RED, (0, 0, 160, 160))
    image.paste(BLUE, (width - 160, 0, width, 160))
    out = io.BytesIO()
    image.save(
        out, "JPEG", quality=90, subsampling="4:2:0", exif=phone_exif(1), comment=b"patient NHI ZZZ0016"
    )
    return out.getvalue()


@pytest.fixture(scope="module")
def phone() -> bytes:
    return phone_jpeg(2048, 1536)


@pytest.fixture(scope="module")
def ragged() -> bytes:
    """1365 rows: the bottom row of 16 x 16 MCUs is partial."""
    return phone_jpeg(2048, 1365)


def rgb(jpeg: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(jpeg)) as image:
        return np.asarray(image.convert("RGB")).astype(int)


def luma(jpeg: bytes) -> np.ndarray:
    """The decoded Y plane alone: no chroma upsampling, no colour conversion (libjpeg's raw YCbCr out)."""
    with Image.open(io.BytesIO(jpeg)) as image:
        image.draft("YCbCr", image.size)
        return np.asarray(image)[..., 0].astype(int)


def assert_no_metadata(jpeg: bytes) -> None:
    markers = [marker for marker, _ in segments(jpeg)]
    assert set(markers) <= ALLOWED, [hex(m) for m in markers if m not in ALLOWED]
    assert -1 not in markers  # nothing after EOI
    app0 = [payload for marker, payload in segments(jpeg) if marker == 0xE0]
    assert all(payload.startswith(b"JFIF\x00") for payload in app0)


def assert_markers(jpeg: bytes, rotation: int) -> None:
    red_at, blue_at = CORNERS[rotation]
    colours = corner_colours(jpeg)
    assert near(colours[red_at], RED), colours
    assert near(colours[blue_at], BLUE), colours


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_a_quarter_turn_of_a_phone_photo_is_lossless(phone, rotation):
    out = render(phone, {"rotation": rotation})
    expected = np.rot90(rgb(phone), NUMPY_TURNS[rotation])
    assert rgb(out).shape == expected.shape
    assert_markers(out, rotation)
    assert_no_metadata(out)
    # The coefficients are moved, not re-quantised, so turning back gives the stored pixels exactly: a
    # re-encode at any quality would not.
    back = render(out, {"rotation": 360 - rotation})
    assert np.array_equal(rgb(back), rgb(phone))
    # Decoded, the turned photo is the turned pixels to the decoder's rounding, not exactly: libjpeg's
    # integer IDCT rounds after its column pass and again after its row pass, so a block whose coefficients
    # are transposed (or sign-flipped, for a flip) rounds differently by at most 1 level of Y. Chroma is
    # also upsampled (4:2:0, "fancy" triangular filter with alternating rounding bias), which adds up to
    # 2 levels of Cb/Cr; through the YCbCr -> RGB matrix (1.402 Cr, 1.772 Cb) that is at most 4 in RGB.
    # Measured on several photos: Y max 1, RGB max 3-4, mean under 0.13 levels.
    assert np.abs(luma(out) - np.rot90(luma(phone), NUMPY_TURNS[rotation])).max() <= 1
    difference = np.abs(rgb(out) - expected)
    assert difference.max() <= 4
    assert difference.mean() < 0.2


def test_a_turned_progressive_photo_is_a_baseline_jpeg(phone):
    # The DICOM connector sends the JPEG as JPEG Baseline and the ALEX TIFF embeds it as it is: both need a
    # baseline (SOF0) file, which jpegtran writes whatever the stored photo's mode.
    with Image.open(io.BytesIO(phone)) as image:
        out = io.BytesIO()
        image.save(out, "JPEG", quality=90, subsampling="4:2:0", progressive=True)
    progressive = out.getvalue()
    turned = render(progressive, {"rotation": 90})
    markers = [marker for marker, _ in segments(turned)]
    assert 0xC0 in markers
    assert 0xC2 not in markers
    assert markers.count(0xDA) == 1
    assert np.array_equal(rgb(render(turned, {"rotation": 270})), rgb(progressive))


def test_a_crop_on_the_block_grid_is_lossless(phone):
    # 0.25 x 2048 = 512 and 0.25 x 1536 = 384: both multiples of 16, the MCU of a 4:2:0 JPEG.
    out = render(phone, {"crop": {"x": 0.25, "y": 0.25, "width": 0.5, "height": 0.5}})
    assert read_frame(out)[:2] == (1024, 768)
    assert np.array_equal(luma(out), luma(phone)[384:1152, 512:1536])
    # RGB is exact inside; on the outermost pixels the chroma upsampler has no neighbour beyond the crop
    # (it repeats the edge sample instead), so they may differ by a few levels.
    assert np.array_equal(rgb(out)[1:-1, 1:-1], rgb(phone)[385:1151, 513:1535])
    assert_no_metadata(out)


def test_a_turn_then_a_crop_crops_the_turned_photo_losslessly(phone):
    # Turned 90 degrees the photo is 1536 x 2048 with the red marker top-right; keep the top-right quarter.
    # 0.5 x 1536 = 768 and 0: on the 16 px grid; the right and bottom edges need not be.
    edits = {"rotation": 90, "crop": {"x": 0.5, "y": 0, "width": 0.5, "height": 0.3}}
    out = render(phone, edits)
    assert read_frame(out)[:2] == (768, 614)  # round(0.3 x 2048) = 614
    turned = np.rot90(luma(phone), -1)
    assert np.abs(luma(out) - turned[0:614, 768:1536]).max() <= 1
    assert near(corner_colours(out)["top-right"], RED)
    assert_no_metadata(out)


def test_a_crop_off_the_grid_is_re_encoded_with_the_right_geometry(phone):
    # 0.1 x 2048 = 204.8 -> 205, 0.1 x 1536 = 153.6 -> 154: not on the 16 px grid (jpegtran would move the
    # corner to 192, 144); the crop must start where the clinician drew it.
    frame = read_frame(phone)
    assert transform(phone, frame, 0, (205, 154, 1229, 922)) is None
    out = render(phone, {"crop": {"x": 0.1, "y": 0.1, "width": 0.5, "height": 0.5}})
    assert read_frame(out)[:2] == (1024, 768)
    assert read_frame(out).subsampled_420  # the stored photo's own subsampling
    difference = np.abs(rgb(out) - rgb(phone)[154:922, 205:1229])
    assert difference.mean() < 2  # one encode at quality 95, from the stored copy
    assert_no_metadata(out)


@pytest.mark.parametrize("rotation", [90, 180])
def test_a_turn_that_would_move_a_partial_block_is_re_encoded(ragged, rotation):
    frame = read_frame(ragged)
    assert transform(ragged, frame, rotation, None) is None  # jpegtran -perfect refuses
    out = render(ragged, {"rotation": rotation})
    expected = np.rot90(rgb(ragged), NUMPY_TURNS[rotation])
    assert rgb(out).shape == expected.shape
    assert_markers(out, rotation)
    assert np.abs(rgb(out) - expected).mean() < 2
    assert_no_metadata(out)


def test_a_turn_that_keeps_the_partial_blocks_at_the_edge_stays_lossless(ragged):
    # Turning 270 degrees moves the partial bottom row to the right edge, where it may stay partial.
    out = render(ragged, {"rotation": 270})
    assert read_frame(out)[:2] == (1365, 2048)
    assert_markers(out, 270)
    assert np.array_equal(rgb(render(out, {"rotation": 90})), rgb(ragged))


def test_annotations_are_drawn_on_a_re_encode_with_full_chroma(phone):
    arrow = {"type": "arrow", "x1": 0.2, "y1": 0.8, "x2": 0.5, "y2": 0.5, "color": "#00ff00"}
    out = render(
        phone, {"rotation": 90, "crop": {"x": 0, "y": 0, "width": 1, "height": 0.5}, "annotations": [arrow]}
    )
    frame = read_frame(out)
    assert frame[:2] == (1536, 1024)
    assert not frame.subsampled_420
    assert near(corner_colours(out)["top-right"], RED)
    assert_no_metadata(out)


def test_without_jpegtran_edits_are_re_encoded_correctly(phone, monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no jpegtran
    assert transform(phone, read_frame(phone), 90, None) is None
    out = render(phone, {"rotation": 90})
    assert_markers(out, 90)
    assert np.abs(rgb(out) - np.rot90(rgb(phone), -1)).mean() < 2
    assert_no_metadata(out)
    # The app says so at start-up (`bootstrap.preflight`), and starts.
    assert warn_without_jpegtran() is False
    assert "jpegtran is not installed" in caplog.text


def test_a_jpegtran_that_hangs_is_killed_and_the_edit_re_encoded(phone, monkeypatch, tmp_path):
    pid_file = tmp_path / "pid"
    hanging = tmp_path / "jpegtran"
    hanging.write_text(f"#!/bin/sh\necho $$ > {pid_file}\nexec sleep 60\n")
    hanging.chmod(hanging.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    monkeypatch.setattr(lossless_edits, "TIMEOUT_SECONDS", 0.5)
    out = render(phone, {"rotation": 180})
    assert_markers(out, 180)
    with pytest.raises(ProcessLookupError):  # killed and reaped: not even a zombie is left
        os.kill(int(pid_file.read_text()), 0)


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_damaged_stored_photo_is_a_clear_error(phone, damage):
    stored = phone[: len(phone) // 2] if damage == "truncated" else b"\xff\xd8\xff\xe0 not a photo"
    with pytest.raises(StoredPhotoDamaged, match="stored photo is damaged"):
        render(stored, {"rotation": 90})


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", None),
        (b"\x89PNG\r\n\x1a\n", None),
        (b"\xff\xd8\xff\xda\x00\x08", None),  # a scan before any frame
        (b"\xff\xd8\xff\xc0\x00\x11\x08", None),  # a frame header cut short
    ],
)
def test_read_frame_refuses_what_it_cannot_read(data, expected):
    assert read_frame(data) is expected


def test_read_frame_gives_the_mcu_of_each_subsampling():
    image = photo().resize((64, 48))
    sizes = {}
    for subsampling in ("4:4:4", "4:2:2", "4:2:0"):
        out = io.BytesIO()
        image.save(out, "JPEG", subsampling=subsampling)
        frame = read_frame(out.getvalue())
        sizes[subsampling] = (
            frame.width,
            frame.height,
            frame.mcu_width,
            frame.mcu_height,
            frame.subsampled_420,
        )
    assert sizes == {
        "4:4:4": (64, 48, 8, 8, False),
        "4:2:2": (64, 48, 16, 8, False),
        "4:2:0": (64, 48, 16, 16, True),
    }
