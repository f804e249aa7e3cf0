"""Burning rotation and crop into a JPEG without re-encoding it (issue 15, "Encode once").

A 90° rotation and a crop whose top-left corner falls on a block boundary can be done on the DCT
coefficients, as libjpeg-turbo's `jpegtran` does (transupp.c): the output decodes to the same pixels as the
stored photo, turned and cut, with no generation loss. `transform` runs `jpegtran` (Debian package
`libjpeg-turbo-progs`) as a separate process, the JPEG on its standard input and the result on its
standard output: Debian 12's libjpeg-turbo 2.1 has no Python binding we can use (PyTurboJPEG 2 needs
libjpeg-turbo 3 and has no public rotate), and a separate process keeps a file that crashes the decoder
out of ours. When a lossless transform is impossible (see `transform`) the caller re-encodes.

Geometry (ITU-T T.81 §A.2): a colour JPEG is coded in MCUs of 8 x (largest horizontal sampling factor) by
8 x (largest vertical) pixels; a single-component one in 8 x 8 blocks. A crop's top-left corner must fall on
that grid of the rotated image (jpegtran otherwise silently moves it up and left), and a rotation that
would move a partial MCU at the right or bottom edge into the middle is refused by `-perfect`.
"""

from __future__ import annotations

import io
import logging
import shutil
import subprocess
from typing import NamedTuple

from PIL import Image
from PIL.JpegImagePlugin import JpegImageFile

log = logging.getLogger(__name__)

#: The program run for lossless transforms, found on PATH at each call.
JPEGTRAN = "jpegtran"
#: Seconds a transform may take (a 12 MP photo takes about 0.1 s) before it is killed and re-encoded.
TIMEOUT_SECONDS = 10.0
#: Scans a JPEG may have (a progressive one has about ten): more is a decoder denial of service
#: (libjpeg-turbo's `-maxscans`, jpegtran(1)).
MAX_SCANS = 100


class Frame(NamedTuple):
    """A JPEG's frame header (T.81 §B.2.2): size in pixels, and the MCU's size in pixels."""

    width: int
    height: int
    mcu_width: int
    mcu_height: int
    #: True when chroma has half the luma's resolution both ways (4:2:0), as phones encode.
    subsampled_420: bool


def read_frame(jpeg: bytes) -> Frame | None:
    """The frame header of `jpeg` (a whole JPEG file), as Pillow reads it when it opens the file (its
    `layer`: each component's id and sampling factors); None when Pillow cannot open it as a JPEG.
    Decodes nothing."""
    try:
        with Image.open(io.BytesIO(jpeg), formats=["JPEG"]) as image:
            if not isinstance(image, JpegImageFile):
                return None
            size, factors = image.size, [(h, v) for _, h, v, _ in image.layer]
    except Exception:  # anything unreadable is "no frame": the caller re-encodes
        return None
    if not factors:
        return None
    if len(factors) == 1:  # one component is coded in 8 x 8 blocks whatever its factors say (T.81 §A.2.2)
        return Frame(*size, 8, 8, subsampled_420=False)
    max_h, max_v = max(h for h, _ in factors), max(v for _, v in factors)
    is_420 = factors == [(2, 2), (1, 1), (1, 1)]
    return Frame(*size, 8 * max_h, 8 * max_v, subsampled_420=is_420)


def jpegtran_path() -> str | None:
    """Where `jpegtran` is on PATH, or None when it is not installed (the edits are then re-encoded)."""
    return shutil.which(JPEGTRAN)


def transform(
    jpeg: bytes, frame: Frame, rotation: int, box: tuple[int, int, int, int] | None
) -> bytes | None:
    """`jpeg` rotated clockwise by `rotation` (0, 90, 180 or 270 degrees), then cut to `box` (left, top,
    right, bottom in pixels of the rotated image; None keeps it whole), on the DCT coefficients: the result
    decodes to the stored pixels, turned and cut (to the decoder's rounding, see tests/images/
    test_lossless_edits.py). It carries no metadata (`-copy none`: a JFIF APP0 only).

    Returns None, for the caller to re-encode, when the transform cannot be lossless: the box's top-left
    corner is not on the rotated image's MCU grid (`frame`), the rotation would move a partial edge MCU
    (`-perfect`), jpegtran is not installed, fails (a damaged file) or takes over TIMEOUT_SECONDS (it is
    killed). The box's right and bottom edges need no alignment.
    """
    program = jpegtran_path()
    if program is None:
        return None
    # No -optimize: optimal Huffman tables save about 2-3 % of a phone JPEG for a third more CPU time.
    args = [program, "-copy", "none", "-perfect", "-strict", "-maxscans", str(MAX_SCANS)]
    if rotation:
        args += ["-rotate", str(rotation)]
    if box is not None:
        left, top, right, bottom = box
        # The grid of the rotated image: a quarter turn swaps the MCU's width and height.
        quarter = rotation in (90, 270)
        mcu_x, mcu_y = (frame.mcu_height, frame.mcu_width) if quarter else (frame.mcu_width, frame.mcu_height)
        if left % mcu_x or top % mcu_y:
            return None
        args += ["-crop", f"{right - left}x{bottom - top}+{left}+{top}"]
    try:
        # run() kills the child on timeout and waits for it: no process is left behind.
        done = subprocess.run(args, input=jpeg, capture_output=True, timeout=TIMEOUT_SECONDS, check=False)  # noqa: S603
    except subprocess.TimeoutExpired:
        log.warning("jpegtran took over %.0f s on a %d-byte photo; re-encoding", TIMEOUT_SECONDS, len(jpeg))
        return None
    except OSError as exc:  # removed or not executable since it was found
        log.warning("cannot run jpegtran (%s); re-encoding", exc)
        return None
    if done.returncode != 0 or not done.stdout:
        # Exit 1 with "transformation is not perfect" is the expected refusal; anything else is a damaged
        # photo, which the re-encode then reports. Its message is jpegtran's own text, never image bytes.
        log.debug("jpegtran refused (%d): %s", done.returncode, done.stderr[:200].decode(errors="replace"))
        return None
    return done.stdout
