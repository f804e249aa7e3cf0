"""What the test doubles of outside services share (the Medtech ALEX double, tests/medtech/; the SMART EHR
double, tests/smart/): each runs as its own process, `python -m MODULE --port 0 --ready-file PATH`.

Parent side, `DoubleProcess`: the handle a test holds. It starts the process with this interpreter from the
repository root in a new process group, waits for the ready file (the bound port, written atomically), steers
the double over HTTP (`/_double/...`, JSON in and out) and kills the group on stop() or at interpreter exit.

Child side, `DoubleHandler`, `serve` and friends: the HTTP plumbing the doubles' servers share (methods,
control dispatch, request records with Authorization redacted, replies), and the process's life: it writes
the ready file, serves, and exits when the process that started it is gone. Nothing is printed or logged.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar, Self
from urllib.parse import SplitResult, unquote, unquote_plus

import httpx

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT = 20.0  # seconds for the process to bind and answer
JSON = "application/json; charset=utf-8"


# -- parent side ---------------------------------------------------------------------------------------------


def start_process(
    owner: object,
    command: list[str],
    env: Mapping[str, str],
    *,
    cwd: Path,
    label: str,
    folder_prefix: str,
    timeout: float = START_TIMEOUT,
) -> tuple[subprocess.Popen[bytes], weakref.finalize[Any, Any], int]:
    """Run `command` + [the ready file's path] in a new process group (stdin and stdout closed, stderr the
    test's) and wait until the ready file holds the bound port: (the process, a finalizer that kills the
    group, waits and removes the ready file's folder — run when `owner` is collected or at interpreter exit
    if not called before, the port).
    Raises RuntimeError, naming `label`, when the process exits first or is not ready within `timeout`
    seconds (the group is killed then)."""
    folder = Path(tempfile.mkdtemp(prefix=folder_prefix))
    ready = folder / "port"
    process = subprocess.Popen(
        [*command, str(ready)],
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    finalizer = weakref.finalize(owner, _kill, process, folder)
    deadline = time.monotonic() + timeout
    while not (ready.exists() and ready.read_text().strip()):
        if process.poll() is not None:
            finalizer()
            raise RuntimeError(
                f"the {label} exited with {process.returncode} before it was ready (see stderr)"
            )
        if time.monotonic() > deadline:
            finalizer()
            raise RuntimeError(f"the {label} was not ready within {timeout} s")
        time.sleep(0.02)
    return process, finalizer, int(ready.read_text())


class DoubleProcess:
    """A double's process, seen from the test. Subclasses set `module` (what `python -m` runs), `label`
    ("ALEX double": how errors name it) and `folder_prefix` (of the temporary folder of the ready file), and
    give the child's settings in `_environment`.

    Attributes: root "http://127.0.0.1:PORT" ("" until started). Raises RuntimeError from start() when the
    process exits or is not ready within START_TIMEOUT seconds, and from `_control` when it is not running
    or a control call answers 4xx/5xx."""

    module: ClassVar[str]
    label: ClassVar[str]
    folder_prefix: ClassVar[str]

    def __init__(self) -> None:
        self.root = ""
        self._process: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self._http: httpx.Client | None = None
        self._last: dict[str, Any] | None = None  # what the double held when stop_answering() killed it

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _environment(self, env: dict[str, str]) -> dict[str, str]:
        """The child's environment, given this process's (plus PYTHONPATH): secrets go here, never argv."""
        return env

    def start(self) -> None:
        """Start the process and wait until it answers (at most START_TIMEOUT seconds)."""
        command = [sys.executable, "-m", self.module, "--port", "0", "--ready-file"]
        env = self._environment({**os.environ, "PYTHONPATH": str(REPO)})
        self._process, self._finalizer, port = start_process(
            self, command, env, cwd=REPO, label=self.label, folder_prefix=self.folder_prefix
        )
        self.root = f"http://127.0.0.1:{port}"
        self._http = httpx.Client(base_url=self.root, timeout=30.0, trust_env=False)  # no proxy for loopback
        self._control("GET", "health")

    def stop(self) -> None:
        """Kill the process group and wait for it; idempotent."""
        if self._http is not None:
            self._http.close()
            self._http = None
        if self._finalizer is not None:
            self._finalizer()  # once: kill the group, wait, remove the ready file's folder

    def resources(self, resource_type: str) -> list[dict[str, Any]]:
        """The stored resources of one type (e.g. "DocumentReference", "Media", "Patient"), oldest first;
        after stop_answering(), what the double held when it was killed."""
        if self._last is not None:
            return list(self._last["resources"].get(resource_type, []))
        found: list[dict[str, Any]] = self._control("GET", f"resources/{resource_type}")
        return found

    def requests(self) -> list[dict[str, Any]]:
        """Every call to the service so far, in order: {method, path, query (percent-decoded), headers
        (lower-case names; Authorization reduced to "<scheme> [redacted]"), status}. Control calls are not
        included."""
        return self._seen("requests")

    def _seen(self, name: str) -> list[Any]:
        """The list the control `GET /_double/{name}` answers, or what stop_answering() kept of it (under
        `name` with "_" for "-")."""
        if self._last is not None:
            return list(self._last[name.replace("-", "_")])
        found: list[Any] = self._control("GET", name)
        return found

    def _control(self, method: str, name: str, body: Any = None) -> Any:
        """`METHOD /_double/{name}` with `body` as JSON; the JSON answer."""
        if self._http is None:
            raise RuntimeError(f"the {self.label} is not running")
        response = self._http.request(method, f"/_double/{name}", json=body)
        if response.status_code >= 400:
            raise RuntimeError(f"{self.label} control {name}: {response.status_code} {response.text}")
        return response.json()


def _kill(process: subprocess.Popen[bytes], folder: Path) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)
    shutil.rmtree(folder, ignore_errors=True)


# -- child side ----------------------------------------------------------------------------------------------


class DoubleHandler(BaseHTTPRequestHandler):
    """The request plumbing of a double: GET/POST/DELETE/PUT go to `_handle(method)`; `_serve_control`
    answers a `/_double/` call from `_control`; `_record` is what a request to the service looks like in the
    double's log; `_send` writes a reply. Never logs: paths and queries carry launch contexts and codes."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def _handle(self, method: str) -> None:
        raise NotImplementedError

    def _control(self, method: str, name: str, raw: bytes | None) -> tuple[int, Any]:
        """(status, JSON body) for the control `METHOD /_double/{name}`; a ValueError, KeyError or
        TypeError answers 400."""
        raise NotImplementedError

    def _reply(self, status: int, body: Any, headers: dict[str, str]) -> None:
        raise NotImplementedError

    def _serve_control(self, method: str, url: SplitResult, raw: bytes | None) -> None:
        try:
            status, body = self._control(method, url.path.removeprefix("/_double/"), raw)
        except (ValueError, KeyError, TypeError) as exc:
            status, body = 400, {"error": f"{type(exc).__name__}: {exc}"}
        self._reply(status, body, {"Content-Type": JSON})

    def _record(self, method: str, url: SplitResult, headers: dict[str, str]) -> dict[str, Any]:
        """{method, path, query (percent-decoded), headers (lower-case names, Authorization reduced to its
        scheme), status (0 until answered)}."""
        return {
            "method": method,
            "path": unquote(url.path),
            "query": unquote_plus(url.query),
            "headers": redacted(headers),
            "status": 0,
        }

    def _send(self, status: int, data: bytes, headers: Mapping[str, str]) -> None:
        """Write the status line, `headers`, Content-Length (Connection: close when closing), `data`."""
        try:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            pass  # the client went away


def redacted(headers: dict[str, str]) -> dict[str, str]:
    """The headers as recorded: Authorization keeps only its scheme ("Bearer [redacted]")."""
    if "authorization" in headers:
        headers = {**headers, "authorization": headers["authorization"].split(" ")[0] + " [redacted]"}
    return headers


def arguments(prog: str, description: str, argv: list[str] | None) -> argparse.Namespace:
    """A double's command line: --port (0: any free one) and --ready-file (required)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free one)")
    parser.add_argument("--ready-file", type=Path, required=True, help="where to write the bound port")
    return parser.parse_args(argv)


def serve(server: ThreadingHTTPServer, ready_file: Path) -> None:
    """Write the bound port to `ready_file` (atomically); serve until killed or until the parent is gone."""
    threading.Thread(target=_exit_with_parent, args=(os.getppid(), ready_file), daemon=True).start()
    partial = ready_file.with_name(ready_file.name + ".partial")
    partial.write_text(str(server.server_address[1]))
    os.replace(partial, ready_file)
    server.serve_forever(poll_interval=0.2)


def _exit_with_parent(parent: int, ready_file: Path) -> None:
    """Exit when the process that started the double is gone (a test run killed hard leaves no double),
    removing the ready file and its folder when that is then empty."""
    while os.getppid() == parent:
        time.sleep(0.5)
    with contextlib.suppress(OSError):
        ready_file.unlink()
        ready_file.parent.rmdir()
    os._exit(0)
