"""Decoding cost (issue 10, "Load and faults"): small files that decode to tens of megapixels, sent at once to
a real `consultcam serve` process, must not take its memory past the decode budget.

A flat 45-megapixel PNG is about 150 KB on the wire and 180 MB as pixels. The server's peak resident memory
(VmHWM of the real process, reset just before the burst) must stay within its idle size plus
CONSULTCAM_DECODE_MEMORY_BUDGET_MB plus a little for everything else; every registration answers 201, or
503 with Retry-After when memory did not come free in time; none is a 500, and a refused one succeeds when
sent again. The server runs four decode threads, as on an eight-core host, so memory and not the thread
count is what holds the decodes back.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image, ImageDraw

from tests.conftest import CONSENT, PATIENT
from tests.e2e.harness import Server, start_server

BUDGET_MIB = 256
#: What the process may grow by besides the decodes: request and response buffers, 20 uploads held in
#: memory while they wait, SQLite's cache, thread stacks.
SLACK_MIB = 48
UPLOADS = 20
MIB = 1024 * 1024


def flat_png(width: int = 7744, height: int = 5808) -> bytes:
    """A valid 45-megapixel RGB PNG of flat colour with a few lines: about 150 KB."""
    image = Image.new("RGB", (width, height), (200, 120, 90))
    draw = ImageDraw.Draw(image)
    for x in range(0, width, 400):
        draw.line([(x, 0), (x, height)], fill=(20, 40, 200), width=5)
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def memory(pid: int, field: str) -> int:
    """A figure in bytes from /proc/<pid>/status (VmRSS: resident now, VmHWM: peak resident), proc(5)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} for process {pid}")


def reset_peak(pid: int) -> None:
    """Reset the process's VmHWM to its current resident size (writing 5 to clear_refs, proc(5))."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


@pytest.fixture
def server(tmp_path: Path) -> Any:
    server = start_server(
        tmp_path,
        CONSULTCAM_DECODE_MEMORY_BUDGET_MB=str(BUDGET_MIB),
        CONSULTCAM_DECODE_THREADS="4",
        CONSULTCAM_DECODE_WAIT_SECONDS="10",
        CONSULTCAM_MAX_PENDING_UPLOADS=str(UPLOADS + 1),
    )
    yield server
    server.stop()


async def presign_and_put(client: httpx.AsyncClient, session_id: str, data: bytes, content_type: str) -> str:
    slot = await client.post(
        f"/api/sessions/{session_id}/uploads", json={"contentType": content_type, "sizeBytes": len(data)}
    )
    assert slot.status_code == 201, slot.text
    body = slot.json()
    put = await client.request(body["method"], body["uploadUrl"], content=data, headers=body["headers"])
    assert put.status_code == 200, put.text
    return str(body["imageId"])


async def test_concurrent_megapixel_decodes_stay_within_the_memory_budget(server: Server) -> None:
    bomb = await asyncio.to_thread(flat_png)
    assert len(bomb) < 300_000
    pid = server.process.pid
    headers = {"Authorization": f"Bearer {server.token}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=120) as clinician:
        created = await clinician.post("/api/sessions", json={"encounterId": "enc-load", "patient": PATIENT})
        assert created.status_code == 201, created.text
        session_id = created.json()["id"]
        consent = await clinician.put(f"/api/sessions/{session_id}/consent", json=CONSENT)
        assert consent.status_code == 200, consent.text

        # Warm up with an ordinary photo, so what the first decode loads (codecs, threads) is in the base.
        warm = io.BytesIO()
        Image.new("RGB", (2048, 1536), (90, 120, 200)).save(warm, "JPEG")
        warm_id = await presign_and_put(clinician, session_id, warm.getvalue(), "image/jpeg")
        first = await clinician.post(f"/api/sessions/{session_id}/images", json={"imageId": warm_id})
        assert first.status_code == 201, first.text

        ids = [await presign_and_put(clinician, session_id, bomb, "image/png") for _ in range(UPLOADS)]
        base = memory(pid, "VmRSS")
        reset_peak(pid)
        responses = await asyncio.gather(
            *(clinician.post(f"/api/sessions/{session_id}/images", json={"imageId": i}) for i in ids)
        )
        peak = memory(pid, "VmHWM")

        statuses = sorted(response.status_code for response in responses)
        print(  # the figures for the record (pytest -s)
            f"\nbase {base / MIB:.0f} MiB, peak {peak / MIB:.0f} MiB (+{(peak - base) / MIB:.0f} MiB), "
            f"budget {BUDGET_MIB} MiB, statuses {statuses}"
        )
        assert server.process.poll() is None, "the server died"
        for response in responses:
            assert response.status_code in (201, 503), response.text
            if response.status_code == 503:
                assert response.json()["error"] == "DecodersBusy"
                assert int(response.headers["retry-after"]) >= 1
        assert statuses.count(201) >= 2, statuses
        assert peak - base <= (BUDGET_MIB + SLACK_MIB) * MIB, (
            f"peak resident memory grew by {(peak - base) / MIB:.0f} MiB, over the {BUDGET_MIB} MiB decode "
            f"budget plus {SLACK_MIB} MiB"
        )

        # Nothing was lost: a photo refused for load registers when sent again.
        refused = [i for i, response in zip(ids, responses, strict=True) if response.status_code == 503]
        if refused:
            again = await clinician.post(f"/api/sessions/{session_id}/images", json={"imageId": refused[0]})
            assert again.status_code == 201, again.text
            assert (again.json()["width"], again.json()["height"]) == (2048, 1536)
