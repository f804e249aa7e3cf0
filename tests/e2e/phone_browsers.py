"""The phone page in three engines, behind one small interface: Chromium (Debian's, through Playwright, mobile
emulation), Firefox ESR (Debian's `firefox-esr`, over WebDriver BiDi with our bidi.py, no geckodriver) and
WebKitGTK (Debian's `webkit2gtk-driver`: WebKitWebDriver and its MiniBrowser under Xvfb, through Selenium).

Each `PhoneDriver` opens, reloads, runs a script, clicks, picks files and takes screenshots; waits are
polling scripts, so a test reads the same in every engine. A browser that is not installed is a test failure
naming the Debian package to install (`make system-deps`), never a skip.
"""

from __future__ import annotations

import base64
import contextlib
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page

from tests.e2e.bidi import BidiConnection, from_remote, to_local
from tests.e2e.harness import free_port

FIREFOX = os.environ.get("CONSULTCAM_FIREFOX", shutil.which("firefox-esr") or "/usr/bin/firefox-esr")
WEBKIT_DRIVER = os.environ.get("CONSULTCAM_WEBKIT_DRIVER", shutil.which("WebKitWebDriver") or "")
XVFB = shutil.which("Xvfb") or "/usr/bin/Xvfb"
#: MiniBrowser ships with libwebkit2gtk-4.1-0 (pulled in by webkit2gtk-driver), under the multiarch folder.
MINIBROWSER = next(iter(sorted(glob.glob("/usr/lib/*/webkit2gtk-4.*/MiniBrowser"))), "")

FIREFOX_UA = "Mozilla/5.0 (Android 14; Mobile; rv:153.0) Gecko/153.0 Firefox/153.0"
WEBKIT_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.5 Mobile/15E148 Safari/604.1"
)
#: Firefox ESR on a closed network: a fake camera without a prompt, a phone's user agent, New Zealand English.
#: The remote agent already sets its recommended automation prefs (no updates, no telemetry).
FIREFOX_PREFS = {
    "media.navigator.streams.fake": True,
    "media.navigator.permission.disabled": True,
    "general.useragent.override": FIREFOX_UA,
    "intl.accept_languages": "en-NZ, en",
    "browser.shell.checkDefaultBrowser": False,
    "ui.useOverlayScrollbars": 1,  # as on a phone: scrollbars over the page, not beside it
}
VISIBLE = """el => !!el && el.getClientRects().length > 0 && getComputedStyle(el).visibility !== "hidden"
  && !el.closest("[hidden]")"""


def require(path: str, what: str, package: str) -> str:
    """`path` if it is an executable file, else fail the test saying which Debian package brings it."""
    if path and os.access(path, os.X_OK):
        return path
    pytest.fail(f"{what} is not installed: install the Debian package {package} (`make system-deps`).")


class PhoneDriver(ABC):
    """One phone page (360×740) in one engine. `evaluate` takes a JavaScript function's source and its
    arguments (JSON values) and returns its (awaited) result as JSON values."""

    name: str

    @abstractmethod
    def goto(self, url: str) -> None: ...

    @abstractmethod
    def reload(self) -> None: ...

    @abstractmethod
    def evaluate(self, function: str, *args: Any) -> Any: ...

    @abstractmethod
    def _click(self, css: str) -> None: ...

    @abstractmethod
    def set_files(self, css: str, paths: list[Path]) -> None:
        """Choose files in the `<input type=file>` at `css`, as the phone's picker would."""

    @abstractmethod
    def png(self) -> bytes:
        """A screenshot of the viewport, PNG."""

    @abstractmethod
    def close(self) -> None: ...

    def wait_for(self, function: str, *args: Any, what: str, timeout: float = 20) -> Any:
        """Poll `function(*args)` until it returns something truthy (returned); fail naming `what` and the
        last value seen."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(function, *args)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: {what} (after {timeout} s, last value {value!r})")
            time.sleep(0.1)

    def wait_visible(self, css: str, *, timeout: float = 20) -> None:
        self.wait_for(
            f"css => ({VISIBLE})(document.querySelector(css))", css, what=f"{css} shown", timeout=timeout
        )

    def text(self, css: str) -> str:
        return str(self.evaluate("css => document.querySelector(css)?.textContent.trim() ?? null", css))

    def click(self, css: str) -> None:
        """Click the element at `css` with the engine's own input, once it is shown and enabled."""
        self.wait_for(
            f"css => {{ const el = document.querySelector(css); return ({VISIBLE})(el) && !el.disabled; }}",
            css,
            what=f"{css} shown and enabled",
        )
        self._click(css)

    def screenshot(self, path: Path) -> Path:
        """Save the viewport as a PNG at `path`, once the page has drawn what its DOM says (WebKit's
        screenshot is the last frame it composited, which can lag a DOM change)."""
        self.evaluate(
            "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(true))))"
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.png())
        return path


# -- Chromium ---------------------------------------------------------------------------------------------


class ChromiumPhone(PhoneDriver):
    """A Playwright page in Chromium's mobile emulation (conftest.new_phone)."""

    name = "chromium"

    def __init__(self, page: Page) -> None:
        self.page = page

    def goto(self, url: str) -> None:
        self.page.goto(url)

    def reload(self) -> None:
        self.page.reload()

    def evaluate(self, function: str, *args: Any) -> Any:
        return self.page.evaluate(f"args => ({function})(...args)", list(args))

    def _click(self, css: str) -> None:
        self.page.locator(css).click()

    def set_files(self, css: str, paths: list[Path]) -> None:
        self.page.set_input_files(css, [str(p) for p in paths])

    def png(self) -> bytes:
        return self.page.screenshot(animations="disabled", caret="hide")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.page.context.close()


# -- Firefox ESR over WebDriver BiDi ----------------------------------------------------------------------


class Firefox:
    """A headless Firefox ESR with its BiDi endpoint; one per test session, a user context per phone."""

    def __init__(self, workdir: Path) -> None:
        executable = require(FIREFOX, "Firefox ESR", "firefox-esr")
        profile = workdir / "profile"
        profile.mkdir(parents=True, exist_ok=True)
        (profile / "user.js").write_text(
            "".join(f"user_pref({json.dumps(k)}, {json.dumps(v)});\n" for k, v in FIREFOX_PREFS.items())
        )
        self.log = workdir / "firefox.log"
        env = {**os.environ, "TZ": "Pacific/Auckland", "MOZ_CRASHREPORTER_DISABLE": "1"}
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [
                    executable,
                    "--headless",
                    "--no-remote",
                    "--remote-debugging-port=0",
                    "--profile",
                    str(profile),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # its content processes go with it in stop()
            )
        try:
            self.bidi = BidiConnection(f"{self._endpoint()}/session")
            self.bidi.send("session.new", capabilities={"alwaysMatch": {"unhandledPromptBehavior": "accept"}})
        except BaseException:
            self.stop()
            raise

    def _endpoint(self, timeout: float = 40) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(r"WebDriver BiDi listening on (ws://\S+)", self.log.read_text(errors="replace"))
            if match:
                return match.group(1)
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"Firefox ESR did not open its BiDi endpoint:\n{self.log.read_text()}")

    def new_phone(self) -> FirefoxPhone:
        return FirefoxPhone(self.bidi)

    def stop(self) -> None:
        if hasattr(self, "bidi"):
            self.bidi.close()
        _stop_group(self.process)


class FirefoxPhone(PhoneDriver):
    """A tab in its own user context (cookies and IndexedDB of its own), 360×740 at 2 device pixels per px."""

    name = "firefox"

    def __init__(self, bidi: BidiConnection) -> None:
        self.bidi = bidi
        self.user_context = bidi.send("browser.createUserContext")["userContext"]
        self.context = bidi.send("browsingContext.create", type="tab", userContext=self.user_context)[
            "context"
        ]
        bidi.send(
            "browsingContext.setViewport",
            context=self.context,
            viewport={"width": 360, "height": 740},
            devicePixelRatio=2,
        )

    def goto(self, url: str) -> None:
        self.bidi.send("browsingContext.navigate", context=self.context, url=url, wait="complete")

    def reload(self) -> None:
        self.bidi.send("browsingContext.reload", context=self.context, wait="complete")

    def _call(self, function: str, args: list[Any]) -> dict[str, Any]:
        result = self.bidi.send(
            "script.callFunction",
            functionDeclaration=function,
            arguments=[to_local(a) for a in args],
            target={"context": self.context},
            awaitPromise=True,
            userActivation=False,
        )
        if result.get("type") == "exception":
            details = result.get("exceptionDetails", {})
            raise AssertionError(f"firefox: script failed: {details.get('text')}")
        return dict(result["result"])

    def evaluate(self, function: str, *args: Any) -> Any:
        return from_remote(self._call(function, list(args)))

    def _element(self, css: str) -> dict[str, str]:
        node = self._call("css => document.querySelector(css)", [css])
        assert node.get("sharedId"), f"firefox: no element {css}"
        return {"sharedId": node["sharedId"]}

    def _click(self, css: str) -> None:
        self.evaluate("css => document.querySelector(css).scrollIntoView({block: 'center'})", css)
        element = self._element(css)
        self.bidi.send(
            "input.performActions",
            context=self.context,
            actions=[
                {
                    "type": "pointer",
                    "id": "finger",
                    "parameters": {"pointerType": "touch"},
                    "actions": [
                        {
                            "type": "pointerMove",
                            "x": 0,
                            "y": 0,
                            "origin": {"type": "element", "element": element},
                        },
                        {"type": "pointerDown", "button": 0},
                        {"type": "pointerUp", "button": 0},
                    ],
                }
            ],
        )
        self.bidi.send("input.releaseActions", context=self.context)

    def set_files(self, css: str, paths: list[Path]) -> None:
        self.bidi.send(
            "input.setFiles", context=self.context, element=self._element(css), files=[str(p) for p in paths]
        )

    def png(self) -> bytes:
        data = self.bidi.send("browsingContext.captureScreenshot", context=self.context)["data"]
        return base64.b64decode(data)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.bidi.send("browser.removeUserContext", userContext=self.user_context)


# -- WebKitGTK through WebKitWebDriver --------------------------------------------------------------------


class WebKit:
    """Xvfb and WebKitWebDriver, one per test session; each phone is a new WebDriver session: a new
    MiniBrowser whose automation session is ephemeral (website data in memory only, as in a private window,
    where WebKit refused Blobs in IndexedDB)."""

    def __init__(self, workdir: Path) -> None:
        driver = require(WEBKIT_DRIVER, "WebKitWebDriver", "webkit2gtk-driver")
        require(MINIBROWSER, "MiniBrowser (WebKitGTK)", "webkit2gtk-driver")
        xvfb = require(XVFB, "Xvfb", "xvfb")
        self.processes: list[subprocess.Popen[bytes]] = []
        try:
            self._start(driver, xvfb, workdir)
        except BaseException:
            self.stop()
            raise

    def _start(self, driver: str, xvfb: str, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        read_fd, write_fd = os.pipe()
        self.processes.append(
            subprocess.Popen(
                [xvfb, "-displayfd", str(write_fd), "-screen", "0", "1600x1600x24", "-nolisten", "tcp"],
                pass_fds=(write_fd,),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        )
        os.close(write_fd)
        with os.fdopen(read_fd) as display:
            number = display.readline().strip()  # Xvfb writes its display number once it accepts clients
        if not number:
            raise RuntimeError("Xvfb did not start")
        # MiniBrowser's toolbar makes its window at least 447 px wide; shrinking the toolbar's GTK widgets
        # (never the page, which GTK does not style) lets the page be a 360 px wide phone.
        config = workdir / "config"
        (config / "gtk-3.0").mkdir(parents=True, exist_ok=True)
        (config / "gtk-3.0" / "gtk.css").write_text(
            "window *:not(webkitwebview) { font-size: 1px; min-width: 0; min-height: 0; padding: 0;"
            " margin: 0; border-width: 0; -gtk-icon-transform: scale(0.1); }\n"
        )
        self.port = free_port()
        self.log = workdir / "webkitwebdriver.log"
        env = {
            **os.environ,
            "XDG_CONFIG_HOME": str(config),
            "DISPLAY": f":{number}",
            "TZ": "Pacific/Auckland",
            "LANG": "en_NZ.UTF-8",
            "GDK_SCALE": "2",  # two device pixels per CSS pixel, as on a phone and in the other engines
        }
        with self.log.open("wb") as out:
            self.processes.append(
                subprocess.Popen(
                    [driver, f"--port={self.port}"],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,  # MiniBrowser and its web processes go with it in stop()
                )
            )
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/status", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"WebKitWebDriver did not start:\n{self.log.read_text()}")

    def new_phone(self) -> WebKitPhone:
        return WebKitPhone(self.url)

    def stop(self) -> None:
        for process in reversed(self.processes):
            _stop_group(process)


class WebKitPhone(PhoneDriver):
    """A MiniBrowser window with a 360×740 viewport at 2 device pixels per px (GDK_SCALE), mock cameras on."""

    name = "webkit"

    def __init__(self, url: str) -> None:
        from selenium.webdriver import Remote
        from selenium.webdriver.remote.client_config import ClientConfig
        from selenium.webdriver.remote.file_detector import UselessFileDetector
        from selenium.webdriver.remote.remote_connection import RemoteConnection
        from selenium.webdriver.webkitgtk.options import Options

        options = Options()
        options.binary_location = MINIBROWSER
        for arg in (
            "--automation",
            "--enable-media-stream=true",
            "--enable-mock-capture-devices=true",
            f"--user-agent={WEBKIT_UA}",
        ):
            options.add_argument(arg)
        # A connection object, not a URL: from a URL, Selenium builds one with an argument it deprecates.
        connection = RemoteConnection(client_config=ClientConfig(remote_server_addr=url))
        self.driver = Remote(command_executor=connection, options=options)
        self.driver.file_detector = UselessFileDetector()  # the driver reads our paths itself: no upload
        self.driver.set_script_timeout(30)
        self.driver.set_window_size(360, 740)
        # The window's size includes its frame: grow it until the page itself is 360×740.
        width, height = self.driver.execute_script("return [innerWidth, innerHeight]")
        self.driver.set_window_size(360 + (360 - width), 740 + (740 - height))

    def goto(self, url: str) -> None:
        self.driver.get(url)

    def reload(self) -> None:
        self.driver.refresh()

    def evaluate(self, function: str, *args: Any) -> Any:
        outcome = self.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            f"Promise.resolve().then(() => ({function})(...arguments[0]))"
            ".then(v => done({ok: true, value: v === undefined ? null : v}),"
            " e => done({ok: false, error: String(e && (e.stack || e))}));",
            list(args),
        )
        if not outcome["ok"]:
            raise AssertionError(f"webkit: script failed: {outcome['error']}")
        return outcome["value"]

    def _click(self, css: str) -> None:
        element = self.driver.find_element("css selector", css)
        # WebDriver scrolls an element only to the viewport's edge, under the sticky patient banner; a thumb
        # would scroll it to the middle first.
        self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
        element.click()

    def set_files(self, css: str, paths: list[Path]) -> None:
        self.driver.find_element("css selector", css).send_keys("\n".join(str(p) for p in paths))

    def png(self) -> bytes:
        return self.driver.get_screenshot_as_png()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.driver.quit()


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """End a browser (or driver) we started and everything it started: SIGTERM to its process group, then
    SIGKILL after 10 s."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)
