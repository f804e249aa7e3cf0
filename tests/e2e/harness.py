"""The pieces the end-to-end tests and `bench/capture_latency.py` share: a real `consultcam serve` in a
subprocess and Debian's Chromium launched for Playwright with a fake camera."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from playwright.sync_api import Browser, Playwright

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CONSULTCAM_CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
CONSULTCAM = ROOT / ".venv" / "bin" / "consultcam"
#: Headless Chromium on a closed network: no background connections, a fake camera and no permission prompt.
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--lang=en-NZ",  # date inputs as a New Zealand practice sees them (dd/mm/yyyy)
)


def launch_chromium(playwright: Playwright, camera_feed: Path | None = None) -> Browser:
    """Debian's Chromium; with `camera_feed` (an MJPEG file) as the camera, else Chromium's test pattern."""
    extra = [f"--use-file-for-fake-video-capture={camera_feed}"] if camera_feed else []
    return playwright.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *extra])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A running `consultcam serve` on loopback (plain HTTP) with its own data directory."""

    url: str
    data_dir: Path
    token: str
    process: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str] = field(default_factory=dict)

    def api(self) -> httpx.Client:
        """An HTTP client authenticated as the clinician (Bearer token)."""
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=10)

    def outbox(self) -> list[Path]:
        return sorted((self.data_dir / "outbox").glob("*.json"))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def start_server(tmp: Path, *, port: int | None = None, **env: str) -> Server:
    """Start `consultcam serve --host 127.0.0.1 --port <port>` (default: a free one) and wait for /healthz.

    Give `port` when something must know the server's address before it starts (e.g. the redirect URI a
    SMART EHR double is registered with)."""
    port = port or free_port()
    data_dir = tmp / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(24)
    url = f"http://127.0.0.1:{port}"
    full_env = {
        **os.environ,
        "CONSULTCAM_DATA_DIR": str(data_dir),
        "CONSULTCAM_CLINICIAN_TOKEN": token,
        "CONSULTCAM_PUBLIC_URL": url,
        # Every test's browsers and phones reach this one server from 127.0.0.1: the limits of a whole
        # practice, not of one computer (tests/security/test_signin.py checks the defaults).
        "CONSULTCAM_RATE_LIMIT_LOGIN": "1000/minute",
        "CONSULTCAM_RATE_LIMIT_PAIR": "1000/minute",
        **env,
    }
    log = tmp / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(CONSULTCAM), "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp,
        )
    server = Server(url=url, data_dir=data_dir, token=token, process=process, log=log, env=env)
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"consultcam serve exited with {process.returncode}:\n{log.read_text()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return server
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"consultcam serve did not become healthy:\n{log.read_text()}")
