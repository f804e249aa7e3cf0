"""Burning in a rotation: lossless (jpegtran on the DCT coefficients) ÷ re-encoded, in one process (issue 15).

    .venv/bin/python bench/edits_cpu.py [--runs 15] [--no-readme]

`render(photo, {"rotation": 90})` on 2048 × 1536 phone JPEGs (quality 90, 4:2:0, as the phone page makes
them), with jpegtran (`lossless_edits.transform`) and without it (`lossless_edits.JPEGTRAN` pointed at a
program that does not exist, so `render` decodes, turns and encodes once at quality 95). Timed as CPU time
of this process plus its children (`resource.getrusage(RUSAGE_CHILDREN)`: jpegtran runs in a process of
its own) and as wall time; the two paths alternate per photo and round, and the ratio is taken per round.

Fidelity, against the stored photo's decoded pixels turned by numpy: PSNR of the result (a lossless turn
differs only by the decoder's IDCT and upsampling rounding, a few levels on a few pixels), and whether
turning the result back gives the stored pixels exactly (what "lossless" means). Writes its section of
bench/README.md.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import PIL
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.readme import replace_section  # noqa: E402
from bench.registration_cpu import p  # noqa: E402
from consultcam.images.processing import lossless_edits  # noqa: E402
from consultcam.images.processing.render import render  # noqa: E402

PHOTOS = sorted((ROOT / "tests" / "photos").glob("*.jpg"))
JPEGTRAN = lossless_edits.JPEGTRAN


def phone_jpeg(path: Path) -> bytes:
    with Image.open(path) as source:
        image = source.convert("RGB").resize((2048, 1536), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90, subsampling="4:2:0")
    return out.getvalue()


def cpu_seconds() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def turn(data: bytes, lossless: bool, rotation: int = 90) -> tuple[float, float, bytes]:
    """(CPU seconds, wall seconds, result) of one render of `data` turned by `rotation`."""
    lossless_edits.JPEGTRAN = JPEGTRAN if lossless else "jpegtran-not-installed"
    try:
        cpu, wall = cpu_seconds(), time.perf_counter()
        out = render(data, {"rotation": rotation})
        return cpu_seconds() - cpu, time.perf_counter() - wall, out
    finally:
        lossless_edits.JPEGTRAN = JPEGTRAN


def pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def measure(inputs: list[bytes], runs: int) -> dict[str, list[float]]:
    keys = ("cpu_new", "cpu_old", "wall_new", "wall_old", "ratio", "wall_ratio", "psnr_new", "psnr_old")
    found: dict[str, list[float]] = {
        key: [] for key in (*keys, "exact_new", "exact_old", "size_new", "size_old")
    }
    for data in inputs:
        turn(data, True), turn(data, False)  # warm-up
        for round_ in range(runs):
            order = (True, False) if round_ % 2 == 0 else (False, True)
            times = {lossless: turn(data, lossless)[:2] for lossless in order}
            found["cpu_new"].append(times[True][0] * 1000)
            found["cpu_old"].append(times[False][0] * 1000)
            found["wall_new"].append(times[True][1] * 1000)
            found["wall_old"].append(times[False][1] * 1000)
            found["ratio"].append(times[True][0] / times[False][0])
            found["wall_ratio"].append(times[True][1] / times[False][1])
        stored = pixels(data)
        expected = np.rot90(stored, -1)
        for lossless, name in ((True, "new"), (False, "old")):
            out = turn(data, lossless)[2]
            found[f"psnr_{name}"].append(peak_signal_noise_ratio(expected, pixels(out), data_range=255))
            back = turn(out, lossless, 270)[2]
            found[f"exact_{name}"].append(float(np.array_equal(pixels(back), stored)))
            found[f"size_{name}"].append(len(out) / len(data))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args()
    if lossless_edits.jpegtran_path() is None:
        sys.exit("jpegtran is not installed (Debian: apt-get install libjpeg-turbo-progs)")
    version = subprocess.run(["jpegtran", "-version"], capture_output=True, text=True, check=False)
    found = measure([phone_jpeg(path) for path in PHOTOS], args.runs)
    load = os.getloadavg()[0]
    n = len(found["ratio"])
    exact_new, exact_old = sum(found["exact_new"]), sum(found["exact_old"])
    lines = [
        "## Burning in a rotation: lossless ÷ re-encoded (issue 15)",
        "",
        '`bench/edits_cpu.py` times `render(photo, {"rotation": 90})` on 2048 × 1536 phone JPEGs (quality 90,',
        f"4:2:0; from `tests/photos`: {', '.join(path.name for path in PHOTOS)}) with jpegtran turning the",
        "DCT coefficients (`lossless_edits.transform`, a child process) and without it (decode, turn, one",
        "encode at quality 95, 4:2:0, optimised Huffman tables), alternating per photo and round. CPU time is",
        "this process's plus its children's (`RUSAGE_CHILDREN`); the ratio is taken per round.",
        "",
        f"Last run: {date.today().isoformat()} on {platform.machine()} ({os.cpu_count()} CPUs), Python "
        f"{platform.python_version()}, Pillow {PIL.__version__}, {version.stderr.strip().splitlines()[0]}; "
        f"load average {load:.1f} at the end"
        + (" (other work ran on the machine: noisy)." if load > 0.7 else "."),
        "",
        "| path | n | CPU p50 | CPU p95 | wall p50 | wall p95 | output ÷ stored size |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, label in (("new", "lossless (jpegtran)"), ("old", "re-encode (Pillow, q95)")):
        lines.append(
            f"| {label} | {n} | {p(found[f'cpu_{name}'], 50):.1f} ms | {p(found[f'cpu_{name}'], 95):.1f} ms "
            f"| {p(found[f'wall_{name}'], 50):.1f} ms | {p(found[f'wall_{name}'], 95):.1f} ms "
            f"| {statistics.median(found[f'size_{name}']):.2f} |"
        )
    lines += [
        "",
        f"Lossless ÷ re-encode: CPU p50 **{p(found['ratio'], 50):.2f}** (p95 {p(found['ratio'], 95):.2f}), "
        f"wall p50 {p(found['wall_ratio'], 50):.2f} (p95 {p(found['wall_ratio'], 95):.2f}).",
        "",
        "| path | PSNR against the stored pixels turned (median) | turned back = stored pixels exactly |",
        "|---|---|---|",
        f"| lossless | {statistics.median(found['psnr_new']):.1f} dB | {exact_new:.0f} of {len(PHOTOS)} |",
        f"| re-encode | {statistics.median(found['psnr_old']):.1f} dB | {exact_old:.0f} of {len(PHOTOS)} |",
        "",
        "The lossless turn moves the stored coefficients without quantising them again, so turning it back",
        "gives the stored photo's pixels exactly; its PSNR is not ∞ only because the decoder rounds a",
        "transposed block differently (libjpeg's integer IDCT, at most 1 level of luma, and its chroma",
        "upsampling; tests/images/test_lossless_edits.py bounds both). The re-encode is one generation",
        "more, at quality 95, and every later turn would add another.",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_readme:
        replace_section("edits_cpu", text)


if __name__ == "__main__":
    main()
