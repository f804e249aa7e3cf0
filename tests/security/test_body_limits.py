"""Request body limits (issue 10, "Load and faults"): three 300 MB bodies to `POST /api/pair`, which needs no
sign-in, took the server to 2.6 GB. Every body is capped by its route and refused with 413 as early as
possible: from `Content-Length` before a byte of the body is read, and while it streams when it is chunked.

Against a real `consultcam serve`, with a raw socket client that sends the body a block at a time and stops
as soon as the server answers (as a browser does), and the server's peak RSS read from /proc.
"""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import PATIENT, jpeg_bytes
from tests.e2e.harness import Server, start_server

KiB, MiB = 1024, 1024 * 1024
HUGE = 300 * MiB


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("body-limits"))
    yield srv
    srv.stop()


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    sent: int  # body bytes the client got to send before the server answered or closed
    seconds: float

    def error(self) -> dict[str, Any]:
        payload: dict[str, Any] = json.loads(self.body)
        assert set(payload) == {"error", "detail"}, payload
        return payload


def _read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"the server closed without answering: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body


def send_body(
    server: Server,
    method: str,
    path: str,
    total: int,
    *,
    chunked: bool = False,
    headers: dict[str, str] | None = None,
    block: int = 64 * KiB,
    timeout: float = 60,
) -> Answer:
    """Send a `total`-byte body of zeros in `block`s (chunked transfer coding, or with Content-Length), stop
    as soon as the server answers or stops taking bytes, and read its answer. Never holds the body in memory.
    `block=0` sends only the head and waits up to `timeout` seconds for the answer."""
    host, port = "127.0.0.1", int(server.url.rsplit(":", 1)[1])
    head = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Content-Type: application/json"]
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    head.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}")
    payload = b"0" * block
    framed = b"%x\r\n%s\r\n" % (len(payload), payload) if chunked else payload
    started, sent = time.monotonic(), 0
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        try:
            while block and sent < total and not select.select([sock], [], [], 0)[0]:
                sock.sendall(framed)
                sent += block
            if block and chunked and sent >= total:
                sock.sendall(b"0\r\n\r\n")
        except OSError:  # the server closed its side after answering
            pass
        status, answer_headers, body = _read_answer(sock)
    return Answer(status, answer_headers, body, sent, time.monotonic() - started)


def peak_rss(pid: int) -> int:
    """The process's peak resident set size (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/<pid>/status")


def reset_peak_rss(pid: int) -> None:
    """Start VmHWM again from the current RSS (Linux: writing 5 to /proc/<pid>/clear_refs)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def test_a_declared_300_mb_body_is_refused_before_it_is_sent(server: Server) -> None:
    """The 413 comes from Content-Length alone: the client has sent no body byte when it arrives."""
    answer = send_body(server, "POST", "/api/pair", HUGE, block=0, timeout=10)
    assert answer.status == 413
    error = answer.error()
    assert error["error"] == "PayloadTooLarge"
    assert "64 KiB" in error["detail"]
    assert answer.headers["connection"] == "close"
    assert answer.seconds < 5


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_300_mb_bodies_leave_the_server_small(server: Server, chunked: bool) -> None:
    pid = server.process.pid
    reset_peak_rss(pid)
    before = peak_rss(pid)
    for _ in range(3):  # the reported attack: three of them
        answer = send_body(server, "POST", "/api/pair", HUGE, chunked=chunked)
        assert answer.status == 413, answer
        assert answer.error()["error"] == "PayloadTooLarge"
        assert answer.sent < 16 * MiB, f"the server went on reading: {answer.sent} bytes sent"
    assert peak_rss(pid) - before < 32 * MiB
    # And it still serves.
    assert httpx.get(f"{server.url}/healthz").status_code == 200


def test_each_route_has_its_limit(server: Server) -> None:
    """JSON calls 64 KiB; a photo's edits (annotations) 256 KiB; the folder store's signed PUT the upload
    limit (MAX_UPLOAD_BYTES, 10 MiB by default)."""
    with server.api() as api:
        big_patient = {**PATIENT, "name": "x" * (70 * KiB)}
        refused = api.post("/api/sessions", json={"encounterId": "enc-limit", "patient": big_patient})
        assert refused.status_code == 413, refused.text
        assert refused.json()["error"] == "PayloadTooLarge"
        session = api.post("/api/sessions", json={"encounterId": "enc-limit", "patient": PATIENT}).json()
        edits_path = f"/api/sessions/{session['id']}/images/00000000-0000-4000-8000-000000000000"
        notes = {"metadata": {"notes": "n" * (200 * KiB)}}
        # Through the limit (then refused for what it says: notes are at most 2,000 characters).
        assert api.patch(edits_path, json=notes).status_code in (404, 422)
        too_big = api.patch(edits_path, json={"metadata": {"notes": "n" * (260 * KiB)}})
        assert too_big.status_code == 413, too_big.text
        consent = api.put(
            f"/api/sessions/{session['id']}/consent", json={"scope": "clinical", "givenBy": "patient"}
        )
        assert consent.status_code == 200, consent.text
        data = jpeg_bytes() * 8  # a few MB: over every JSON limit, under the upload limit
        target = api.post(
            f"/api/sessions/{session['id']}/uploads",
            json={"contentType": "image/jpeg", "sizeBytes": len(data)},
        ).json()
    url = target["uploadUrl"] if target["uploadUrl"].startswith("http") else server.url + target["uploadUrl"]
    put = httpx.put(url, content=data, headers=target["headers"], timeout=30)
    assert put.status_code == 200, put.text
    path = url.removeprefix(server.url)
    over = send_body(server, "PUT", path, 11 * MiB, block=0, timeout=10)
    assert over.status == 413
    assert over.error()["error"] == "PayloadTooLarge"
