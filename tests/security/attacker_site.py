"""What the browser attacks in tests/security need: an attacker's site on another port of the same host
(same site, other origin), Debian's Chromium driven by Playwright's async API, and a real `consultcam serve`.

The async API keeps Playwright off the main thread's event loop, so these tests mix with the async tests of
the package (the sync API is kept to tests/e2e, which run last)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

from playwright.async_api import Browser, async_playwright

from tests.e2e.harness import CHROMIUM, CHROMIUM_ARGS, Server, start_server


class AttackerSite:
    """A plain HTTP server on 127.0.0.1:<free port> serving the HTML pages a test gives it (`pages[path]`):
    the same host as consultcam, so the same site, but another origin."""

    def __init__(self) -> None:
        pages: dict[str, str] = {}

        class Handler(BaseHTTPRequestHandler):
            served: ClassVar[dict[str, str]] = pages

            def log_message(self, *_: object) -> None:
                pass

            def do_GET(self) -> None:
                body = self.served.get(self.path.split("?")[0])
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.end_headers()
                self.wfile.write((body or "not here").encode())

        self.pages = pages
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> AttackerSite:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """Debian's Chromium, headless, as the e2e tests launch it."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_ARGS))
        try:
            yield browser
        finally:
            await browser.close()


@asynccontextmanager
async def consultcam_serve(tmp: Path, **env: str) -> AsyncIterator[Server]:
    """A real `consultcam serve` on loopback (plain HTTP) with `env` settings, stopped afterwards."""
    tmp.mkdir(parents=True, exist_ok=True)
    server = await asyncio.to_thread(start_server, tmp, **env)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)
