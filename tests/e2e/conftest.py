"""End-to-end fixtures: the real `consultcam serve` in a subprocess, Debian's Chromium driven by Playwright
with a fake camera fed a real photo, a phone context (mobile emulation) and a desktop context.

Screenshots of every screen go to test-artifacts/screenshots/ (gitignored) to be looked at.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

ROOT = Path(__file__).resolve().parents[2]
PHOTOS = ROOT / "tests" / "photos"
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
CHROMIUM = os.environ.get("CONSULTCAM_CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
CONSULTCAM = ROOT / ".venv" / "bin" / "consultcam"

PHONE_UA = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Mobile Safari/537.36"
)
PATIENT = {"name": "Aroha Ngata", "nhi": "ZZZ0016", "birthDate": "1984-03-09"}


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


def start_server(tmp: Path, **env: str) -> Server:
    """Start `consultcam serve --host 127.0.0.1 --port <free>` and wait for /healthz."""
    port = free_port()
    data_dir = tmp / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(24)
    url = f"http://127.0.0.1:{port}"
    full_env = {
        **os.environ,
        "CONSULTCAM_DATA_DIR": str(data_dir),
        "CONSULTCAM_CLINICIAN_TOKEN": token,
        "CONSULTCAM_PUBLIC_URL": url,
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


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The shared server on the embedded defaults."""
    srv = start_server(tmp_path_factory.mktemp("consultcam"))
    yield srv
    srv.stop()


@pytest.fixture
def server_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """Start extra servers with other settings (e.g. a short pairing TTL); stopped after the test."""
    started: list[Server] = []

    def make(**env: str) -> Server:
        srv = start_server(tmp_path_factory.mktemp("consultcam-extra"), **env)
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()


@pytest.fixture(scope="session")
def camera_feed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fake camera's input: the real fundus photo as a 4:3 MJPEG, as shared/photos/README.md describes."""
    out = tmp_path_factory.mktemp("camera") / "camera.mjpeg"
    subprocess.run(
        [
            shutil.which("ffmpeg") or "ffmpeg",
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-loop",
            "1",
            "-i",
            str(PHOTOS / "fundus-left-eye.jpg"),
            "-t",
            "2",
            "-r",
            "10",
            "-vf",
            "scale=-2:960,pad=1280:960:(ow-iw)/2:0:black",
            "-q:v",
            "3",
            str(out),
        ],
        check=True,
    )
    return out


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="session")
def browser(playwright: Playwright, camera_feed: Path) -> Iterator[Browser]:
    browser = playwright.chromium.launch(
        executable_path=CHROMIUM,
        args=[
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-video-capture={camera_feed}",
        ],
    )
    yield browser
    browser.close()


def new_desktop(browser: Browser, server: Server) -> Page:
    """A 1280×800 desktop page signed in through the login link `consultcam serve` prints."""
    context = browser.new_context(
        viewport={"width": 1280, "height": 800}, locale="en-NZ", timezone_id="Pacific/Auckland"
    )
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.goto(f"{server.url}/login?token={server.token}")
    return page


def new_phone(browser: Browser, *, camera: bool = True) -> Page:
    """A 360×740 Android phone with the camera permission granted (or not)."""
    context = browser.new_context(
        viewport={"width": 360, "height": 740},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
        user_agent=PHONE_UA,
        locale="en-NZ",
        timezone_id="Pacific/Auckland",
        permissions=["camera"] if camera else [],
    )
    context.set_default_timeout(15_000)
    return context.new_page()


@pytest.fixture
def contexts() -> Iterator[list[BrowserContext]]:
    """Contexts opened by a test, closed after it."""
    opened: list[BrowserContext] = []
    yield opened
    for context in opened:
        with contextlib.suppress(Exception):
            context.close()


@pytest.fixture
def desktop_factory(browser: Browser, contexts: list[BrowserContext]) -> object:
    def make(srv: Server) -> Page:
        page = new_desktop(browser, srv)
        contexts.append(page.context)
        return page

    return make


@pytest.fixture
def phone_factory(browser: Browser, contexts: list[BrowserContext]) -> object:
    def make(*, camera: bool = True) -> Page:
        page = new_phone(browser, camera=camera)
        contexts.append(page.context)
        return page

    return make


def shot(page: Page, name: str, *, full_page: bool = False) -> Path:
    """Save a screenshot of the page as test-artifacts/screenshots/<name>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page, animations="disabled", caret="hide")
    return path
